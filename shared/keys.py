"""Idempotency keys and event ids, derived (never invented) from the document.

* ``idempotency_key`` names one *state* of one document:
  ``<source>:<kind>:<document_id>:v<version>``. The same order version arriving by
  webhook, by poll and by replay gets the same key, so the consumer applies it
  once. Documents without a version (Apicbase, legacy Tradecloud orders) use a
  content hash of the normalized document instead: same content, same key.
* ``event_id`` names one *delivery* of that state: a deterministic UUID over the
  key, the channel, the upstream messageId and the event name. A redelivered
  webhook gets the same event_id (and AMQP message_id) as the first attempt.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any, Final

import orjson
from pydantic import BaseModel

from shared.schema.models import Channel, Kind, Source

EVENT_NAMESPACE: Final = uuid.UUID("5b7e8f1c-7a4e-4b8f-9d1e-0c2a6f3e9b21")


def idempotency_key(
    source: Source, kind: Kind, document_id: str, version: int | None, content: Any = None
) -> str:
    """``<source>:<kind>:<document_id>:v<version>``, or ``:h<hash>`` when there is no version."""
    if version is not None:
        return f"{source}:{kind}:{document_id}:v{version}"
    return f"{source}:{kind}:{document_id}:h{content_hash(content)}"


def content_hash(content: Any) -> str:
    """A stable hash of JSON-able content: sorted keys, exact decimals as text."""
    canonical = orjson.dumps(content, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(canonical).hexdigest()[:32]


def event_id(key: str, channel: Channel, message_id: str | None, event_name: str | None) -> str:
    """Deterministic UUID for one delivery of one document state."""
    name = "\x1f".join((key, channel, message_id or "", event_name or ""))
    return str(uuid.uuid5(EVENT_NAMESPACE, name))


def fingerprint(document: BaseModel) -> Any:
    """Content identifying a versionless document's state.

    Channel-dependent line flags (``changed``, ``echo``) are left out, so the same
    Apicbase order seen by webhook and by API hashes the same.
    """
    return document.model_dump(mode="json", exclude={"lines": {"__all__": {"changed", "echo"}}})


def require_aware(moment: datetime) -> datetime:
    """Normalizers take the clock from the caller; a naive one is a programming error."""
    if moment.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return moment
