"""Recording fakes for the consumer's ports (unit tests; integration tests use RabbitMQ).

``RecordingBroker`` stands in for ``runner.AmqpRouteBroker``: it records what
the worker did with every message (ack, retry to a delay queue, dead-letter)
instead of talking to a broker. ``FakeMessage`` is a delivered message.
``RecordingAdapter`` applies into a list and fails on demand.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from services.consumers import policy
from services.consumers.adapters import Application
from shared.schema.codec import encode_event
from shared.schema.models import CanonicalEvent

_tags = itertools.count(1)


@dataclass
class FakeMessage:
    """A delivered message: what ``worker.Incoming`` reads."""

    body: bytes
    headers: Mapping[str, Any] | None = None
    message_id: str | None = None
    routing_key: str | None = "tradecloud.order.Confirmed.Open"
    delivery_tag: int = field(default_factory=lambda: next(_tags))

    @classmethod
    def of(cls, event: CanonicalEvent, **headers: Any) -> FakeMessage:
        """The message a publisher would have sent for ``event``."""
        return cls(
            encode_event(event),
            {"document_id": event.document_id, **headers},
            event.event_id,
        )


Settled = Literal["ack", "retry", "dead_letter"]


@dataclass
class RecordingBroker:
    """Records each settlement: (what, message, disposition or None)."""

    settled: list[tuple[Settled, FakeMessage, policy.Disposition | None]] = field(
        default_factory=list
    )
    fail_with: Exception | None = None
    """Raised by every call (a broker that went away while settling)."""

    async def ack(self, message: Any) -> None:
        self._check()
        self.settled.append(("ack", message, None))

    async def retry(self, message: Any, disposition: policy.Retry) -> None:
        self._check()
        self.settled.append(("retry", message, disposition))

    async def dead_letter(self, message: Any, disposition: policy.DeadLetter) -> None:
        self._check()
        self.settled.append(("dead_letter", message, disposition))

    def what(self) -> list[Settled]:
        return [what for what, _, _ in self.settled]

    def _check(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with


@dataclass
class RecordingAdapter:
    """An ERP adapter that keeps what it was given; ``failures`` are raised in turn."""

    applied: list[Application] = field(default_factory=list)
    failures: list[BaseException] = field(default_factory=list)

    async def apply(self, item: Application) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.applied.append(item)

    async def close(self) -> None:
        return None
