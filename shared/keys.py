"""Idempotency keys and event ids, derived (never invented) from the document.

* ``idempotency_key`` names one *state* of one document:
  ``<source>:<kind>:<document_id>:v<version>``. The same order version arriving by
  webhook, by poll and by replay gets the same key. Documents without a
  version (Apicbase orders, shipments, legacy Tradecloud orders) use a digest
  of their state instead (``shared.applied.state_digest``: decimals by value,
  instants in UTC, so an Apicbase order's webhook and API copies share it).
  The key names a state; it does not decide what a consumer applies: several
  changes can share one version (api-facts §7.4), so a consumer decides from
  document state (``shared.applied``).
* ``event_id`` names one *delivery* of that state: a deterministic UUID over the
  key, the channel, the upstream messageId and the event name. A redelivered
  webhook gets the same event_id (and AMQP message_id) as the first attempt.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

from shared.applied import state_digest
from shared.schema.models import CanonicalEvent, Channel, Kind, Source

EVENT_NAMESPACE: Final = uuid.UUID("5b7e8f1c-7a4e-4b8f-9d1e-0c2a6f3e9b21")


def idempotency_key(
    source: Source, kind: Kind, document_id: str, version: int | None, state: str | None = None
) -> str:
    """``<source>:<kind>:<document_id>:v<version>``, or ``:h<state>`` when there is no version."""
    if version is not None:
        return f"{source}:{kind}:{document_id}:v{version}"
    if state is None:
        raise ValueError("a document without a version is keyed by its state digest")
    return f"{source}:{kind}:{document_id}:h{state}"


def keyed_by_state(event: CanonicalEvent) -> CanonicalEvent:
    """A versionless document's event with its key (and event id) naming its state."""
    key = idempotency_key(event.source, event.kind, event.document_id, None, state_digest(event))
    return event.model_copy(
        update={
            "idempotency_key": key,
            "event_id": event_id(key, event.channel, event.message_id, event.event_name),
        }
    )


def event_id(key: str, channel: Channel, message_id: str | None, event_name: str | None) -> str:
    """Deterministic UUID for one delivery of one document state."""
    name = "\x1f".join((key, channel, message_id or "", event_name or ""))
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


def require_aware(moment: datetime) -> datetime:
    """Normalizers take the clock from the caller; a naive one is a programming error."""
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment
