"""Opening RabbitMQ connections and declaring the topology (I/O)."""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelPreconditionFailed

from shared.broker.topology import Topology
from shared.errors import BrokerUnavailable, ConfigurationError
from shared.logging import get_logger
from shared.settings import BrokerSettings

log = get_logger(__name__)


async def connect(
    settings: BrokerSettings, *, name: str, wait_seconds: float = 0.0
) -> AbstractRobustConnection:
    """A robust connection named after the service (visible in the management UI).

    With ``wait_seconds`` > 0 a broker that is not up yet is retried for that
    long (services starting beside RabbitMQ); afterwards ``BrokerUnavailable``.
    """
    url = settings.amqp_url.get_secret_value()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.2
    while True:
        try:
            return await aio_pika.connect_robust(
                url,
                client_properties={"connection_name": f"orderbridge-{name}"},
                timeout=10,
                reconnect_interval=1.0,
            )
        except (TimeoutError, OSError, AMQPError) as exc:
            if loop.time() + delay > deadline:
                raise BrokerUnavailable(
                    f"cannot connect to {settings.redacted_url()}: {exc}", retry_after=5
                ) from None
            log.warning("broker not reachable yet", url=settings.redacted_url(), error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def declare(channel: AbstractChannel, topology: Topology) -> None:
    """Declare exchanges, queues and bindings; safe to repeat with the same values."""
    try:
        for exchange in topology.exchanges:
            await channel.declare_exchange(
                exchange.name,
                type=exchange.type,
                durable=exchange.durable,
                internal=exchange.internal,
                arguments=dict(exchange.arguments),
            )
        for queue in topology.queues:
            await channel.declare_queue(
                queue.name, durable=queue.durable, arguments=dict(queue.arguments)
            )
        for binding in topology.bindings:
            if binding.destination_type == "queue":
                target = await channel.get_queue(binding.destination, ensure=False)
                await target.bind(
                    binding.source, binding.routing_key, arguments=dict(binding.arguments)
                )
            else:
                destination = await channel.get_exchange(binding.destination, ensure=False)
                await destination.bind(
                    binding.source, binding.routing_key, arguments=dict(binding.arguments)
                )
    except ChannelPreconditionFailed as exc:
        raise ConfigurationError(
            f"RabbitMQ already has an object with other arguments: {exc}. "
            "Delete it or align the settings (queue arguments cannot change in place)."
        ) from None


async def declare_topology(connection: AbstractRobustConnection, topology: Topology) -> None:
    """Declare on a short-lived channel (a failed declare closes its channel)."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        await declare(channel, topology)
    finally:
        if not channel.is_closed:
            await channel.close()
