"""The private RabbitMQ node used by `run --demo` and by restart tests."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import aio_pika
import pytest
from pydantic import SecretStr

from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.local_rabbit import LocalRabbit, installed
from shared.settings import BrokerSettings
from tests.support.events import order_event

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not installed(), reason="rabbitmq-server is not installed here"),
]


@pytest.fixture
def rabbit() -> Iterator[LocalRabbit]:
    directory = Path(tempfile.mkdtemp(prefix="orderbridge-rabbit-", dir="/tmp"))
    node = LocalRabbit(directory, port=5698, name=f"t{uuid.uuid4().hex[:6]}")
    node.start()
    yield node
    node.stop()
    shutil.rmtree(directory, ignore_errors=True)


async def test_durable_messages_survive_a_broker_restart(rabbit: LocalRabbit) -> None:
    settings = BrokerSettings(amqp_url=SecretStr(rabbit.url))
    connection = await connect(settings, name="tests", wait_seconds=10)
    await declare_topology(connection, settings.topology())
    channel = await connection.channel()
    queue = await channel.declare_queue(
        "restart-check", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind("orderbridge.events", "#")
    publisher = await RabbitPublisher.open(connection, settings)
    event = order_event()
    await publisher.publish(event)
    await connection.close()

    rabbit.restart()

    connection = await connect(settings, name="tests", wait_seconds=20)
    channel = await connection.channel()
    restored = await channel.get_queue("restart-check")
    message = await restored.get(no_ack=True, timeout=10)
    assert message.message_id == event.event_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    await connection.close()
