"""The orderbridge publisher vs a bare aio-pika confirmed-publish loop.

Both publish the same ~5 KB persistent messages (same body, properties and
headers) to ``orderbridge.events`` on a private vhost (bound to the archive
stream, as in production), with ``mandatory=True`` and the same number of
confirms in flight, so the ratio is the cost of the publisher itself
(deadlines, slots, error translation). Details also show
``publish_event_per_s``, the publisher fed ``CanonicalEvent``s (encoding
included), and ``bare_minimal_per_s``, a bare loop without headers or
properties (what the six routing headers cost). Rounds alternate to share the
machine's noise; the ratio is the median of the paired per-round ratios (values
are medians; best-vs-best is in the details). Target: ratio >= 0.9.

    python -m bench.publish
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from bench import _common
from shared.broker.connection import connect, declare_topology
from shared.broker.envelope import Envelope, envelope_for
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import EVENTS_EXCHANGE
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings
from tests.support.events import order_event
from tests.support.rabbit import private_vhost

MESSAGES = 5_000
IN_FLIGHT = 256
ROUNDS = 5
TARGET_BYTES = 5_000


def make_events() -> list[CanonicalEvent]:
    lines = 1
    while len(envelope_for(order_event(lines=lines)).body) < TARGET_BYTES:
        lines += 1
    return [order_event(lines=lines) for _ in range(MESSAGES)]


def identical_message(envelope: Envelope) -> aio_pika.Message:
    """The message RabbitPublisher sends for this envelope, built by hand."""
    return aio_pika.Message(
        envelope.body,
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope.message_id,
        headers=envelope.headers,
        timestamp=envelope.timestamp,
        type=envelope.type,
        app_id="orderbridge",
    )


def minimal_message(envelope: Envelope) -> aio_pika.Message:
    return aio_pika.Message(envelope.body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)


async def bare_loop(
    connection: AbstractRobustConnection,
    envelopes: list[Envelope],
    build: Callable[[Envelope], aio_pika.Message],
) -> float:
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(envelope: Envelope) -> None:
        async with slots:
            await exchange.publish(build(envelope), envelope.routing_key, mandatory=True)

    started = time.perf_counter()
    await asyncio.gather(*(one(envelope) for envelope in envelopes))
    rate = len(envelopes) / (time.perf_counter() - started)
    await channel.close()
    return rate


async def timed(coro: object) -> float:
    started = time.perf_counter()
    await coro  # type: ignore[misc]
    return MESSAGES / (time.perf_counter() - started)


async def main() -> None:
    events = make_events()
    envelopes = [envelope_for(event) for event in events]
    size = len(envelopes[0].body)
    bare: list[float] = []
    ours: list[float] = []
    from_events: list[float] = []
    minimal: list[float] = []
    with private_vhost("orderbridge-bench") as url:
        settings = BrokerSettings(amqp_url=SecretStr(url), publish_max_in_flight=IN_FLIGHT)
        connection = await connect(settings, name="bench", wait_seconds=10)
        await declare_topology(connection, settings.topology())
        publisher = await RabbitPublisher.open(connection, settings)
        for round_ in range(ROUNDS):
            bare.append(await bare_loop(connection, envelopes, identical_message))
            ours.append(await timed(publisher.send_many(envelopes)))
            from_events.append(await timed(publisher.publish_many(events)))
            minimal.append(await bare_loop(connection, envelopes, minimal_message))
            _common.note(
                f"round {round_ + 1}: bare {bare[-1]:.0f}/s, orderbridge {ours[-1]:.0f}/s, "
                f"from events {from_events[-1]:.0f}/s, bare minimal {minimal[-1]:.0f}/s "
                f"({size} B messages)"
            )
        await publisher.close()
        await connection.close()
    # Rounds alternate bare and ours, so each pair shares the machine's mood of the
    # moment; the median of the paired ratios is steadier than best-vs-best.
    paired = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    _common.report(
        "publish",
        value=statistics.median(ours),
        unit="msg/s",
        baseline=statistics.median(bare),
        ratio=paired,
        target=">= 0.9",
        best_vs_best=round(max(ours) / max(bare), 3),
        message_bytes=size,
        in_flight=IN_FLIGHT,
        messages=MESSAGES,
        publish_event_per_s=round(max(from_events)),
        bare_minimal_per_s=round(max(minimal)),
    )


if __name__ == "__main__":
    asyncio.run(main())
