"""Confirmed publishing: a publish returns only when RabbitMQ took responsibility.

Guarantees callers build on (ingress answers 2xx, the poller commits its cursor,
the fetcher marks orders fetched, only after ``publish`` returned):

* publisher confirms, persistent messages, ``mandatory=True`` with returned
  messages raised as ``PublishUnroutable``;
* a deadline per publish (``publish_timeout_seconds``) covering the wait for a
  slot, the write and the confirm: a broker that is down or blocked yields a
  ``RetryableError`` within the deadline, never a hang (aio-pika#636: a publish
  on a robust channel whose connection is gone waits for the reconnection);
* many confirms in flight at once (``publish_max_in_flight``) and a bounded
  queue of waiters (``publish_max_waiting``): beyond it ``Backpressure`` is raised
  at once, so memory stays bounded and ingress can answer 503. Batches
  (``publish_many``) wait for slots instead: they are one caller, not many.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Protocol

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, DeliveryError, PublishError

from shared.broker.envelope import Envelope, envelope_for
from shared.broker.topology import EVENTS_EXCHANGE
from shared.errors import (
    Backpressure,
    BrokerUnavailable,
    PublishNacked,
    PublishTimeout,
    PublishUnroutable,
    RetryableError,
)
from shared.metrics import PublisherMetrics
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings


class Publisher(Protocol):
    """The port services publish through (a recording fake lives in ``shared.testing``)."""

    async def publish(self, event: CanonicalEvent) -> None:
        """Return once the broker confirmed the event; raise ``RetryableError`` otherwise."""

    async def publish_many(self, events: Sequence[CanonicalEvent]) -> None:
        """Return once *all* events are confirmed; otherwise raise the first error."""


class RabbitPublisher:
    """``Publisher`` over one aio-pika channel in confirm mode."""

    def __init__(
        self,
        channel: AbstractChannel,
        exchange: AbstractExchange,
        *,
        timeout: float,
        max_in_flight: int,
        max_waiting: int,
        metrics: PublisherMetrics | None = None,
    ) -> None:
        self._channel = channel
        self._exchange = exchange
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        self._max_waiting = max_waiting
        self._waiting = 0
        self._in_flight = 0
        self._metrics = metrics
        self._last_confirm = 0.0
        self._last_timeout = 0.0

    @classmethod
    async def open(
        cls,
        connection: AbstractRobustConnection,
        settings: BrokerSettings,
        *,
        metrics: PublisherMetrics | None = None,
        exchange: str = EVENTS_EXCHANGE,
    ) -> RabbitPublisher:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        target = await channel.get_exchange(exchange, ensure=False)
        return cls(
            channel,
            target,
            timeout=settings.publish_timeout_seconds,
            max_in_flight=settings.publish_max_in_flight,
            max_waiting=settings.publish_max_waiting,
            metrics=metrics,
        )

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def not_ready_reason(self) -> str | None:
        """None when publishing can work now, else why not (for /readyz).

        A black-holed broker keeps the TCP connection (and the channel) open
        until heartbeats give up, so the channel alone says nothing: a confirm
        deadline missed since the last confirm arrived makes the service unready
        too. That memory fades after ``stall_memory`` seconds, so an instance
        taken out of rotation gets traffic again and finds out anew.
        """
        if self._channel.is_closed:
            return "broker channel closed"
        if self._last_timeout > self._last_confirm:
            ago = asyncio.get_running_loop().time() - self._last_timeout
            if ago < self.stall_memory:
                return f"the broker confirmed nothing within {self._timeout:g}s ({ago:.0f}s ago)"
        return None

    @property
    def stall_memory(self) -> float:
        return max(30.0, 3 * self._timeout)

    async def close(self) -> None:
        if not self._channel.is_closed:
            await self._channel.close()

    async def publish(self, event: CanonicalEvent) -> None:
        envelope = envelope_for(event)
        started = await self._acquire_slot()
        await self._publish_in_slot(envelope, event, started)

    async def send(self, envelope: Envelope) -> None:
        """Publish one prepared envelope with a confirm (DLQ replay republishes this way)."""
        started = await self._acquire_slot()
        await self._publish_in_slot(envelope, None, started)

    async def publish_many(self, events: Sequence[CanonicalEvent]) -> None:
        """Pipeline a batch: each event is encoded once it holds a slot, while earlier
        confirms are pending.

        Batch producers wait for slots instead of being shed (they are one caller);
        each publish keeps its own deadline, so the wait is bounded. After the first
        failure no further event is sent; the caller retries the whole batch
        (duplicates are harmless, gaps are not).
        """
        await self._pipeline([(None, event) for event in events])

    async def send_many(self, envelopes: Iterable[Envelope]) -> None:
        """``publish_many`` for prepared envelopes."""
        await self._pipeline([(envelope, None) for envelope in envelopes])

    async def _pipeline(
        self, items: Sequence[tuple[Envelope | None, CanonicalEvent | None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        failed = False

        async def one(envelope: Envelope | None, event: CanonicalEvent | None) -> None:
            nonlocal failed
            await self._slots.acquire()
            if failed:
                self._slots.release()
                return
            try:
                if envelope is None:
                    assert event is not None
                    envelope = envelope_for(event)
                await self._publish_in_slot(envelope, event, loop.time())
            except BaseException:
                failed = True
                raise

        results = await asyncio.gather(
            *(one(envelope, event) for envelope, event in items), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _acquire_slot(self) -> float:
        """Wait for a publish slot; returns the loop time the deadline counts from."""
        started = asyncio.get_running_loop().time()
        if self._slots.locked() and self._waiting >= self._max_waiting:
            self._count_failure("backpressure")
            raise Backpressure("too many publishes awaiting broker confirms", retry_after=1)
        self._waiting += 1
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            self._count_failure("backpressure")
            raise Backpressure(
                f"no publish slot within {self._timeout:g}s", retry_after=1
            ) from None
        finally:
            self._waiting -= 1
        return started

    async def _publish_in_slot(
        self, envelope: Envelope, event: CanonicalEvent | None, started: float
    ) -> None:
        """Publish holding an acquired slot, within the deadline counted from ``started``."""
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        if self._metrics is not None:
            self._metrics.in_flight.inc()
        try:
            await self._confirmed(envelope, max(self._timeout - (loop.time() - started), 0.001))
            if self._metrics is not None:
                self._metrics.confirm_seconds.observe(loop.time() - started)
                if event is not None:
                    self._metrics.published.labels(event.source, event.kind, event.channel).inc()
        except RetryableError as exc:
            self._count_failure(_REASONS.get(type(exc), "other"))
            raise
        finally:
            self._in_flight -= 1
            if self._metrics is not None:
                self._metrics.in_flight.dec()
            self._slots.release()

    async def _confirmed(self, envelope: Envelope, remaining: float) -> None:
        """One publish and its confirm, library errors translated into ours."""
        if self._channel.is_closed:
            raise BrokerUnavailable("no open channel to RabbitMQ", retry_after=2)
        message = aio_pika.Message(
            envelope.body,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=envelope.message_id,
            headers=envelope.headers,
            timestamp=envelope.timestamp,
            type=envelope.type,
            app_id="orderbridge",
        )
        try:
            # One deadline for everything, including aio-pika waiting for a robust
            # connection to come back (aio-pika#636); no second timer inside.
            async with asyncio.timeout(remaining):
                await self._exchange.publish(message, envelope.routing_key, mandatory=True)
            self._last_confirm = asyncio.get_running_loop().time()
        except TimeoutError:
            self._last_timeout = asyncio.get_running_loop().time()
            raise PublishTimeout(
                f"no broker confirm within {self._timeout:g}s", retry_after=5
            ) from None
        except PublishError:
            raise PublishUnroutable(
                f"no queue is bound for routing key {envelope.routing_key!r}", retry_after=30
            ) from None
        except DeliveryError as exc:
            raise PublishNacked(f"broker refused the message: {exc}", retry_after=5) from None
        except (AMQPError, ConnectionError, RuntimeError) as exc:
            raise BrokerUnavailable(f"broker connection failed: {exc!r}", retry_after=2) from None

    def _count_failure(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.failures.labels(reason).inc()


_REASONS: dict[type[RetryableError], str] = {
    PublishTimeout: "timeout",
    PublishUnroutable: "unroutable",
    PublishNacked: "nack",
    BrokerUnavailable: "unavailable",
}
