"""Declaring a route on the broker a user has (I/O around ``topology.choose_layout``).

The route exchange is declared first, alone, on a throw-away channel: when it
already exists with the other type, RabbitMQ refuses with 406 (and closes
that channel) naming the current type, and the route takes the layout that
works with what exists instead of crash-looping on a traceback. Queues and
bindings follow with the chosen layout.
"""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelPreconditionFailed

from services.consumers.config import Route
from services.consumers.topology import (
    RouteLayout,
    choose_layout,
    existing_exchange_type,
    mismatch_warning,
    route_topology,
)
from shared.broker.connection import declare_topology
from shared.errors import ConfigurationError
from shared.logging import get_logger

log = get_logger(__name__)


async def declare_route(
    connection: AbstractRobustConnection, route: Route, *, consistent_hash: bool
) -> RouteLayout:
    """Declare ``route``'s exchange, queues and bindings; returns the layout it runs with."""
    layout = choose_layout(route, consistent_hash=consistent_hash)
    refusal = await _declare_exchange(connection, route, layout)
    if refusal is not None:
        existing = existing_exchange_type(refusal)
        if existing is None:
            raise ConfigurationError(
                f"route {route.name}: RabbitMQ refused its exchange: {refusal}"
            )
        layout = choose_layout(route, consistent_hash=consistent_hash, existing=existing)
        again = await _declare_exchange(connection, route, layout)
        if again is not None:
            raise ConfigurationError(f"route {route.name}: RabbitMQ refused its exchange: {again}")
        if consistent_hash and not layout.hashed:
            log.warning(mismatch_warning(route, layout), route=route.name)
    await declare_topology(connection, route_topology(route, layout))
    return layout


async def _declare_exchange(
    connection: AbstractRobustConnection, route: Route, layout: RouteLayout
) -> str | None:
    """Declare the route exchange; the broker's refusal text when it has another one."""
    (exchange,) = route_topology(route, layout).exchanges
    channel = await connection.channel(publisher_confirms=False)
    try:
        await channel.declare_exchange(
            exchange.name,
            type=exchange.type,
            durable=exchange.durable,
            internal=exchange.internal,
            arguments=dict(exchange.arguments),
        )
    except ChannelPreconditionFailed as exc:
        return str(exc)
    finally:
        if not channel.is_closed:
            await channel.close()
    return None
