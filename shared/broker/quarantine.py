"""Quarantine: where a poller or fetcher puts a document its normalizer refused.

A polled document that cannot be normalized must neither block the stream
(the cursor would never move) nor vanish (the cursor would move past it). It
is published raw, with a confirm, to ``orderbridge.dead-letter`` under
``invalid.<source>.<kind>`` and lands in the ``orderbridge.invalid`` queue with
the reason in its headers; an operator inspects it there (management UI,
``rabbitmqadmin get``) and, once the upstream data is fixed, the next poll
brings the corrected document anyway.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import INVALID_PREFIX, routing_word
from shared.schema.codec import dumps_exact

REASON_HEADER = "x-orderbridge-reason"


def quarantine_envelope(
    document: Any, reason: str, *, source: str, kind: str, now: datetime | None = None
) -> Envelope:
    """The raw document with the reason; the message id is a content hash (stable on retry)."""
    body = document if isinstance(document, bytes) else dumps_exact(document)
    return Envelope(
        body=body,
        routing_key=f"{INVALID_PREFIX}.{routing_word(source)}.{routing_word(kind)}",
        message_id=hashlib.sha256(body).hexdigest()[:32],
        headers={REASON_HEADER: reason[:1000], "source": source, "kind": kind},
        timestamp=now or datetime.now(UTC),
        type=f"{source}.{kind}.invalid",
    )


class BrokerQuarantine:
    """Confirmed publishing of refused documents for one source."""

    def __init__(self, publisher: RabbitPublisher, *, source: str) -> None:
        self._publisher = publisher
        self._source = source

    async def put(self, document: Any, reason: str, *, kind: str) -> None:
        await self._publisher.send(
            quarantine_envelope(document, reason, source=self._source, kind=kind)
        )
