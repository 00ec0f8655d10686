"""One route at work: consume its shards, guard, apply, record, then ack.

Per shard queue one worker takes the messages the broker delivered (up to the
prefetch) in delivery order and handles them in *rounds*: a round holds at
most one message per document and is handled concurrently (file writes and
SQLite commits overlap), rounds run one after the other. So a document's
events are applied one at a time, in order, while different documents share
the time.

Dispositions (each after the broker confirmed what we published):

* applied, duplicate, stale, echo, filtered → ack;
* retryable failure (adapter, state store, timeout, anything unexpected) →
  a copy goes to the next delay queue with ``x-orderbridge-attempt`` + 1, the
  original is acked; after the last delay → dead-letter;
* permanent failure or an undecodable message → the route's dead-letter
  queue at once, with ``x-orderbridge-reason``, ``-error``, ``-attempts`` and the
  original routing key in ``x-orderbridge-routing-key``;
* a message the consumer keeps crashing on exceeds the quorum delivery limit
  and the broker dead-letters it (``x-death`` reason ``delivery_limit``).

Nothing is requeued in a tight loop, and nothing is acked before its effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, TypeVar, cast

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from services.consumers import guards
from services.consumers.adapters import (
    Application,
    BatchAdapter,
    ErpAdapter,
    TransactionalAdapter,
)
from services.consumers.config import Route
from services.consumers.metrics import ConsumerMetrics
from services.consumers.topology import (
    dead_letter_queue,
    retry_queue,
    route_topology,
    shard_queue,
)
from shared.broker.connection import declare_topology
from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import DEAD_LETTER_EXCHANGE
from shared.errors import InvalidPayload, PermanentError
from shared.logging import get_logger
from shared.schema.codec import decode_event
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings
from shared.state.port import Lookup, ProcessedStore

log = get_logger(__name__)
T = TypeVar("T")

ATTEMPT: Final = "x-orderbridge-attempt"
REASON: Final = "x-orderbridge-reason"
ERROR: Final = "x-orderbridge-error"
ATTEMPTS: Final = "x-orderbridge-attempts"
ROUTING_KEY: Final = "x-orderbridge-routing-key"
ROUTE: Final = "x-orderbridge-route"
DEAD_AT: Final = "x-orderbridge-dead-lettered-at"
FAILURE_HEADERS: Final = (
    ATTEMPT,
    REASON,
    ERROR,
    ATTEMPTS,
    ROUTE,
    DEAD_AT,
    "x-death",
    "x-first-death-exchange",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-last-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-delivery-count",
)


@dataclass
class _Shard:
    name: str
    channel: AbstractChannel | None = None
    """Its own channel: a batch is acknowledged with one ``multiple`` ack, which must
    not reach another shard's messages."""
    queue: AbstractQueue | None = None
    tag: str | None = None
    inbox: asyncio.Queue[AbstractIncomingMessage] = field(default_factory=asyncio.Queue)
    busy: bool = False


