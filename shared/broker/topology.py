"""RabbitMQ topology as data: what exists, declared idempotently by ``declare.py``.

Pure module (no aio-pika import), so tests and ``deploy/rabbitmq/definitions.json``
read the same values the services declare.

* ``orderbridge.events`` (topic, durable): every accepted event, routing key
  ``<source>.<kind>.<process_status>.<logistics_status>``.
* ``orderbridge.archive`` (stream queue bound with ``#``): every event in
  publish order, kept by age and size, so no event is ever unroutable and a new
  consumer can start from history (an offset or a timestamp) instead of "now".
* ``orderbridge.dead-letter`` (topic, durable): where consumer routes put what
  they cannot process, with the reason in headers.
* ``orderbridge.invalid`` (quorum queue bound to the dead-letter exchange with
  ``invalid.#``): polled or fetched documents the normalizer refused, kept raw
  with the reason, so a poller can move past them without losing them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

EVENTS_EXCHANGE: Final = "orderbridge.events"
DEAD_LETTER_EXCHANGE: Final = "orderbridge.dead-letter"
ARCHIVE_QUEUE: Final = "orderbridge.archive"
INVALID_QUEUE: Final = "orderbridge.invalid"
INVALID_PREFIX: Final = "invalid"
DEFAULT_ARCHIVE_MAX_AGE: Final = "7D"
DEFAULT_ARCHIVE_MAX_BYTES: Final = 5_000_000_000
ARCHIVE_SEGMENT_BYTES: Final = 100_000_000  # retention drops whole segments; keep them small

CONSISTENT_HASH_PLUGIN: Final = "rabbitmq_consistent_hash_exchange"
"""Bundled with RabbitMQ, off by default; consumer routes shard with it when it is on."""
ENABLE_CONSISTENT_HASH: Final = f"rabbitmq-plugins enable {CONSISTENT_HASH_PLUGIN}"

UNKNOWN: Final = "unknown"
_NOT_A_WORD = re.compile(r"[^A-Za-z0-9_-]+")

ExchangeType = Literal["topic", "direct", "fanout", "headers", "x-consistent-hash"]
Arguments = Mapping[str, Any]


@dataclass(frozen=True)
class Exchange:
    name: str
    type: ExchangeType = "topic"
    durable: bool = True
    internal: bool = False
    arguments: Arguments = field(default_factory=dict)


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: Arguments = field(default_factory=dict)
    durable: bool = True


@dataclass(frozen=True)
class Binding:
    source: str
    destination: str
    routing_key: str
    destination_type: Literal["queue", "exchange"] = "queue"
    arguments: Arguments = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    exchanges: tuple[Exchange, ...] = ()
    queues: tuple[Queue, ...] = ()
    bindings: tuple[Binding, ...] = ()

    def __add__(self, other: Topology) -> Topology:
        return Topology(
            self.exchanges + other.exchanges,
            self.queues + other.queues,
            self.bindings + other.bindings,
        )


def core_topology(
    *,
    archive_max_age: str = DEFAULT_ARCHIVE_MAX_AGE,
    archive_max_bytes: int = DEFAULT_ARCHIVE_MAX_BYTES,
) -> Topology:
    """The exchanges every service relies on, plus the archive stream."""
    archive = Queue(
        ARCHIVE_QUEUE,
        arguments={
            "x-queue-type": "stream",
            "x-max-age": archive_max_age,
            "x-max-length-bytes": archive_max_bytes,
            "x-stream-max-segment-size-bytes": ARCHIVE_SEGMENT_BYTES,
        },
    )
    invalid = Queue(INVALID_QUEUE, arguments={"x-queue-type": "quorum"})
    return Topology(
        exchanges=(Exchange(EVENTS_EXCHANGE), Exchange(DEAD_LETTER_EXCHANGE)),
        queues=(archive, invalid),
        bindings=(
            Binding(EVENTS_EXCHANGE, ARCHIVE_QUEUE, "#"),
            Binding(DEAD_LETTER_EXCHANGE, INVALID_QUEUE, f"{INVALID_PREFIX}.#"),
        ),
    )


def quorum_queue(
    name: str,
    *,
    delivery_limit: int = 5,
    dead_letter_exchange: str | None = None,
    dead_letter_routing_key: str | None = None,
    single_active_consumer: bool = False,
    extra: Arguments | None = None,
) -> Queue:
    """A quorum queue with an explicit delivery limit (the poison-message guard)."""
    arguments: dict[str, Any] = {"x-queue-type": "quorum", "x-delivery-limit": delivery_limit}
    if dead_letter_exchange is not None:
        arguments["x-dead-letter-exchange"] = dead_letter_exchange
    if dead_letter_routing_key is not None:
        arguments["x-dead-letter-routing-key"] = dead_letter_routing_key
    if single_active_consumer:
        arguments["x-single-active-consumer"] = True
    arguments.update(extra or {})
    return Queue(name, arguments=arguments)


def routing_word(value: str | None) -> str:
    """One topic word: never empty, never containing '.', '*', '#' or spaces."""
    if not value:
        return UNKNOWN
    return _NOT_A_WORD.sub("_", value)


def routing_key(
    source: str, kind: str, process_status: str | None, logistics_status: str | None
) -> str:
    """``<source>.<kind>.<process_status>.<logistics_status>``, ``unknown`` for a missing status."""
    return ".".join((source, kind, routing_word(process_status), routing_word(logistics_status)))


def to_definitions(topology: Topology, *, vhost: str = "/") -> dict[str, Any]:
    """The topology in RabbitMQ's definitions format (``rabbitmqctl import_definitions``)."""
    return {
        "vhosts": [{"name": vhost}],
        "exchanges": [
            {
                "name": e.name,
                "vhost": vhost,
                "type": e.type,
                "durable": e.durable,
                "auto_delete": False,
                "internal": e.internal,
                "arguments": dict(e.arguments),
            }
            for e in topology.exchanges
        ],
        "queues": [
            {
                "name": q.name,
                "vhost": vhost,
                "durable": q.durable,
                "auto_delete": False,
                "arguments": dict(q.arguments),
            }
            for q in topology.queues
        ],
        "bindings": [
            {
                "source": b.source,
                "vhost": vhost,
                "destination": b.destination,
                "destination_type": b.destination_type,
                "routing_key": b.routing_key,
                "arguments": dict(b.arguments),
            }
            for b in topology.bindings
        ],
    }
