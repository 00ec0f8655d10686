"""The README's minimal consumer: another process that knows only the exchange and the schema."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection

from shared.broker.publisher import RabbitPublisher
from shared.settings import BrokerSettings
from tests.support.events import order_event

pytestmark = pytest.mark.integration
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "minimal_consumer.py"


async def test_minimal_consumer_receives_validated_events_it_subscribed_to(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    amqp_url: str,
) -> None:
    queue = f"example.{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--url",
        amqp_url,
        "--queue",
        queue,
        "--bind",
        "*.order.*.Shipped",
        "--max",
        "2",
        stdout=asyncio.subprocess.PIPE,
    )
    channel = await connection.channel()
    for _ in range(100):  # its queue exists once it subscribed
        try:
            await channel.declare_queue(queue, passive=True)
            break
        except Exception:
            channel = await connection.channel()
            await asyncio.sleep(0.1)
    publisher = await RabbitPublisher.open(connection, broker_settings)
    shipped = order_event(logistics_status="Shipped")
    await publisher.publish(order_event(logistics_status="Open"))  # not subscribed
    await publisher.publish(shipped)
    await publisher.publish(shipped)  # a redelivery: deduplicated by event_id
    await publisher.publish(order_event(logistics_status="Shipped", version=2))
    await publisher.close()
    out, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert [line["routing_key"] for line in lines] == ["tradecloud.order.Confirmed.Shipped"] * 2
    assert [line["version"] for line in lines] == [1, 2]
    await channel.queue_delete(queue)