class RouteRunner:
    """Consumes one route. ``start()``, then ``stop()`` (graceful) or ``drain()``."""

    def __init__(
        self,
        route: Route,
        *,
        connection: AbstractRobustConnection,
        broker: BrokerSettings,
        state: ProcessedStore,
        adapter: ErpAdapter,
        metrics: ConsumerMetrics,
    ) -> None:
        self.route = route
        self._connection = connection
        self._broker = broker
        self._adapter = adapter
        self._ledger: ProcessedStore = (
            cast(ProcessedStore, adapter) if isinstance(adapter, TransactionalAdapter) else state
        )
        self._transactional = isinstance(adapter, TransactionalAdapter)
        self._state = state
        self._metrics = metrics
        self._shards = [_Shard(shard_queue(route.name, i)) for i in range(route.shards)]
        self._direct: RabbitPublisher | None = None
        self._dead: RabbitPublisher | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self.handled = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        prepare = getattr(self._adapter, "start", None)
        if prepare is not None:  # optional: create tables, open pools before consuming
            await prepare()
        await declare_topology(self._connection, route_topology(self.route))
        self._direct = await RabbitPublisher.open(self._connection, self._broker, exchange="")
        self._dead = await RabbitPublisher.open(
            self._connection, self._broker, exchange=DEAD_LETTER_EXCHANGE
        )
        for shard in self._shards:
            shard.channel = await self._connection.channel()
            await shard.channel.set_qos(prefetch_count=self.route.prefetch)
            await self._subscribe(shard)
            self._workers.append(asyncio.create_task(self._work(shard)))
        self._watchdog = asyncio.create_task(self._watch())
        log.info(
            "route consuming",
            route=self.route.name,
            shards=self.route.shards,
            adapter=self.route.adapter.type,
            bindings=list(self.route.bindings),
        )

    async def _subscribe(self, shard: _Shard) -> None:
        assert shard.channel is not None
        shard.queue = await shard.channel.get_queue(shard.name, ensure=False)
        shard.tag = await shard.queue.consume(shard.inbox.put)

    async def stop(self) -> None:
        """Stop taking messages, finish the ones being handled, return the rest."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
        for shard in self._shards:
            if shard.queue is not None and shard.tag is not None:
                with contextlib.suppress(Exception):
                    await shard.queue.cancel(shard.tag)
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        for publisher in (self._direct, self._dead):
            if publisher is not None:
                await publisher.close()
        for shard in self._shards:  # unacked, unstarted messages go back to the queue
            if shard.channel is not None and not shard.channel.is_closed:
                await shard.channel.close()

    async def drain(self, *, quiet_for: float = 1.0, poll: float = 0.2) -> None:
        """Return once the route's shard and delay queues stayed empty for ``quiet_for``."""
        names = [s.name for s in self._shards] + [
            retry_queue(self.route.name, d) for d in self.route.retry_delays
        ]
        quiet_since: float | None = None
        while True:
            empty = not any(s.busy or not s.inbox.empty() for s in self._shards)
            if empty:
                empty = sum(await self._counts(names)) == 0
            now = time.monotonic()
            if not empty:
                quiet_since = None
            elif quiet_since is None:
                quiet_since = now
            elif now - quiet_since >= quiet_for:
                return
            await asyncio.sleep(poll)

    async def _counts(self, names: Sequence[str]) -> list[int]:
        channel = await self._connection.channel()
        try:
            counts = []
            for name in names:
                declared = await channel.declare_queue(name, passive=True)
                counts.append(declared.declaration_result.message_count or 0)
            return counts
        finally:
            await channel.close()

    async def _watch(self) -> None:
        """Re-subscribe shards whose consumer the broker or a reconnection lost; gauges."""
        while True:
            await asyncio.sleep(5)
            try:
                channel = await self._connection.channel()
                try:
                    for shard in self._shards:
                        declared = await channel.declare_queue(shard.name, passive=True)
                        if (declared.declaration_result.consumer_count or 0) == 0:
                            log.warning(
                                "shard lost its consumer; subscribing again",
                                route=self.route.name,
                                queue=shard.name,
                            )
                            await self._subscribe(shard)
                    dead = await channel.declare_queue(
                        dead_letter_queue(self.route.name), passive=True
                    )
                    self._metrics.dlq_messages.labels(self.route.name).set(
                        dead.declaration_result.message_count or 0
                    )
                finally:
                    await channel.close()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker away: the robust connection comes back
                log.info("route watchdog could not check the broker", error=repr(exc))

    # ------------------------------------------------------------ work

    async def _work(self, shard: _Shard) -> None:
        while not self._stopping:
            first = await shard.inbox.get()
            batch = [first]
            while not shard.inbox.empty() and len(batch) < self.route.prefetch:
                batch.append(shard.inbox.get_nowait())
            shard.busy = True
            acks: list[AbstractIncomingMessage] = []
            token = _BATCH_ACKS.set(acks)
            try:
                for round_ in _rounds(batch):
                    await self._round(round_)
            finally:
                _BATCH_ACKS.reset(token)
                await self._acknowledge(batch, acks)
                shard.busy = False

    async def _acknowledge(
        self, batch: list[AbstractIncomingMessage], acks: list[AbstractIncomingMessage]
    ) -> None:
        """Send the batch's acks: one ``multiple`` ack when every message of it is settled.

        One frame instead of one per message spares the consumer a syscall per event
        and the quorum queue a settle command per message. The shard's channel carries
        only this shard's deliveries and earlier batches are settled, so the highest
        tag covers exactly this batch.
        """
        if not acks:
            return
        try:
            if len(acks) == len(batch) and {id(m) for m in acks} == {id(m) for m in batch}:
                await max(acks, key=lambda m: m.delivery_tag or 0).ack(multiple=True)
            else:
                for message in acks:
                    await message.ack()
        except Exception as exc:  # the broker went away: the batch is redelivered
            log.warning(
                "could not acknowledge a batch; it will be redelivered",
                route=self.route.name,
                messages=len(acks),
                error=repr(exc),
            )

    async def _round(self, messages: list[AbstractIncomingMessage]) -> None:
        """Decode, ask the ledger once, decide, apply what applies, then settle each."""
        route = self.route.name
        self._metrics.in_flight.labels(route).inc(len(messages))
        try:
            decoded: list[tuple[AbstractIncomingMessage, CanonicalEvent]] = []
            for message in messages:
                try:
                    decoded.append((message, decode_event(message.body)))
                except InvalidPayload as exc:
                    await self._settle(
                        message, self._dead_letter(message, "invalid", str(exc), _attempt(message))
                    )
            try:
                answers = await self._ledger.lookup(
                    route,
                    [Lookup(guards.processed_keys(e), guards.document_key(e)) for _, e in decoded],
                )
            except Exception as exc:  # the ledger is away: the whole round retries later
                await asyncio.gather(
                    *(
                        self._settle(m, self._retry(m, _describe(exc), _attempt(m)))
                        for m, _ in decoded
                    )
                )
                return
            skipped: list[Awaitable[None]] = []
            applying: list[tuple[AbstractIncomingMessage, CanonicalEvent, guards.Decision]] = []
            for (message, event), (processed, applied) in zip(decoded, answers, strict=True):
                decision = guards.decide(event, self.route, processed=processed, applied=applied)
                if decision.applies:
                    applying.append((message, event, decision))
                else:
                    skipped.append(self._settle(message, _acked(message, decision.outcome)))
            await asyncio.gather(*skipped)
            if applying:
                await self._apply(applying)
        finally:
            self._metrics.in_flight.labels(route).dec(len(messages))

    async def _apply(
        self, applying: list[tuple[AbstractIncomingMessage, CanonicalEvent, guards.Decision]]
    ) -> None:
        """The adapter's effects for a round (different documents), recorded, then settled."""
        route = self.route.name
        items = [
            Application(route, event, message.body, decision.lines)
            for message, event, decision in applying
        ]
        records = [
            (guards.processed_keys(event), guards.document_key(event), decision)
            for _, event, decision in applying
        ]
        started = time.perf_counter()
        outcomes: list[bool | BaseException]
        if self._transactional:
            adapter: Any = self._adapter
            outcomes = await asyncio.gather(
                *(
                    self._timed(adapter.apply_recorded(item, keys, document, d.version, d.stamps))
                    for item, (keys, document, d) in zip(items, records, strict=True)
                ),
                return_exceptions=True,
            )
        else:
            failures = await self._effects(items)
            outcomes = list(
                await asyncio.gather(
                    *(
                        self._state.record_applied(route, keys, document, d.version, d.stamps)
                        if failure is None
                        else _failed(failure)
                        for failure, (keys, document, d) in zip(failures, records, strict=True)
                    ),
                    return_exceptions=True,
                )
            )
        elapsed = time.perf_counter() - started
        for _ in items:
            self._metrics.adapter_seconds.labels(route).observe(elapsed)
        await asyncio.gather(
            *(
                self._settle(message, self._conclude(message, outcome))
                for (message, _, _), outcome in zip(applying, outcomes, strict=True)
            )
        )

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

    async def _conclude(
        self, message: AbstractIncomingMessage, outcome: bool | BaseException
    ) -> str:
        if isinstance(outcome, PermanentError):
            return await self._dead_letter(
                message, "permanent", _describe(outcome), _attempt(message)
            )
        if isinstance(outcome, BaseException):  # retryable, timeout or unexpected
            return await self._retry(message, _describe(outcome), _attempt(message))
        await _ack(message)
        return "applied" if outcome else "duplicate"

    async def _settle(self, message: AbstractIncomingMessage, work: Awaitable[str]) -> None:
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

    async def _retry(self, message: AbstractIncomingMessage, error: str, attempt: int) -> str:
        delays = self.route.retry_delays
        if attempt >= len(delays):
            return await self._dead_letter(message, "retries_exhausted", error, attempt)
        headers = self._headers(message, {ATTEMPT: attempt + 1, ERROR: error[:1000]})
        assert self._direct is not None
        await self._direct.send(
            _envelope(message, retry_queue(self.route.name, delays[attempt]), headers)
        )
        await _ack(message)
        log.info(
            "retry scheduled",
            route=self.route.name,
            message_id=message.message_id,
            attempt=attempt + 1,
            delay_seconds=delays[attempt],
            error=error[:300],
        )
        return "retried"

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, error: str, attempt: int
    ) -> str:
        headers = self._headers(
            message,
            {
                REASON: reason,
                ERROR: error[:2000],
                ATTEMPTS: attempt + 1,
                ROUTE: self.route.name,
                DEAD_AT: datetime.now(UTC).isoformat(),
            },
        )
        assert self._dead is not None
        await self._dead.send(_envelope(message, self.route.name, headers))
        await _ack(message)
        log.warning(
            "dead-lettered",
            route=self.route.name,
            message_id=message.message_id,
            reason=reason,
            error=error[:300],
        )
        return "dead_lettered"

    def _headers(self, message: AbstractIncomingMessage, extra: dict[str, Any]) -> dict[str, Any]:
        headers = dict(message.headers or {})
        headers.setdefault(ROUTING_KEY, message.routing_key or "")
        headers.update(extra)
        return headers


