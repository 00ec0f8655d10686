"""Look into a route's dead-letter queue and replay what was fixed.

``list`` reads messages without removing them (they return to the queue when
the channel closes). ``replay`` republishes each chosen message, with its
original routing key, body and identity headers, to the *route's* exchange
(so only this route sees it again; the archive keeps the original history),
waits for the broker's confirm, and only then removes it from the
dead-letter queue. The route's policy still applies: a replayed event that was
meanwhile applied is a counted duplicate, never a second effect.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.consumers import policy
from services.consumers.topology import dead_letter_queue, route_exchange
from shared.broker.envelope import Envelope
from shared.broker.publisher import RabbitPublisher
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


async def count(connection: AbstractRobustConnection, route: str) -> int:
    channel = await connection.channel()
    try:
        queue = await channel.declare_queue(dead_letter_queue(route), passive=True)
        return queue.declaration_result.message_count or 0
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
