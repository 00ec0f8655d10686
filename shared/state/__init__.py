"""Durable state (cursors, tokens, leases, processed keys, document versions).

``open_state_store(url)`` picks the backend from ``ORDERBRIDGE_STATE_URL``
(``StateSettings``): ``sqlite:///path`` (embedded default), ``postgresql://…``
(also ``postgres://``) or ``memory://``. Backends are imported only when
chosen, so a service that uses SQLite never loads asyncpg.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from shared.errors import ConfigurationError, StateUnavailable
from shared.logging import get_logger
from shared.settings import redact_url
from shared.state.port import AppliedDocument, Lookup, StateStore, Tokens

__all__ = ["AppliedDocument", "Lookup", "StateStore", "Tokens", "open_state_store"]

log = get_logger(__name__)


async def open_state_store(url: str, *, wait_seconds: float = 0.0) -> StateStore:
    """Open (and create/migrate) the store named by ``url``.

    With ``wait_seconds`` > 0 an unreachable database is retried for that long
    (services starting beside PostgreSQL); afterwards ``StateUnavailable``.
    A malformed URL raises ``ConfigurationError`` at once.
    """
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "memory":
        from shared.state.memory import MemoryStateStore

        return MemoryStateStore()
    opener: Callable[[str], Awaitable[StateStore]]
    if scheme == "sqlite":
        from shared.state.sqlite import SqliteStateStore

        opener = SqliteStateStore.open
    elif scheme in ("postgresql", "postgres"):
        from shared.state.postgres import PostgresStateStore

        opener = PostgresStateStore.open
    else:
        raise ConfigurationError(
            f"unsupported ORDERBRIDGE_STATE_URL scheme {scheme!r}: "
            "use sqlite:///path, postgresql://... or memory://"
        )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    delay = 0.2
    while True:
        try:
            return await opener(url)
        except StateUnavailable as exc:
            if loop.time() + delay > deadline:
                raise
            log.warning("state store not reachable yet", url=redact_url(url), error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
