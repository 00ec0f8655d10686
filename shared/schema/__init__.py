"""The canonical event schema (version 1), its codec and its committed JSON Schema."""

from shared.schema.codec import decode_event, dumps_exact, encode_event, loads_exact
from shared.schema.models import (
    SCHEMA_VERSION,
    CanonicalEvent,
    Channel,
    EchoInfo,
    EchoPolicy,
    Kind,
    Order,
    OrderLine,
    Role,
    Shipment,
    ShipmentLine,
    Source,
    Timestamp,
)

__all__ = [
    "SCHEMA_VERSION",
    "CanonicalEvent",
    "Channel",
    "EchoInfo",
    "EchoPolicy",
    "Kind",
    "Order",
    "OrderLine",
    "Role",
    "Shipment",
    "ShipmentLine",
    "Source",
    "Timestamp",
    "decode_event",
    "dumps_exact",
    "encode_event",
    "loads_exact",
]
