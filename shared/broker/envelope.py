"""How an event travels: AMQP body, routing key, message id and headers (pure).

Consumers in any language can route and deduplicate on these without parsing
the body: ``message_id`` is the event id, and the headers carry ``source``,
``kind``, ``event_name``, ``document_id``, ``version`` and ``schema_version``
(absent values are omitted). Each header costs encoding time on every
publish, so the rest (channel, idempotency key, ...) stays in the body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shared.broker.topology import routing_key
from shared.schema.codec import encode_event
from shared.schema.models import CanonicalEvent


@dataclass(frozen=True, slots=True)
class Envelope:
    body: bytes
    routing_key: str
    message_id: str
    headers: dict[str, Any] = field(default_factory=dict)
    timestamp: datetime | None = None
    type: str | None = None


def envelope_for(event: CanonicalEvent) -> Envelope:
    headers: dict[str, Any] = {
        "source": event.source,
        "kind": event.kind,
        "document_id": event.document_id,
        "schema_version": event.schema_version,
    }
    if event.event_name is not None:
        headers["event_name"] = event.event_name
    if event.version is not None:
        headers["version"] = event.version
    return Envelope(
        body=encode_event(event),
        routing_key=routing_key(
            event.source, event.kind, event.process_status, event.logistics_status
        ),
        message_id=event.event_id,
        headers=headers,
        timestamp=event.received_at,
        type=f"{event.source}.{event.kind}",
    )
