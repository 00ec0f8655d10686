"""One round of a route: decode, ask the ledger, decide, apply, record, settle.

The worker carries out what ``policy`` decides, against three small ports:
the ledger (``ProcessedStore``, or the adapter itself when it records in its
own transaction), the ERP adapter, and the broker (``RouteBroker``: ack, send
a copy to a delay queue, send a copy to the dead-letter queue). It imports no
broker library: ``runner`` plugs in RabbitMQ, the unit tests a recording fake
(``services.consumers.testing``), so every disposition is tested without a
broker and without sleeps.

A round holds at most one message per document (``rounds``); its events are
applied concurrently, then each message is settled:

* applied, duplicate, stale, echo, filtered → ack;
* a retryable failure (adapter, ledger, timeout, anything unexpected) → a copy
  to the next delay queue, then ack; after the last delay → dead-letter;
* a permanent failure or an undecodable body → dead-letter at once, with the
  reason in the headers.

Nothing is acked before the adapter's effect was recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TypeVar

from services.consumers import policy
from services.consumers.adapters import (
    Application,
    BatchAdapter,
    ErpAdapter,
    TransactionalAdapter,
)
from services.consumers.config import Route
from services.consumers.metrics import ConsumerMetrics
from shared.errors import InvalidPayload, StateUnavailable
from shared.logging import get_logger
from shared.schema.codec import decode_event
from shared.schema.models import CanonicalEvent
from shared.state.port import ProcessedStore, Record

log = get_logger(__name__)
T = TypeVar("T")


class Incoming(Protocol):
    """What the worker reads of a delivered message (aio-pika's message has it all)."""

    @property
    def body(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, Any] | None: ...

    @property
    def message_id(self) -> str | None: ...

    @property
    def routing_key(self) -> str | None: ...


class RouteBroker(Protocol):
    """The broker side of a route: how a decision is carried out."""

    async def ack(self, message: Incoming) -> None: ...

    async def retry(self, message: Incoming, disposition: policy.Retry) -> None:
        """Publish a copy to the delay queue (confirmed), then ack the original."""

    async def dead_letter(self, message: Incoming, disposition: policy.DeadLetter) -> None:
        """Publish a copy to the route's dead-letter queue (confirmed), then ack."""


Clock = Callable[[], datetime]
RECORD_RETRY_PAUSES: Final = (0.05, 0.25, 1.0)
"""Pauses between in-place attempts to record an effect the adapter already made."""
_Applying = tuple[Incoming, CanonicalEvent, policy.Decision]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class RouteWorker:
    """Handles rounds of one route's messages (see the module docstring)."""

    def __init__(
        self,
        route: Route,
        *,
        ledger: ProcessedStore,
        adapter: ErpAdapter,
        broker: RouteBroker,
        metrics: ConsumerMetrics,
        clock: Clock = _utc_now,
    ) -> None:
        self.route = route
        self._adapter = adapter
        self._transactional = isinstance(adapter, TransactionalAdapter)
        self._ledger: ProcessedStore = (
            adapter  # type: ignore[assignment]  # it records in its own transaction
            if self._transactional
            else ledger
        )
        self._broker = broker
        self._metrics = metrics
        self._clock = clock
        self.handled = 0

    async def handle(self, messages: Sequence[Incoming]) -> None:
        """One round: at most one message per document. Never raises for a message."""
        route = self.route.name
        self._metrics.in_flight.labels(route).inc(len(messages))
        try:
            decoded: list[tuple[Incoming, CanonicalEvent]] = []
            for message in messages:
                try:
                    decoded.append((message, decode_event(message.body)))
                except InvalidPayload as exc:
                    await self._settle(message, self._dead("invalid", str(exc), message))
            if decoded:
                await self._decide_and_apply(decoded)
        finally:
            self._metrics.in_flight.labels(route).dec(len(messages))

    async def _decide_and_apply(self, decoded: list[tuple[Incoming, CanonicalEvent]]) -> None:
        try:
            answers = await self._ledger.lookup(
                self.route.name, [policy.lookup_for(event) for _, event in decoded]
            )
        except Exception as exc:  # the ledger is away: the whole round retries later
            await asyncio.gather(*(self._settle(m, self._failed(m, exc)) for m, _ in decoded))
            return
        applying: list[_Applying] = []
        for (message, event), (delivered, applied) in zip(decoded, answers, strict=True):
            decision = policy.decide(event, self.route, delivered=delivered, applied=applied)
            if decision.applies:
                applying.append((message, event, decision))
            else:  # an ack joins the batch's one multiple-ack: no task needed
                await self._settle(message, self._acked(message, decision.outcome))
        if applying:
            await self._apply(applying)

    async def _apply(
        self, applying: list[tuple[Incoming, CanonicalEvent, policy.Decision]]
    ) -> None:
        """The adapter's effects for a round (different documents), recorded, then settled."""
        items = [_application(self.route.name, m, e, d) for m, e, d in applying]
        records = [d.record for _, _, d in applying]
        started = time.perf_counter()
        outcomes: list[bool | BaseException]
        if self._transactional:
            adapter: Any = self._adapter
            outcomes = await asyncio.gather(
                *(
                    self._timed(adapter.apply_recorded(item, record))
                    for item, record in zip(items, records, strict=True)
                ),
                return_exceptions=True,
            )
        else:
            failures = await self._effects(items)
            made = [i for i, failure in enumerate(failures) if failure is None]
            recorded: list[bool | BaseException]
            try:
                recorded = list(await self._record([records[i] for i in made]))
            except Exception as exc:  # the ledger stayed away: every effect retries
                recorded = [exc for _ in made]
            by_index = dict(zip(made, recorded, strict=True))
            outcomes = [
                by_index[i] if failure is None else failure for i, failure in enumerate(failures)
            ]
        elapsed = time.perf_counter() - started
        observe = self._metrics.adapter_seconds.labels(self.route.name).observe
        for _ in items:
            observe(elapsed)
        failed: list[Awaitable[None]] = []
        for (message, _, _), outcome in zip(applying, outcomes, strict=True):
            if isinstance(outcome, BaseException):  # copies to publish: confirmed together
                failed.append(self._settle(message, self._failed(message, outcome)))
            else:  # acks join the batch's one multiple-ack: settled in place, no task each
                await self._settle(
                    message, self._acked(message, "applied" if outcome else "duplicate")
                )
        await asyncio.gather(*failed)

    async def _record(self, records: list[Record | None]) -> list[bool]:
        """Record the effects that happened (one call for the round), retrying in place first.

        Sending the messages to a delay queue instead would let later events of
        their documents overtake them; they would then come back with less news
        and another change key, and the adapter could not recognise the effect it
        already made.
        """
        assert all(records), "an applying decision always says what to record"
        chosen = [record for record in records if record is not None]
        if not chosen:
            return []
        for pause in RECORD_RETRY_PAUSES:
            try:
                return await self._ledger.record_applied_many(self.route.name, chosen)
            except StateUnavailable as exc:
                log.info(
                    "ledger unavailable; recording again", route=self.route.name, error=str(exc)
                )
                await asyncio.sleep(pause)
        return await self._ledger.record_applied_many(self.route.name, chosen)

    async def _effects(self, items: list[Application]) -> list[BaseException | None]:
        """Apply through the adapter (one batch call when it can); a failure per item or None."""
        adapter = self._adapter
        try:
            if isinstance(adapter, BatchAdapter):
                return await self._timed(adapter.apply_many(items))
            results = await asyncio.gather(
                *(self._timed(adapter.apply(item)) for item in items), return_exceptions=True
            )
            return [r if isinstance(r, BaseException) else None for r in results]
        except Exception as exc:  # the batch as a whole failed (timeout): every item retries
            return [exc for _ in items]

    async def _timed(self, work: Awaitable[T]) -> T:
        async with asyncio.timeout(self.route.adapter_timeout):
            return await work

    async def _failed(self, message: Incoming, failure: BaseException) -> str:
        disposition = policy.after_failure(
            failure,
            route=self.route,
            headers=message.headers,
            routing_key=message.routing_key or "",
            now=self._clock().isoformat(),
        )
        if isinstance(disposition, policy.Retry):
            await self._broker.retry(message, disposition)
            log.info(
                "retry scheduled",
                route=self.route.name,
                message_id=message.message_id,
                attempt=disposition.headers[policy.ATTEMPT],
                delay_seconds=disposition.delay,
                error=policy.describe(failure)[:300],
            )
            return "retried"
        return await self._send_dead(message, disposition)

    async def _dead(self, reason: str, error: str, message: Incoming) -> str:
        disposition = policy.dead_letter(
            reason,
            error,
            route=self.route,
            headers=message.headers,
            routing_key=message.routing_key or "",
            now=self._clock().isoformat(),
        )
        return await self._send_dead(message, disposition)

    async def _send_dead(self, message: Incoming, disposition: policy.DeadLetter) -> str:
        await self._broker.dead_letter(message, disposition)
        log.warning(
            "dead-lettered",
            route=self.route.name,
            message_id=message.message_id,
            reason=disposition.reason,
            error=str(disposition.headers.get(policy.ERROR, ""))[:300],
        )
        return "dead_lettered"

    async def _acked(self, message: Incoming, outcome: str) -> str:
        await self._broker.ack(message)
        return outcome

    async def _settle(self, message: Incoming, work: Awaitable[str]) -> None:
        """Count the outcome; never raises."""
        try:
            outcome = await work
        except Exception as exc:  # the broker went away while settling: redelivered later
            log.warning(
                "could not settle a message; it will be redelivered",
                route=self.route.name,
                message_id=message.message_id,
                error=repr(exc),
            )
            return
        self._metrics.events.labels(self.route.name, outcome).inc()
        self.handled += 1


def _application(
    route: str, message: Incoming, event: CanonicalEvent, decision: policy.Decision
) -> Application:
    return Application(
        route,
        event,
        message.body,
        header=decision.header,
        lines=None if decision.every_item else decision.lines,
        change=decision.change,
    )


def rounds(batch: Sequence[T], document: Callable[[T], str]) -> list[list[T]]:
    """Split a batch so no round holds two messages of one document, keeping their order.

    Each message goes to the round right after the last one holding its document.
    """
    result: list[list[T]] = []
    last_round: dict[str, int] = {}
    for message in batch:
        key = document(message)
        index = last_round.get(key, -1) + 1
        if index == len(result):
            result.append([])
        result[index].append(message)
        last_round[key] = index
    return result
