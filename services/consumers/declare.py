"""Declaring a route on the broker a user has (I/O around ``topology.choose_layout``).

The route exchange is declared first, alone, on a throw-away channel: when it
already exists with the other type, RabbitMQ refuses with 406 (and closes
that channel) naming the current type, and the route takes the layout that
works with what exists instead of crash-looping on a traceback. Queues and
bindings follow with the chosen layout.

``reshard_route`` moves a route created without the plugin (a fanout
exchange, one shard) to the hashed layout once the plugin is on: with the
route's consumers stopped and its queues empty, it binds shard-0 straight to
``orderbridge.events`` while it swaps the exchange, so an event published
during the swap arrives (at most twice, which the route's idempotency
absorbs) rather than never.
"""

from __future__ import annotations

from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelPreconditionFailed

from services.consumers.config import Route
from services.consumers.topology import (
    PLAIN,
    README_SECTION,
    RouteLayout,
    choose_layout,
    existing_exchange_type,
    mismatch_warning,
    retry_queue,
    route_exchange,
    route_topology,
    shard_queue,
)
from shared.broker.connection import declare_topology
from shared.broker.topology import ENABLE_CONSISTENT_HASH, EVENTS_EXCHANGE
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


async def reshard_route(
    connection: AbstractRobustConnection, route: Route, *, consistent_hash: bool
) -> bool:
    """Give a plain route its hashed layout; False when there was nothing to move.

    Refuses (``ConfigurationError``) without the plugin, while a consumer is
    attached to shard-0 or while messages wait in the route's queues: they
    would be consumed beside the new shards, a document's versions side by side.
    """
    if not consistent_hash:
        raise ConfigurationError(
            f"route {route.name}: resharding needs the consistent-hash exchange; "
            f"run `{ENABLE_CONSISTENT_HASH}` first"
        )
    target = choose_layout(route, consistent_hash=True)
    refusal = await _declare_exchange(connection, route, target)
    if refusal is None:
        return False  # hashed already, or new: ``declare_route`` completes it
    if existing_exchange_type(refusal) != PLAIN:
        raise ConfigurationError(f"route {route.name}: RabbitMQ refused its exchange: {refusal}")
    shard = shard_queue(route.name, 0)
    waiting, consumers = await _backlog(
        connection, [shard, *(retry_queue(route.name, d) for d in route.retry_delays)]
    )
    if consumers:
        raise ConfigurationError(
            f"route {route.name}: {consumers} consumer(s) still read {shard}; stop the "
            "route's consumers, then reshard"
        )
    if waiting:
        raise ConfigurationError(
            f"route {route.name}: {waiting} message(s) wait in its queues; stop its consumers, "
            f"run `orderbridge consumer --route {route.name} --drain`, then reshard "
            f"({README_SECTION})"
        )
    channel = await connection.channel(publisher_confirms=False)
    try:
        queue = await channel.get_queue(shard, ensure=False)
        for pattern in route.bindings:  # nothing published during the swap is lost
            await queue.bind(EVENTS_EXCHANGE, pattern)
        await channel.exchange_delete(route_exchange(route.name))
        await declare_topology(connection, route_topology(route, target))
        for pattern in route.bindings:
            await queue.unbind(EVENTS_EXCHANGE, pattern)
    finally:
        if not channel.is_closed:
            await channel.close()
    log.info("route resharded", route=route.name, shards=target.shards)
    return True


async def _backlog(connection: AbstractRobustConnection, queues: list[str]) -> tuple[int, int]:
    """Messages waiting in ``queues`` and consumers of the first one."""
    channel = await connection.channel(publisher_confirms=False)
    try:
        waiting = 0
        consumers = 0
        for index, name in enumerate(queues):
            declared = await channel.declare_queue(name, passive=True)
            waiting += declared.declaration_result.message_count or 0
            if index == 0:
                consumers = declared.declaration_result.consumer_count or 0
        return waiting, consumers
    finally:
        if not channel.is_closed:
            await channel.close()
