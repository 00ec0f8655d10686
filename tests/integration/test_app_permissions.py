"""The compose deployment's application user can do everything the services do, and no more.

A user with ``APP_PERMISSIONS`` (what ``deploy/rabbitmq/start.sh`` grants) on a private
vhost declares the core and a route's topology, publishes to the events exchange and
through the default exchange (retries), reads a queue, and is refused any other name.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import quote, urlsplit, urlunsplit

import aio_pika
import pytest
from aio_pika.abc import AbstractIncomingMessage
from aiormq.exceptions import ChannelAccessRefused

from services.consumers.config import AdapterConfig, Route
from services.consumers.topology import retry_queue, route_topology, shard_queue
from shared.broker.connection import declare_topology
from shared.broker.definitions import APP_PERMISSIONS
from shared.broker.topology import EVENTS_EXCHANGE, core_topology

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="needs rabbitmqctl"),
]


def _ctl(*args: str, stdin: str | None = None) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args],
        input=stdin,
        text=True,
        check=True,
        timeout=60,
        capture_output=True,
    )


@pytest.fixture
def app_user_url(amqp_url: str) -> Iterator[str]:
    parts = urlsplit(amqp_url)
    vhost = parts.path[1:] or "/"
    user, password = f"orderbridge-perm-{secrets.token_hex(4)}", secrets.token_hex(12)
    _ctl("add_user", user, stdin=password)  # the way start.sh does, password on stdin
    try:
        _ctl(
            "set_permissions", "-p", vhost, user,
            APP_PERMISSIONS["configure"], APP_PERMISSIONS["write"], APP_PERMISSIONS["read"],
        )  # fmt: skip
        netloc = f"{quote(user)}:{password}@{parts.hostname}:{parts.port or 5672}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        _ctl("delete_user", user)


async def test_the_app_user_runs_the_services_and_nothing_else(app_user_url: str) -> None:
    route = Route(
        name="perm", bindings=("tradecloud.#",), adapter=AdapterConfig(type="file"), shards=2
    )
    connection = await aio_pika.connect_robust(app_user_url)
    try:
        await declare_topology(connection, core_topology())
        await declare_topology(connection, route_topology(route))
        channel = await connection.channel(publisher_confirms=True)
        events = await channel.get_exchange(EVENTS_EXCHANGE)
        await events.publish(
            aio_pika.Message(b"{}", message_id="m1"), routing_key="tradecloud.order.x.y"
        )
        retry = retry_queue(route.name, route.retry_delays[0])
        await channel.default_exchange.publish(aio_pika.Message(b"{}"), routing_key=retry)
        shard = await channel.get_queue(shard_queue(route.name, 0))

        async def ack(message: AbstractIncomingMessage) -> None:
            await message.ack()

        tag = await shard.consume(ack)  # read: the route's shards
        await shard.cancel(tag)

        refused = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await refused.declare_exchange("elsewhere.events", durable=True)
        refused = await connection.channel()
        with pytest.raises(ChannelAccessRefused):
            await refused.declare_queue("elsewhere.queue", durable=True)
    finally:
        await connection.close()
