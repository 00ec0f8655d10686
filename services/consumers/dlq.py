"""Look into a route's dead-letter queue (or the ``orderbridge.invalid`` quarantine)
and replay what was fixed.

``list`` and ``show`` read messages without removing them (they return to the
queue when the channel closes); ``purge`` empties the queue. ``replay``
republishes each chosen message, with its original routing key, body and
identity headers, to the *route's* exchange (so only this route sees it
again; the archive keeps the original history), waits for the broker's
confirm, and only then removes it from the dead-letter queue. The route's
policy still applies: a replayed event that was meanwhile applied is a counted
duplicate, never a second effect.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed

from services.consumers import policy
from services.consumers.topology import dead_letter_queue, route_exchange
from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
from shared.errors import InvalidPayload
from shared.schema.codec import loads_exact
from shared.settings import BrokerSettings


@dataclass(frozen=True)
class DeadLetter:
    message_id: str
    reason: str
    error: str
    attempts: int
    routing_key: str
    document_id: str
    dead_lettered_at: str

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> DeadLetter:
        headers: dict[str, Any] = dict(message.headers or {})
        reason = str(headers.get(policy.REASON) or "")
        if not reason:  # dead-lettered by the broker itself (delivery limit)
            deaths = headers.get("x-death") or []
            first = deaths[0] if isinstance(deaths, list) and deaths else {}
            reason = str(first.get("reason", "broker")) if isinstance(first, dict) else "broker"
        return cls(
            message_id=message.message_id or "",
            reason=reason,
            error=str(headers.get(policy.ERROR) or ""),
            attempts=policy.as_int(headers.get(policy.ATTEMPTS) or headers.get("x-delivery-count")),
            routing_key=str(headers.get(policy.ROUTING_KEY) or message.routing_key or ""),
            document_id=str(headers.get("document_id") or ""),
            dead_lettered_at=str(headers.get(policy.DEAD_AT) or ""),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "document_id": self.document_id,
            "routing_key": self.routing_key,
            "reason": self.reason,
            "attempts": self.attempts,
            "error": self.error,
            "dead_lettered_at": self.dead_lettered_at,
        }


@dataclass(frozen=True)
class Stored:
    """A message as it sits in a queue: what ``show`` prints."""

    message_id: str
    routing_key: str
    headers: dict[str, Any]
    body: bytes
    timestamp: datetime | None
    type: str | None

    @classmethod
    def of(cls, message: AbstractIncomingMessage) -> Stored:
        return cls(
            message_id=message.message_id or "",
            routing_key=message.routing_key or "",
            headers=dict(message.headers or {}),
            body=message.body,
            timestamp=message.timestamp,
            type=message.type,
        )

    def as_json(self) -> dict[str, Any]:
        """JSON-able, exactly: a JSON body as JSON (decimals as written), else text or base64."""
        body: Any
        try:
            body, encoding = loads_exact(self.body), "json"
        except InvalidPayload:
            try:
                body, encoding = self.body.decode(), "utf-8"
            except UnicodeDecodeError:
                body, encoding = base64.b64encode(self.body).decode(), "base64"
        return {
            "message_id": self.message_id,
            "routing_key": self.routing_key,
            "timestamp": self.timestamp.isoformat() if self.timestamp else None,
            "type": self.type,
            "headers": jsonable(self.headers),
            "body_encoding": encoding,
            "body": body,
        }


def jsonable(value: Any) -> Any:
    """AMQP header values as JSON: bytes as text, times in ISO 8601, tables and arrays walked."""
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(errors="replace")
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool | Decimal):
        return value
    return str(value)


def dumps(value: Any, *, pretty: bool = False) -> bytes:
    """JSON for the command line: decimals as their exact literals."""
    return orjson.dumps(
        value,
        default=_exact,
        option=orjson.OPT_INDENT_2 if pretty else 0,
    )


def _exact(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value).encode())
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


async def queue_count(connection: AbstractRobustConnection, queue: str) -> int | None:
    """Messages ready in ``queue``; None when the broker has no such queue."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    except ChannelClosed:  # 404: a failed passive declare closes the channel
        return None
    finally:
        with contextlib.suppress(Exception):
            await channel.close()


async def count(connection: AbstractRobustConnection, route: str) -> int:
    return await queue_count(connection, dead_letter_queue(route)) or 0


async def read(
    connection: AbstractRobustConnection,
    queue: str,
    *,
    ids: Collection[str] | None = None,
    limit: int | None = None,
) -> list[Stored]:
    """Messages of ``queue`` (those with ``ids`` when given), leaving every one in place.

    A queue the broker does not have holds nothing.
    """
    channel = await connection.channel()
    try:
        try:
            source = await channel.get_queue(queue)
        except ChannelClosed:
            return []
        found: list[Stored] = []
        while limit is None or len(found) < limit:
            message = await source.get(no_ack=False, fail=False)
            if message is None:
                break
            if ids is None or (message.message_id or "") in ids:
                found.append(Stored.of(message))
        return found
    finally:
        await channel.close()  # nothing was acked: every message stays


async def purge(connection: AbstractRobustConnection, queue: str) -> int:
    """Empty ``queue``; returns how many messages it dropped."""
    channel = await connection.channel()
    try:
        source = await channel.get_queue(queue)
        purged = await source.purge()
        return purged.message_count or 0
    finally:
        await channel.close()


async def list_dead_letters(
    connection: AbstractRobustConnection, route: str, *, limit: int = 100
) -> list[DeadLetter]:
    channel = await connection.channel()
    try:
        queue = await channel.get_queue(dead_letter_queue(route))
        found: list[DeadLetter] = []
        while len(found) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            found.append(DeadLetter.of(message))
        return found
    finally:
        await channel.close()  # nothing was acked: every message stays


async def replay(
    connection: AbstractRobustConnection,
    broker: BrokerSettings,
    route: str,
    *,
    ids: Collection[str] | None = None,
    progress: Callable[[DeadLetter, bool], None] | None = None,
) -> int:
    """Replay the dead letters with ``ids`` (all when None); returns how many."""
    publisher = await RabbitPublisher.open(connection, broker, exchange=route_exchange(route))
    channel = await connection.channel()
    replayed = 0
    try:
        queue = await channel.get_queue(dead_letter_queue(route))
        while True:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            letter = DeadLetter.of(message)
            chosen = ids is None or letter.message_id in ids
            if chosen:
                await publisher.send(_replayable(message, letter))
                await message.ack()
                replayed += 1
            if progress is not None:
                progress(letter, chosen)
    finally:
        await channel.close()  # messages not chosen go back to the dead-letter queue
        await publisher.close()
    return replayed


def _replayable(message: AbstractIncomingMessage, letter: DeadLetter) -> Envelope:
    headers = policy.replay_headers(message.headers)
    return Envelope(
        body=message.body,
        routing_key=letter.routing_key,
        message_id=message.message_id or "",
        headers=headers,
        timestamp=message.timestamp,
        type=message.type,
    )