def _envelope(
    message: AbstractIncomingMessage, routing_key: str, headers: dict[str, Any]
) -> Envelope:
    return Envelope(
        body=message.body,
        routing_key=routing_key,
        message_id=message.message_id or "",
        headers=headers,
        timestamp=message.timestamp,
        type=message.type,
    )


def _rounds(batch: list[AbstractIncomingMessage]) -> list[list[AbstractIncomingMessage]]:
    """Split a batch so no round holds two messages of one document, keeping their order.

    Each message goes to the round right after the last one holding its document.
    """
    rounds: list[list[AbstractIncomingMessage]] = []
    last_round: dict[str, int] = {}
    for message in batch:
        document = str((message.headers or {}).get("document_id", message.message_id))
        index = last_round.get(document, -1) + 1
        if index == len(rounds):
            rounds.append([])
        rounds[index].append(message)
        last_round[document] = index
    return rounds


_BATCH_ACKS: ContextVar[list[AbstractIncomingMessage] | None] = ContextVar(
    "orderbridge_batch_acks", default=None
)
"""The acks of the batch being handled; ``RouteRunner._acknowledge`` sends them."""


async def _ack(message: AbstractIncomingMessage) -> None:
    """Acknowledge now, or with the batch when one is being handled."""
    batch = _BATCH_ACKS.get()
    if batch is None:
        await message.ack()
    else:
        batch.append(message)


async def _acked(message: AbstractIncomingMessage, outcome: str) -> str:
    await _ack(message)
    return outcome


async def _failed(failure: BaseException) -> bool:
    raise failure


def _attempt(message: AbstractIncomingMessage) -> int:
    return as_int((message.headers or {}).get(ATTEMPT))


def as_int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
