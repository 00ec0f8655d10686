"""One route at work: consume its shards and hand rounds to the worker, then ack.

Per shard queue one task takes the messages the broker delivered (up to the
prefetch) in delivery order and hands them to the ``RouteWorker`` in
*rounds*: a round holds at most one message per document and is handled
concurrently (file writes and SQLite commits overlap), rounds run one after
the other. So a document's events are applied one at a time, in order, while
different documents share the time.

What happens to each message is the worker's (and its ``policy``'s) call;
this module is the RabbitMQ side of it (``AmqpRouteBroker``): acks are
gathered per batch and sent as one ``multiple`` ack, copies for the delay
queues and the dead-letter queue are published with confirms before the
original is acked. A message the consumer keeps crashing on exceeds the
quorum delivery limit and the broker dead-letters it (``x-death`` reason
``delivery_limit``). Nothing is requeued in a tight loop, and nothing is
acked before its effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from services.consumers import policy
from services.consumers.adapters import ErpAdapter
from services.consumers.config import Route
from services.consumers.declare import declare_route
from services.consumers.metrics import ConsumerMetrics
from services.consumers.topology import (
    dead_letter_queue,
    missing_plugin_warning,
    retry_queue,
    shard_queue,
)
from services.consumers.worker import Incoming, RouteWorker, rounds
from shared.broker.capabilities import consistent_hash_available
from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import DEAD_LETTER_EXCHANGE
from shared.logging import get_logger
from shared.settings import BrokerSettings
from shared.state.port import ProcessedStore

log = get_logger(__name__)


class AmqpRouteBroker:
    """``RouteBroker`` on RabbitMQ: confirmed copies, then the ack (batched per shard)."""

    def __init__(self, route: str, *, direct: RabbitPublisher, dead: RabbitPublisher) -> None:
        self._route = route
        self._direct = direct
        self._dead = dead

    async def ack(self, message: Incoming) -> None:
        """Acknowledge now, or with the batch when one is being handled."""
        batch = _BATCH_ACKS.get()
        if batch is None:
            await _incoming(message).ack()
        else:
            batch.append(_incoming(message))

    async def retry(self, message: Incoming, disposition: policy.Retry) -> None:
        await self._direct.send(
            _envelope(_incoming(message), disposition.queue, disposition.headers)
        )
        await self.ack(message)

    async def dead_letter(self, message: Incoming, disposition: policy.DeadLetter) -> None:
        await self._dead.send(_envelope(_incoming(message), self._route, disposition.headers))
        await self.ack(message)

    async def close(self) -> None:
        await self._direct.close()
        await self._dead.close()


def _incoming(message: Incoming) -> AbstractIncomingMessage:
    assert isinstance(message, AbstractIncomingMessage)
    return message


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
        consistent_hash: bool | None = None,
    ) -> None:
        """``consistent_hash``: whether the broker has the plugin (None: probe at start)."""
        self.route = route
        self._connection = connection
        self._broker = broker
        self._adapter = adapter
        self._state = state
        self._metrics = metrics
        self._consistent_hash = consistent_hash
        self._shards: list[_Shard] = []  # as many as the layout the broker allows
        self._amqp: AmqpRouteBroker | None = None
        self._worker: RouteWorker | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False
        self._started = False

    @property
    def handled(self) -> int:
        """Messages settled so far (every outcome)."""
        return self._worker.handled if self._worker is not None else 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        prepare = getattr(self._adapter, "start", None)
        if prepare is not None:  # optional: create tables, open pools before consuming
            await prepare()
        if self._consistent_hash is None:
            self._consistent_hash = await consistent_hash_available(
                self._broker.amqp_url.get_secret_value()
            )
            if not self._consistent_hash:
                log.warning(missing_plugin_warning([self.route]), route=self.route.name)
        layout = await declare_route(
            self._connection, self.route, consistent_hash=self._consistent_hash
        )
        self._shards = [_Shard(shard_queue(self.route.name, i)) for i in range(layout.shards)]
        self._amqp = AmqpRouteBroker(
            self.route.name,
            direct=await RabbitPublisher.open(self._connection, self._broker, exchange=""),
            dead=await RabbitPublisher.open(
                self._connection, self._broker, exchange=DEAD_LETTER_EXCHANGE
            ),
        )
        self._worker = RouteWorker(
            self.route,
            ledger=self._state,
            adapter=self._adapter,
            broker=self._amqp,
            metrics=self._metrics,
        )
        for shard in self._shards:
            shard.channel = await self._connection.channel()
            await shard.channel.set_qos(prefetch_count=self.route.prefetch)
            await self._subscribe(shard)
            self._workers.append(asyncio.create_task(self._work(shard)))
        self._watchdog = asyncio.create_task(self._watch())
        self._started = True
        log.info(
            "route consuming",
            route=self.route.name,
            shards=len(self._shards),
            exchange_type=layout.exchange_type,
            adapter=self.route.adapter.type,
            bindings=list(self.route.bindings),
        )

    def not_ready_reason(self) -> str | None:
        """None once every shard is subscribed on an open channel; else why not (``/readyz``)."""
        if self._stopping:
            return f"route {self.route.name}: stopping"
        if not self._started:
            return f"route {self.route.name}: declaring its queues and subscribing"
        for shard in self._shards:
            if shard.channel is None or shard.channel.is_closed or shard.tag is None:
                return f"route {self.route.name}: {shard.name} is not consuming"
        return None

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
        if self._amqp is not None:
            await self._amqp.close()
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
            worker = self._worker
            assert worker is not None
            try:
                for round_ in rounds(batch, _document_of):
                    await worker.handle(round_)
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


def _document_of(message: AbstractIncomingMessage) -> str:
    return str((message.headers or {}).get("document_id", message.message_id))


_BATCH_ACKS: ContextVar[list[AbstractIncomingMessage] | None] = ContextVar(
    "orderbridge_batch_acks", default=None
)
"""The acks of the batch being handled; ``RouteRunner._acknowledge`` sends them."""
