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
"""

from __future__ import annotations

from typing import Final

from services.consumers.config import Route
from shared.broker.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    Binding,
    Exchange,
    Queue,
    Topology,
    quorum_queue,
)

HASH_HEADER: Final = "document_id"


def route_exchange(route: str) -> str:
    return f"orderbridge.route.{route}"


def shard_queue(route: str, shard: int) -> str:
    return f"orderbridge.route.{route}.shard-{shard}"


def retry_queue(route: str, delay: float) -> str:
    return f"orderbridge.route.{route}.retry-{delay:g}s"


def dead_letter_queue(route: str) -> str:
    return f"orderbridge.route.{route}.dead-letter"


def route_topology(route: Route) -> Topology:
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
        for shard in range(route.shards)
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
            Exchange(exchange, type="x-consistent-hash", arguments={"hash-header": HASH_HEADER}),
        ),
        queues=(*shards, *retries, dead),
        bindings=(
            *(
                Binding(EVENTS_EXCHANGE, exchange, pattern, destination_type="exchange")
                for pattern in route.bindings
            ),
            # Consistent-hash bindings carry a weight as their routing key.
            *(Binding(exchange, queue.name, "1") for queue in shards),
            Binding(DEAD_LETTER_EXCHANGE, dead.name, route.name),
        ),
    )
