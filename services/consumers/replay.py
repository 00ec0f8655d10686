"""Re-publish archived events to one route (``orderbridge replay``; I/O).

The archive stream (``orderbridge.archive``) holds every event as it was
published. A replay reads a window of it and publishes the events the route
would have taken (``selection``) to the route's exchange
``orderbridge.route.<name>``, *not* to ``orderbridge.events``: no other route
sees them again. Each copy has the original body, routing key, message id and
headers (``document_id`` among them: the route exchange shards on it) plus
``x-orderbridge-replayed``, so the route treats it as the event itself arriving
again; its ledger decides per part, and what the ERP already has is a counted
duplicate. That is why a replay is safe to repeat.

The window: from ``--from`` to ``--until`` or, without it, to the stream's end
*when the replay started* (events published meanwhile are left for the route's
own queues). AMQP 0-9-1 has no "stream length", so the end is found by
attaching at ``last`` (the newest chunk) and taking the highest offset
delivered; a time bound becomes the offset just before the first chunk at or
after that time. Times are the broker's (the chunk's write time), to the
second (AMQP timestamps).

A message counts as published only once the broker confirmed it
(``RabbitPublisher.send_many``, mandatory: a route exchange without queues is an
error, not a silent drop).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed

from services.consumers import policy
from services.consumers.config import Route
from services.consumers.selection import Position, Verdict, by_routing_key, select
from services.consumers.topology import route_exchange
from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
from shared.broker.topology import ARCHIVE_QUEUE
from shared.errors import PermanentError
from shared.schema.codec import decode_event
from shared.settings import BrokerSettings

OFFSET_HEADER: Final = "x-stream-offset"
SKIPS: Final[dict[str, str]] = {
    "unbound": "not bound to the route",
    "outside_pattern": "outside --routing-key",
    "filtered": "refused by the route's filter",
    "undecodable": "not a canonical event",
}


class RouteNotDeclared(PermanentError):
    """The route's exchange does not exist on this broker (its consumer never ran here)."""


@dataclass
class ReplayResult:
    route: str
    dry_run: bool
    read: int = 0
    matched: int = 0
    published: int = 0
    end: int | None = None
    """The stream's last offset in the window (None: the archive was empty)."""
    first: int | None = None
    last: int | None = None
    skipped: Counter[str] = field(default_factory=Counter)
    by_routing_key: Counter[str] = field(default_factory=Counter)
    """Matched events per routing key (what would go where)."""

    @property
    def exchange(self) -> str:
        return route_exchange(self.route)

    def summary(self) -> str:
        """The one line a replay ends with."""
        head = f"replay {self.route}{' (dry run)' if self.dry_run else ''}: "
        published = (
            f"would publish {self.matched}" if self.dry_run else f"published {self.published}"
        )
        counts = f"read {self.read}, matched {self.matched}, {published} to {self.exchange}"
        window = (
            f"offsets {self.first}-{self.last}" if self.first is not None else "nothing in window"
        )
        skips = ", ".join(f"{n} {SKIPS[why]}" for why, n in sorted(self.skipped.items()))
        return head + counts + f" ({window}" + (f"; skipped {skips}" if skips else "") + ")"

    def as_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "exchange": self.exchange,
            "dry_run": self.dry_run,
            "read": self.read,
            "matched": self.matched,
            "published": self.published,
            "first_offset": self.first,
            "last_offset": self.last,
            "end_offset": self.end,
            "skipped": dict(sorted(self.skipped.items())),
            "by_routing_key": dict(sorted(self.by_routing_key.items())),
        }


Progress = Callable[[ReplayResult], None]


