"""The confirmed publisher against the real RabbitMQ (never a mock)."""

from __future__ import annotations

import asyncio
import time
import uuid

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustConnection
from pydantic import SecretStr

from shared.broker.connection import connect, declare
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import ARCHIVE_QUEUE, EVENTS_EXCHANGE, Topology, quorum_queue
from shared.errors import (
    Backpressure,
    BrokerUnavailable,
    PublishTimeout,
    PublishUnroutable,
    RetryableError,
)
from shared.metrics import PublisherMetrics, new_registry
from shared.schema.codec import decode_event
from shared.settings import BrokerSettings
from tests.support.events import order_event
from tests.support.rabbit import list_queues
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


async def _bound_queue(connection: AbstractRobustConnection, *patterns: str) -> AbstractQueue:
    channel = await connection.channel()
    queue = await channel.declare_queue(exclusive=True)
    for pattern in patterns:
        await queue.bind(EVENTS_EXCHANGE, pattern)
    return queue


async def _get(queue: AbstractQueue, within: float = 5.0) -> AbstractIncomingMessage:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        message = await queue.get(no_ack=True, fail=False)
        if message is not None:
            return message
        await asyncio.sleep(0.02)
    raise AssertionError(f"nothing arrived on {queue.name} within {within}s")


@pytest.mark.parametrize(
    "pattern",
    [
        "tradecloud.order.Confirmed.Open",
        "tradecloud.order.Confirmed.*",
        "*.order.*.Open",
        "tradecloud.#",
        "#",
    ],
)
async def test_published_event_reaches_each_binding_pattern(
    connection: AbstractRobustConnection, publisher: RabbitPublisher, pattern: str
) -> None:
    queue = await _bound_queue(connection, pattern)
    event = order_event()
    await publisher.publish(event)
    message = await _get(queue)
    assert message.routing_key == "tradecloud.order.Confirmed.Open"
    assert message.message_id == event.event_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.content_type == "application/json"
    assert message.headers["document_id"] == event.document_id
    assert message.headers["version"] == 1
    assert message.headers["schema_version"] == 1
    assert message.headers["source"] == "tradecloud"
    assert message.headers["kind"] == "order"
    assert message.headers["event_name"] == "OrderLinesConfirmedBySupplier"
    assert decode_event(message.body) == event


async def test_non_matching_bindings_receive_nothing(
    connection: AbstractRobustConnection, publisher: RabbitPublisher
) -> None:
    other = await _bound_queue(connection, "apicbase.#", "*.shipment.*.*", "*.order.*.Shipped")
    await publisher.publish(order_event())
    await asyncio.sleep(0.3)
    assert await other.get(no_ack=True, fail=False) is None


async def test_every_event_is_archived_in_the_stream_in_order(
    connection: AbstractRobustConnection, publisher: RabbitPublisher
) -> None:
    events = [order_event(version=v) for v in range(1, 6)]
    for event in events:
        await publisher.publish(event)
    wanted = [e.event_id for e in events]
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    stream = await channel.get_queue(ARCHIVE_QUEUE, ensure=False)
    seen: list[str] = []
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        if message.message_id in wanted:
            seen.append(message.message_id)
        await message.ack()
        if len(seen) == len(wanted):
            done.set()

    tag = await stream.consume(on_message, arguments={"x-stream-offset": "first"})
    await asyncio.wait_for(done.wait(), 10)
    await stream.cancel(tag)
    await channel.close()
    assert seen == wanted


async def test_unroutable_publish_is_an_error(
    connection: AbstractRobustConnection, broker_settings: BrokerSettings
) -> None:
    channel = await connection.channel()
    name = f"test.unbound.{uuid.uuid4().hex[:8]}"
    await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    pub = await RabbitPublisher.open(connection, broker_settings, exchange=name)
    with pytest.raises(PublishUnroutable, match="no queue is bound"):
        await pub.publish(order_event())
    await pub.close()
    await channel.close()


async def test_quorum_queue_receives_persistent_messages(
    connection: AbstractRobustConnection, publisher: RabbitPublisher, vhost: str
) -> None:
    name = f"test.quorum.{uuid.uuid4().hex[:8]}"
    channel = await connection.channel()
    spec = quorum_queue(name, delivery_limit=3)
    await declare(channel, Topology(queues=(spec,)))
    queue = await channel.get_queue(name)
    await queue.bind(EVENTS_EXCHANGE, "tradecloud.order.#")
    event = order_event()
    await publisher.publish(event)
    message = await _get(queue)
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    rows = {row[0]: row for row in list_queues(vhost, "name", "type", "durable", "arguments")}
    assert rows[name][1] == "quorum"
    assert rows[name][2] == "true"
    assert "x-delivery-limit" in rows[name][3]
    await queue.delete(if_unused=False, if_empty=False)
    await channel.close()


