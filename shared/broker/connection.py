"""Opening RabbitMQ connections and declaring the topology (I/O)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractRobustConnection
from aio_pika.exceptions import AMQPError, ChannelPreconditionFailed
from aiormq.exceptions import ProbableAuthenticationError, ProtocolSyntaxError

from shared.broker.topology import Topology
from shared.errors import AccessRefused, BrokerUnavailable, ConfigurationError
from shared.logging import get_logger
from shared.settings import BrokerSettings
from shared.startup import wait_until_up

log = get_logger(__name__)


async def connect(
    settings: BrokerSettings, *, name: str, wait_seconds: float = 0.0
) -> AbstractRobustConnection:
    """A robust connection named after the service (visible in the management UI).

    With ``wait_seconds`` > 0 a broker that is not up yet is retried for that
    long (services starting beside RabbitMQ, with a countdown on a terminal);
    afterwards ``BrokerUnavailable``. A refused login raises ``AccessRefused``
    and a virtual host the broker will not open ``ConfigurationError`` at once:
    waiting cannot fix either. Every message names ``ORDERBRIDGE_AMQP_URL``,
    its password masked.
    """
    url = settings.amqp_url.get_secret_value()
    where = f"{settings.redacted_url()} ({AMQP_URL})"

    async def attempt() -> AbstractRobustConnection:
        try:
            with _quiet_connect_errors():
                return await aio_pika.connect_robust(
                    url,
                    client_properties={"connection_name": f"orderbridge-{name}"},
                    timeout=10,
                    reconnect_interval=1.0,
                )
        except ProbableAuthenticationError:
            raise AccessRefused(
                f"RabbitMQ refused the login at {where}: fix the user or password in {AMQP_URL}"
            ) from None
        except ProtocolSyntaxError:
            raise ConfigurationError(
                f"RabbitMQ closed the connection to {where} while opening its virtual host: "
                f"check that the vhost in {AMQP_URL} exists and the user may use it"
            ) from None
        except (TimeoutError, OSError, AMQPError) as exc:
            reason = _first(exc) if isinstance(exc, AMQPError) else str(exc)
            raise BrokerUnavailable(
                f"cannot connect to {where}: {reason or type(exc).__name__}", retry_after=5
            ) from None

    return await wait_until_up(
        attempt,
        what=f"RabbitMQ at {where}",
        wait_seconds=wait_seconds,
        variable=AMQP_URL,
        unavailable=BrokerUnavailable,
    )


AMQP_URL = "ORDERBRIDGE_AMQP_URL"


def _first(exc: BaseException) -> str:
    """aiormq errors carry their text as the first argument (or an errno, then the text)."""
    args = [arg for arg in exc.args if isinstance(arg, str)]
    return args[0] if args else str(exc)


class _DropTransportErrors(logging.Filter):
    """aiormq logs each failed connect at ERROR; the countdown or the final line says it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("error when creating transport")


@contextlib.contextmanager
def _quiet_connect_errors() -> Iterator[None]:
    logger = logging.getLogger("aiormq.connection")
    dropped = _DropTransportErrors()
    logger.addFilter(dropped)
    try:
        yield
    finally:
        logger.removeFilter(dropped)


def link_down_reason(connection: AbstractRobustConnection) -> str | None:
    """Why ``connection`` cannot carry traffic right now, or None when it can.

    A robust connection is not ``is_closed`` while it reconnects after losing the
    broker; its transport is gone then, which is what readiness must reflect.
    """
    if connection.is_closed:
        return "broker connection closed"
    transport = getattr(connection, "transport", None)
    if transport is None or transport.connection.is_closed:
        return "broker connection lost; reconnecting"
    return None


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