async def replay(
    connection: AbstractRobustConnection,
    broker: BrokerSettings,
    route: Route,
    *,
    start: Position,
    until: Position | None = None,
    pattern: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
    batch: int = 256,
    idle_seconds: float = 5.0,
) -> ReplayResult:
    """Replay the archive's window ``start``..``until`` (or its end now) to ``route``."""
    result = ReplayResult(route.name, dry_run)
    await require_route_exchange(connection, route.name)
    result.end = await window_end(connection, until)
    if result.end is None:
        return result
    publisher = (
        None
        if dry_run
        else await RabbitPublisher.open(connection, broker, exchange=route_exchange(route.name))
    )
    channel = await connection.channel()
    inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()
    pending: list[Envelope] = []
    try:
        await channel.set_qos(prefetch_count=batch * 2)
        archive = await channel.get_queue(ARCHIVE_QUEUE, ensure=False)
        await archive.consume(inbox.put, arguments={OFFSET_HEADER: start})
        while True:
            try:
                message = await asyncio.wait_for(inbox.get(), idle_seconds)
            except TimeoutError:
                break  # nothing more to read at or after ``start``
            offset = _offset(message)
            await message.ack()  # a stream keeps it; the ack only grants credit
            if offset > result.end:
                break
            verdict = _consider(message, route, pattern)
            result.read += 1
            result.first = offset if result.first is None else result.first
            result.last = offset
            if verdict == "match":
                result.matched += 1
                result.by_routing_key[message.routing_key or ""] += 1
                if publisher is not None:
                    pending.append(_replayable(message))
            else:
                result.skipped[verdict] += 1
            if publisher is not None and len(pending) >= batch:
                await publisher.send_many(pending)
                result.published += len(pending)
                pending.clear()
            if progress is not None:
                progress(result)
            if offset >= result.end:
                break
        if publisher is not None and pending:
            await publisher.send_many(pending)
            result.published += len(pending)
            pending.clear()
        if progress is not None:
            progress(result)
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
        if publisher is not None:
            await publisher.close()
    return result


def _offset(message: AbstractIncomingMessage) -> int:
    return policy.as_int((message.headers or {}).get(OFFSET_HEADER))


def _consider(message: AbstractIncomingMessage, route: Route, pattern: str | None) -> str:
    routing_key = message.routing_key or ""
    verdict: Verdict = by_routing_key(routing_key, route, pattern)
    if verdict != "match":
        return verdict
    try:
        event = decode_event(message.body)
    except Exception:  # an archive written by a release this one cannot read
        return "undecodable"
    return select(event, routing_key, route, pattern)


def _replayable(message: AbstractIncomingMessage) -> Envelope:
    headers = {
        key: value
        for key, value in (message.headers or {}).items()
        if not key.startswith("x-stream-")
    }
    headers[policy.REPLAYED] = True
    return Envelope(
        body=message.body,
        routing_key=message.routing_key or "",
        message_id=message.message_id or "",
        headers=headers,
        timestamp=message.timestamp,
        type=message.type,
    )


async def require_route_exchange(connection: AbstractRobustConnection, route: str) -> None:
    channel = await connection.channel()
    try:
        await channel.declare_exchange(route_exchange(route), passive=True)
    except ChannelClosed:
        raise RouteNotDeclared(
            f"route {route!r} has no exchange {route_exchange(route)!r} on this broker: "
            f"run `orderbridge consumer --route {route}` once, it declares the route"
        ) from None
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def window_end(connection: AbstractRobustConnection, until: Position | None) -> int | None:
    """The last offset to read: the stream's end now, or before ``until`` when earlier."""
    tail = await _peek(connection, "last", settle=0.3)
    if tail is None:
        return None
    if until is None:
        return tail
    if isinstance(until, int):
        return min(tail, until)
    if isinstance(until, datetime):
        first_after = await _peek(connection, until, settle=0.0)
        return tail if first_after is None else min(tail, first_after - 1)
    return tail


async def _peek(
    connection: AbstractRobustConnection,
    position: Position | str,
    *,
    settle: float,
    wait: float = 1.5,
    cap: float = 3.0,
) -> int | None:
    """The highest offset delivered when attaching at ``position`` (None: nothing there).

    Waits ``wait`` for a first delivery, then until ``settle`` passes without one
    (the rest of that chunk), ``cap`` at most: a busy stream never falls quiet.
    """
    channel = await connection.channel()
    seen: list[int] = []
    arrived = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        seen.append(_offset(message))
        arrived.set()
        await message.ack()

    try:
        await channel.set_qos(prefetch_count=1000)
        archive = await channel.get_queue(ARCHIVE_QUEUE, ensure=False)
        await archive.consume(on_message, arguments={OFFSET_HEADER: position})
        try:
            await asyncio.wait_for(arrived.wait(), wait)
        except TimeoutError:
            return None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cap
        count = -1
        while settle > 0 and count != len(seen) and loop.time() < deadline:
            count = len(seen)
            await asyncio.sleep(settle)
        return max(seen) if settle > 0 else seen[0]
    finally:
        with contextlib.suppress(Exception):
            await channel.close()
