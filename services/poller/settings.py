"""Poller settings (``ORDERBRIDGE_*`` environment variables).

* ``ORDERBRIDGE_TRADECLOUD_ROLE`` (``buyer`` | ``supplier``, required): which side
  we integrate; decides the echo rule (api-facts §4)
* ``ORDERBRIDGE_ECHO_POLICY`` (``own-open-requests``): ``all-in-progress`` | ``off``
* ``ORDERBRIDGE_POLL_START``: the first cursor, an ISO timestamp in the past;
  required until a cursor is stored, never defaulted to "now" (api-facts §2.3)
* ``ORDERBRIDGE_POLL_INTERVAL_SECONDS`` (300): pause between drains in loop mode
* ``ORDERBRIDGE_POLL_STREAMS`` (``orders,shipments``)
* ``ORDERBRIDGE_POLL_SINGLE_DELIVERY`` (false): poll the single-delivery order flavour
* ``ORDERBRIDGE_POLL_PROCESS_STATUS``, ``..._IN_PROGRESS_STATUS``,
  ``..._LOGISTICS_STATUS``, ``..._DELIVERY_LINE_STATUS`` (comma lists, empty = all):
  order status filters, e.g. ``Confirmed`` for a buyer, ``Issued`` for a supplier
* ``ORDERBRIDGE_POLL_SHIPMENT_PROCESS_STATUS`` (comma list): shipment filter
* ``ORDERBRIDGE_POLL_LEASE_SECONDS`` (30): a dead replica's stream is taken over
  after about this long
* ``ORDERBRIDGE_METRICS_HOST`` / ``ORDERBRIDGE_METRICS_PORT`` (``0.0.0.0`` / 9101, 0 = off)

The Tradecloud API itself is configured by ``ORDERBRIDGE_TRADECLOUD_*``
(``shared.clients.tradecloud.TradecloudSettings``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from shared.clients.tradecloud import StatusFilter
from shared.errors import ConfigurationError
from shared.schema.models import EchoPolicy, Role
from shared.settings import OrderbridgeSettings

StreamName = Literal["orders", "shipments"]
CommaList = Annotated[list[str], NoDecode]


def _split(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class PollerSettings(OrderbridgeSettings):
    tradecloud_role: Role | None = None
    echo_policy: EchoPolicy = "own-open-requests"
    poll_start: str | None = None
    poll_interval_seconds: float = Field(default=300.0, gt=0)
    poll_streams: Annotated[list[StreamName], NoDecode] = ["orders", "shipments"]
    poll_single_delivery: bool = False
    poll_process_status: CommaList = []
    poll_in_progress_status: CommaList = []
    poll_logistics_status: CommaList = []
    poll_delivery_line_status: CommaList = []
    poll_shipment_process_status: CommaList = []
    poll_lease_seconds: float = Field(default=30.0, ge=3)
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="0 disables.")

    _split_lists = field_validator(
        "poll_streams",
        "poll_process_status",
        "poll_in_progress_status",
        "poll_logistics_status",
        "poll_delivery_line_status",
        "poll_shipment_process_status",
        mode="before",
    )(_split)

    @field_validator("poll_start")
    @classmethod
    def _start_in_the_past(cls, value: str | None) -> str | None:
        return None if value is None or not value.strip() else start_cursor(value)

    def role(self) -> Role:
        if self.tradecloud_role is None:
            raise ConfigurationError(
                "set ORDERBRIDGE_TRADECLOUD_ROLE to buyer or supplier: it decides which "
                "polled lines are echoes of our own requests"
            )
        return self.tradecloud_role

    def order_filter(self) -> StatusFilter:
        return StatusFilter(
            process_status=self.poll_process_status,
            in_progress_status=self.poll_in_progress_status,
            logistics_status=self.poll_logistics_status,
            delivery_line_status=self.poll_delivery_line_status,
        )

    def shipment_filter(self) -> StatusFilter:
        return StatusFilter(process_status=self.poll_shipment_process_status)


def start_cursor(value: str, *, now: datetime | None = None) -> str:
    """``ORDERBRIDGE_POLL_START`` as a Tradecloud cursor (``YYYY-MM-DDThh:mm:ss.SSSZ``).

    A date or a zone-less date-time is read as UTC. The instant must lie in the
    past: a start in the future would silently skip everything until then.
    """
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"ORDERBRIDGE_POLL_START {value!r} is not an ISO timestamp "
            "(e.g. 2026-01-01T00:00:00.000Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    if moment > (now or datetime.now(UTC)):
        raise ValueError(f"ORDERBRIDGE_POLL_START {value!r} lies in the future")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