async def test_many_confirms_are_in_flight_at_once(
    connection: AbstractRobustConnection, broker_settings: BrokerSettings
) -> None:
    registry = new_registry()
    metrics = PublisherMetrics(registry)
    pub = await RabbitPublisher.open(connection, broker_settings, metrics=metrics)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, pub.in_flight)
            await asyncio.sleep(0)

    watcher = asyncio.create_task(watch())
    await pub.publish_many([order_event() for _ in range(300)])
    watcher.cancel()
    assert peak > 10, f"confirms were awaited one at a time (peak {peak})"
    assert (
        registry.get_sample_value(
            "orderbridge_events_published_total",
            {"source": "tradecloud", "kind": "order", "channel": "webhook"},
        )
        == 300
    )
    await pub.close()


async def test_unreachable_broker_fails_fast_and_retryable() -> None:
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable):
        await connect(
            BrokerSettings(amqp_url=SecretStr("amqp://guest:guest@127.0.0.1:1/")),
            name="tests",
            wait_seconds=1.0,
        )
    assert time.monotonic() - started < 5


async def test_silent_broker_times_out_instead_of_hanging(amqp_url: str) -> None:
    """A broker that stops answering (paused connection): no confirm, a retryable error in time."""
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    settings = BrokerSettings(
        amqp_url=SecretStr(amqp_url.replace(":5672", f":{proxy.port}")),
        publish_timeout_seconds=1.0,
    )
    conn = await connect(settings, name="tests-proxy", wait_seconds=5)
    pub = await RabbitPublisher.open(conn, settings)
    await pub.publish(order_event())  # healthy first
    proxy.pause()
    started = time.monotonic()
    with pytest.raises(PublishTimeout):
        await pub.publish(order_event())
    assert time.monotonic() - started < 2.0
    proxy.resume()
    await proxy.cut()
    await conn.close()


async def test_lost_broker_is_retryable_and_recovers(amqp_url: str) -> None:
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    settings = BrokerSettings(
        amqp_url=SecretStr(amqp_url.replace(":5672", f":{proxy.port}")),
        publish_timeout_seconds=1.0,
    )
    conn = await connect(settings, name="tests-proxy", wait_seconds=5)
    pub = await RabbitPublisher.open(conn, settings)
    await proxy.cut()
    await asyncio.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(RetryableError):
        await pub.publish(order_event())
    assert time.monotonic() - started < 2.0
    assert pub.not_ready_reason() is not None
    await proxy.restore()
    deadline = time.monotonic() + 15
    while True:  # the robust connection comes back by itself
        try:
            await pub.publish(order_event())
            break
        except RetryableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)
    assert pub.not_ready_reason() is None
    await conn.close()
    await proxy.cut()


async def test_too_many_waiting_publishes_shed_load(amqp_url: str) -> None:
    proxy = await TcpProxy("127.0.0.1", 5672).start()
    settings = BrokerSettings(
        amqp_url=SecretStr(amqp_url.replace(":5672", f":{proxy.port}")),
        publish_timeout_seconds=2.0,
        publish_max_in_flight=1,
        publish_max_waiting=0,
    )
    conn = await connect(settings, name="tests-proxy", wait_seconds=5)
    pub = await RabbitPublisher.open(conn, settings)
    proxy.pause()
    first = asyncio.create_task(pub.publish(order_event()))
    await asyncio.sleep(0.05)
    with pytest.raises(Backpressure):
        await pub.publish(order_event())
    proxy.resume()
    await first
    await conn.close()
    await proxy.cut()


async def test_a_failed_batch_stops_sending_after_the_first_error(
    connection: AbstractRobustConnection, broker_settings: BrokerSettings
) -> None:
    channel = await connection.channel()
    name = f"test.unbound.{uuid.uuid4().hex[:8]}"
    await channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
    registry = new_registry()
    settings = broker_settings.model_copy(update={"publish_max_in_flight": 1})
    pub = await RabbitPublisher.open(
        connection, settings, exchange=name, metrics=PublisherMetrics(registry)
    )
    with pytest.raises(PublishUnroutable):
        await pub.publish_many([order_event() for _ in range(20)])
    assert (
        registry.get_sample_value("orderbridge_publish_failures_total", {"reason": "unroutable"})
        == 1
    ), "the rest of the batch must not be sent once one publish failed"
    await pub.close()
    await channel.close()
