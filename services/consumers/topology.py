"""A route's RabbitMQ objects, as data (pure).

    orderbridge.events ──(route bindings)──▶ orderbridge.route.<name>
                                            (x-consistent-hash on the document_id header)
                         ┌──────────────────────┼──────────────────────┐
                         ▼                      ▼                      ▼
        orderbridge.route.<name>.shard-0   …shard-1   …   …shard-<N-1>   quorum,
                                                                      single active consumer
    orderbridge.route.<name>.retry-<seconds>s   quorum, TTL; expired messages go back to
                                                 the route exchange (same shard: same header)
    orderbridge.route.<name>.dead-letter        quorum, bound to orderbridge.dead-letter
                                                 with the route name

Why: every event of one document hashes to one shard, and a shard has one
active consumer across all replicas, so two versions of a document are never
applied concurrently or out of order. Shard queues also dead-letter (at least
once) to the route's dead-letter queue when a message exceeds the delivery
limit (a consumer crashing on it again and again).

Without the plugin (a stock RabbitMQ: Debian's package, the official image
without ``enabled_plugins``) a route takes the *plain* layout: the same route
exchange name as a ``fanout`` exchange feeding only ``shard-0``, with the same
retry and dead-letter queues. Per-document order then rests on shard-0's
single active consumer; replicas stand by instead of sharing the load, and a
route configured with more shards runs with one (the consumer says so once at
start). Names never change between layouts, so ``orderbridge dlq replay``,
``orderbridge replay`` and the retry queues publish to the same exchange
either way. AMQP cannot ask an exchange's type: when the route exchange
already exists with the other type the broker refuses the declare (406, with
the current type in the text) and ``choose_layout`` keeps what exists when it
can work (see the README, "Without the consistent-hash plugin").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from services.consumers.config import Route
from shared.broker.topology import (
    CONSISTENT_HASH_PLUGIN,
    DEAD_LETTER_EXCHANGE,
    ENABLE_CONSISTENT_HASH,
    EVENTS_EXCHANGE,
    Binding,
    Exchange,
    Queue,
    Topology,
    quorum_queue,
)
from shared.errors import ConfigurationError

HASH_HEADER: Final = "document_id"
HASHED: Final = "x-consistent-hash"
PLAIN: Final = "fanout"
RouteExchangeType = Literal["x-consistent-hash", "fanout"]
README_SECTION: Final = 'README "Without the consistent-hash plugin"'


@dataclass(frozen=True)
class RouteLayout:
    """How a route runs on this broker: its exchange type and how many shard queues."""

    exchange_type: RouteExchangeType
    shards: int

    @property
    def hashed(self) -> bool:
        return self.exchange_type == HASHED


def choose_layout(
    route: Route, *, consistent_hash: bool, existing: str | None = None
) -> RouteLayout:
    """The layout for ``route``: hashed with its shards when the broker can, else plain.

    ``existing`` is the type the route exchange already has, when the broker
    refused to redeclare it with another (see ``existing_exchange_type``): a
    route keeps what exists when that works, so a restart never deletes
    bindings or strands messages. Raises ``ConfigurationError`` when nothing can.
    """
    if existing is None:
        if consistent_hash:
            return RouteLayout(HASHED, route.shards)
        return RouteLayout(PLAIN, 1)
    if existing == PLAIN:
        return RouteLayout(PLAIN, 1)
    if existing == HASHED and consistent_hash:
        return RouteLayout(HASHED, route.shards)
    exchange = route_exchange(route.name)
    if existing == HASHED:
        raise ConfigurationError(
            f"route {route.name}: {exchange} is a consistent-hash exchange but RabbitMQ no "
            f"longer has the plugin {CONSISTENT_HASH_PLUGIN}; enable it again "
            f"(`{ENABLE_CONSISTENT_HASH}`) or delete the exchange to run the route on one "
            f"shard ({README_SECTION})"
        )
    raise ConfigurationError(
        f"route {route.name}: {exchange} already exists as a {existing} exchange, which "
        f"orderbridge did not create; delete it (its route declares it again at start)"
    )


# A type whose plugin is off is quoted twice (''x-consistent-hash''): the broker no longer
# knows it as a type, only as a name.
_CURRENT_TYPE = re.compile(r"inequivalent arg 'type'.*current is '+([^']+)'")


def existing_exchange_type(refusal: str) -> str | None:
    """The exchange's current type from RabbitMQ's 406 text, None for another refusal.

    ``PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/':
    received 'fanout' but current is 'x-consistent-hash'``
    """
    found = _CURRENT_TYPE.search(refusal)
    return found.group(1) if found else None


def missing_plugin_warning(routes: Sequence[Route]) -> str:
    """The one line a consumer logs at start when the broker lacks the plugin."""
    fewer = [f"{route.name} ({route.shards})" for route in routes if route.shards > 1]
    text = (
        f"RabbitMQ has no consistent-hash exchange (plugin {CONSISTENT_HASH_PLUGIN} is "
        "off): every route runs on one shard queue fed by a fanout exchange, in order per "
        "document through its single active consumer (replicas stand by instead of "
        "sharing the load)"
    )
    if fewer:
        text += f"; configured with more shards, running with one: {', '.join(fewer)}"
    return (
        f"{text}. To shard by document: `{ENABLE_CONSISTENT_HASH}`, then "
        f"`orderbridge consumer --reshard` with the consumers stopped ({README_SECTION})"
    )


def mismatch_warning(route: Route, layout: RouteLayout) -> str:
    """The line a consumer logs when it keeps a plain route exchange the plugin could shard."""
    return (
        f"route {route.name}: {route_exchange(route.name)} was created without the "
        f"consistent-hash plugin (fanout); keeping it, on 1 shard instead of {route.shards}. "
        f"To shard by document: stop its consumers, then `orderbridge consumer --route "
        f"{route.name} --reshard` ({README_SECTION})"
    )


def route_exchange(route: str) -> str:
    return f"orderbridge.route.{route}"


def shard_queue(route: str, shard: int) -> str:
    return f"orderbridge.route.{route}.shard-{shard}"


def retry_queue(route: str, delay: float) -> str:
    return f"orderbridge.route.{route}.retry-{delay:g}s"


def dead_letter_queue(route: str) -> str:
    return f"orderbridge.route.{route}.dead-letter"


def route_topology(route: Route, layout: RouteLayout | None = None) -> Topology:
    """The route's objects; ``layout`` defaults to the hashed one with the route's shards."""
    layout = layout or RouteLayout(HASHED, route.shards)
    exchange = route_exchange(route.name)
    shards = tuple(
        quorum_queue(
            shard_queue(route.name, shard),
            delivery_limit=route.delivery_limit,
            dead_letter_exchange=DEAD_LETTER_EXCHANGE,
            dead_letter_routing_key=route.name,
            single_active_consumer=True,
            extra={"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"},
        )
        for shard in range(layout.shards)
    )
    retries = tuple(
        Queue(
            retry_queue(route.name, delay),
            arguments={
                "x-queue-type": "quorum",
                "x-message-ttl": int(delay * 1000),
                "x-dead-letter-exchange": exchange,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            },
        )
        for delay in route.retry_delays
    )
    dead = Queue(dead_letter_queue(route.name), arguments={"x-queue-type": "quorum"})
    return Topology(
        exchanges=(
            Exchange(exchange, type=HASHED, arguments={"hash-header": HASH_HEADER})
            if layout.hashed
            else Exchange(exchange, type=PLAIN),
        ),
        queues=(*shards, *retries, dead),
        bindings=(
            *(
                Binding(EVENTS_EXCHANGE, exchange, pattern, destination_type="exchange")
                for pattern in route.bindings
            ),
            # Consistent-hash bindings carry a weight as their routing key (fanout ignores it).
            *(Binding(exchange, queue.name, "1") for queue in shards),
            Binding(DEAD_LETTER_EXCHANGE, dead.name, route.name),
        ),
    )
