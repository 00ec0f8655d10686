"""Durable state (cursors, tokens, leases, processed keys, document versions).

``open_state_store(url)`` picks the backend from ``ORDERBRIDGE_STATE_URL``
(``StateSettings``): ``sqlite:///path`` (embedded default), ``postgresql://…``
(also ``postgres://``) or ``memory://``. Backends are imported only when
chosen, so a service that uses SQLite never loads asyncpg.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from shared.errors import ConfigurationError, StateUnavailable
from shared.settings import redact_url
from shared.startup import wait_until_up
from shared.state.port import AppliedDocument, Lookup, StateStore, Tokens

__all__ = ["AppliedDocument", "Lookup", "StateStore", "Tokens", "open_state_store"]


async def open_state_store(url: str, *, wait_seconds: float = 0.0) -> StateStore:
    """Open (and create/migrate) the store named by ``url``.

    With ``wait_seconds`` > 0 an unreachable database is retried for that long
    (services starting beside PostgreSQL, with a countdown on a terminal);
    afterwards ``StateUnavailable``. A malformed URL or an unwritable SQLite
    path raises ``ConfigurationError``, refused credentials ``AccessRefused``,
    at once. Every message names ``ORDERBRIDGE_STATE_URL``, its password masked.
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
            f"unsupported {STATE_URL} scheme {scheme!r}: "
            "use sqlite:///path, postgresql://... or memory://"
        )
    where = f"{redact_url(url)} ({STATE_URL})"

    async def attempt() -> StateStore:
        try:
            return await opener(url)
        except ConfigurationError as exc:  # the same class (AccessRefused stays NOPERM)
            raise type(exc)(f"{STATE_URL} {redact_url(url)}: {exc}") from None

    return await wait_until_up(
        attempt,
        what=f"the state store at {where}",
        wait_seconds=wait_seconds,
        variable=STATE_URL,
        unavailable=StateUnavailable,
    )


STATE_URL = "ORDERBRIDGE_STATE_URL"
