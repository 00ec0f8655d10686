"""The replicated state store: PostgreSQL over an asyncpg pool.

``ORDERBRIDGE_STATE_URL=postgresql://user:password@host:5432/dbname`` (``postgres://``
works too; libpq query options such as ``sslmode`` pass through to asyncpg).

Why it is correct with several replicas on several hosts:

* processed keys are inserted with ``ON CONFLICT DO NOTHING`` on the primary
  key, sorted, in one statement: of two transactions recording the same key,
  the second waits for the first and then inserts nothing (and so rolls its
  whole ``record_applied`` back); sorted keys mean two transactions never wait
  on each other in opposite orders;
* the document's version rises with ``GREATEST`` (which ignores NULL) and each
  line stamp only moves forward (``ON CONFLICT … DO UPDATE … WHERE old < new``)
  in a child table: a per-line row is updated in place, compares as a
  ``timestamptz``, and never needs a read-modify-write of a JSON blob;
* leases compare against the database clock (``now()``), so hosts whose clocks
  disagree still agree on who holds a lease;
* migrations run under a transaction-scoped advisory lock, so replicas starting
  together apply each migration once.

The ``*_in(conn, …)`` functions take any asyncpg connection, so the ERP's
PostgreSQL adapter can record an event's keys inside the same transaction as
its staging rows (exactly-once across crashes): call ``migrate(conn)`` once,
then ``record_applied_in(conn, …)`` inside your transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from shared.errors import ConfigurationError, StateUnavailable
from shared.logging import get_logger
from shared.settings import redact_url
from shared.state.migrations import Migration, pending
from shared.state.port import AppliedDocument, Lookup, Tokens, check_applied, check_ttl

log = get_logger(__name__)

Connection: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
"""A bare connection or one acquired from a pool."""

# pg_advisory_xact_lock key of the migrations ("orderbri" in ASCII).
MIGRATION_LOCK = 0x6F72646572627269

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cursors, tokens, leases, processed keys, document versions and line stamps",
        (
            """CREATE TABLE orderbridge_cursors (
                stream text PRIMARY KEY,
                value text NOT NULL,
                updated_at timestamptz NOT NULL DEFAULT now())""",
            # expires_at: ISO text, exactly as the token's datetime was given.
            """CREATE TABLE orderbridge_tokens (
                platform text PRIMARY KEY,
                access_token text NOT NULL,
                refresh_token text,
                expires_at text,
                updated_at timestamptz NOT NULL DEFAULT now())""",
            """CREATE TABLE orderbridge_leases (
                name text PRIMARY KEY,
                holder text NOT NULL,
                expires_at timestamptz NOT NULL)""",
            """CREATE TABLE orderbridge_processed (
                route text NOT NULL,
                key text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (route, key))""",
            """CREATE TABLE orderbridge_documents (
                route text NOT NULL,
                document text NOT NULL,
                version bigint,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (route, document))""",
            """CREATE TABLE orderbridge_document_lines (
                route text NOT NULL,
                document text NOT NULL,
                line text NOT NULL,
                stamp timestamptz NOT NULL,
                PRIMARY KEY (route, document, line))""",
        ),
    ),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS orderbridge_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""

_INSERT_KEYS = """
INSERT INTO orderbridge_processed (route, key)
SELECT $1, k FROM unnest($2::text[]) AS k ORDER BY k
ON CONFLICT DO NOTHING"""

_UPSERT_DOCUMENT = """
INSERT INTO orderbridge_documents (route, document, version) VALUES ($1, $2, $3)
ON CONFLICT (route, document) DO UPDATE
SET version = GREATEST(orderbridge_documents.version, excluded.version), updated_at = now()"""

_UPSERT_LINES = """
INSERT INTO orderbridge_document_lines (route, document, line, stamp)
SELECT $1, $2, l.line, l.stamp FROM unnest($3::text[], $4::timestamptz[]) AS l (line, stamp)
ORDER BY l.line
ON CONFLICT (route, document, line) DO UPDATE
SET stamp = excluded.stamp WHERE orderbridge_document_lines.stamp < excluded.stamp"""

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TransactionRollbackError,  # class 40: deadlock, serialization
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
)
_MISCONFIGURED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # class 28: role, password
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.exceptions.InsufficientPrivilegeError,
)


class _Duplicate(Exception):
    """Raised inside a transaction to roll it back: a key was already recorded."""


# -- building blocks on one connection -------------------------------------------------------


async def migrate(conn: Connection) -> None:
    """Create or upgrade the schema; safe to run from many replicas at once."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute(_LEDGER)
        rows = await conn.fetch("SELECT version FROM orderbridge_schema_migrations")
        for migration in pending({row[0] for row in rows}, MIGRATIONS, where="PostgreSQL"):
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO orderbridge_schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            log.info("state store migrated", backend="postgres", version=migration.version)


async def record_applied_in(
    conn: Connection,
    route: str,
    keys: Sequence[str],
    document: str,
    version: int | None,
    lines: Mapping[str, datetime],
) -> bool:
    """``StateStore.record_applied`` on ``conn``: its own transaction, or a savepoint in yours.

    On False nothing was written and your transaction is still usable.
    """
    stamps = check_applied(keys, lines)
    unique = sorted(set(keys))
    names = sorted(stamps)
    try:
        async with conn.transaction():
            status = await conn.execute(_INSERT_KEYS, route, unique)
            if _row_count(status) != len(unique):
                raise _Duplicate
            await conn.execute(_UPSERT_DOCUMENT, route, document, version)
            if names:
                await conn.execute(
                    _UPSERT_LINES, route, document, names, [stamps[name] for name in names]
                )
    except _Duplicate:
        return False
    return True


async def is_processed_in(conn: Connection, route: str, keys: Sequence[str]) -> bool:
    found = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM orderbridge_processed
                          WHERE route = $1 AND key = ANY($2::text[]))""",
        route,
        list(keys),
    )
    return bool(found)


async def applied_document_in(
    conn: Connection, route: str, document: str
) -> AppliedDocument | None:
    # One statement, one snapshot: a concurrent record_applied is seen whole or not at all.
    rows = await conn.fetch(
        """SELECT d.version, l.line, l.stamp
           FROM orderbridge_documents AS d
           LEFT JOIN orderbridge_document_lines AS l USING (route, document)
           WHERE d.route = $1 AND d.document = $2""",
        route,
        document,
    )
    if not rows:
        return None
    return AppliedDocument(
        version=rows[0]["version"],
        lines={row["line"]: row["stamp"] for row in rows if row["line"] is not None},
    )


async def lookup_in(
    conn: Connection, route: str, lookups: Sequence[Lookup]
) -> list[tuple[bool, AppliedDocument | None]]:
    """``StateStore.lookup`` on ``conn``."""
    results: list[tuple[bool, AppliedDocument | None]] = []
    for item in lookups:
        processed = bool(item.keys) and await is_processed_in(conn, route, item.keys)
        results.append(
            (
                processed,
                None if processed else await applied_document_in(conn, route, item.document),
            )
        )
    return results


def _row_count(status: str) -> int:
    """``INSERT 0 2`` → 2."""
    return int(status.rsplit(" ", 1)[-1])


# -- the store --------------------------------------------------------------------------------


class PostgresStateStore:
    """The ``StateStore`` port over an asyncpg pool (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool[Any], *, url: str) -> None:
        self._pool = pool
        self._where = redact_url(url)
        self._failure: str | None = None

    @classmethod
    async def open(
        cls, url: str, *, min_size: int = 1, max_size: int = 10, command_timeout: float = 30.0
    ) -> PostgresStateStore:
        """Connect a pool and migrate; ``StateUnavailable`` while the server is unreachable."""
        where = redact_url(url)
        with _translate(f"cannot open the PostgreSQL state store at {where}"):
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                command_timeout=command_timeout,
                timeout=10,
            )
        try:
            with _translate(f"cannot migrate the PostgreSQL state store at {where}"):
                async with pool.acquire() as conn:
                    await migrate(conn)
        except BaseException:
            await pool.close()
            raise
        return cls(pool, url=url)

    # -- cursors ---------------------------------------------------------------------------

    async def get_cursor(self, stream: str) -> str | None:
        with self._guard():
            value = await self._pool.fetchval(
                "SELECT value FROM orderbridge_cursors WHERE stream = $1", stream
            )
        return None if value is None else str(value)

    async def set_cursor(self, stream: str, value: str) -> None:
        with self._guard():
            await self._pool.execute(
                """INSERT INTO orderbridge_cursors (stream, value) VALUES ($1, $2)
                   ON CONFLICT (stream) DO UPDATE SET value = excluded.value, updated_at = now()""",
                stream,
                value,
            )

    # -- tokens ----------------------------------------------------------------------------

    async def load_tokens(self, platform: str) -> Tokens | None:
        with self._guard():
            row = await self._pool.fetchrow(
                """SELECT access_token, refresh_token, expires_at
                   FROM orderbridge_tokens WHERE platform = $1""",
                platform,
            )
        if row is None:
            return None
        expires = row["expires_at"]
        return Tokens(
            access_token=row["access_token"],
            refresh_token=row["refresh_token"],
            expires_at=None if expires is None else datetime.fromisoformat(expires),
        )

    async def save_tokens(self, platform: str, tokens: Tokens) -> None:
        expires = None if tokens.expires_at is None else tokens.expires_at.isoformat()
        with self._guard():
            await self._pool.execute(
                """INSERT INTO orderbridge_tokens
                       (platform, access_token, refresh_token, expires_at)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (platform) DO UPDATE
                   SET access_token = excluded.access_token,
                       refresh_token = excluded.refresh_token,
                       expires_at = excluded.expires_at,
                       updated_at = now()""",
                platform,
                tokens.access_token,
                tokens.refresh_token,
                expires,
            )

    # -- leases ----------------------------------------------------------------------------

    async def try_acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        with self._guard():
            # One statement: the upsert's WHERE is decided on the locked row.
            granted = await self._pool.fetchval(
                """INSERT INTO orderbridge_leases (name, holder, expires_at)
                   VALUES ($1, $2, now() + make_interval(secs => $3))
                   ON CONFLICT (name) DO UPDATE
                   SET holder = excluded.holder, expires_at = excluded.expires_at
                   WHERE orderbridge_leases.holder = excluded.holder
                      OR orderbridge_leases.expires_at <= now()
                   RETURNING holder""",
                name,
                holder,
                float(ttl_seconds),
            )
        return granted is not None

    async def release_lease(self, name: str, holder: str) -> None:
        with self._guard():
            await self._pool.execute(
                "DELETE FROM orderbridge_leases WHERE name = $1 AND holder = $2", name, holder
            )

    async def lease_holder(self, name: str) -> str | None:
        with self._guard():
            holder = await self._pool.fetchval(
                "SELECT holder FROM orderbridge_leases WHERE name = $1 AND expires_at > now()",
                name,
            )
        return None if holder is None else str(holder)

    # -- processed keys and documents ------------------------------------------------------

    async def is_processed(self, route: str, keys: Sequence[str]) -> bool:
        if not keys:
            return False
        with self._guard():
            async with self._pool.acquire() as conn:
                return await is_processed_in(conn, route, keys)

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        with self._guard():
            async with self._pool.acquire() as conn:
                return await applied_document_in(conn, route, document)

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        with self._guard():
            async with self._pool.acquire() as conn:
                return await lookup_in(conn, route, lookups)

    async def record_applied(
        self,
        route: str,
        keys: Sequence[str],
        document: str,
        version: int | None,
        lines: Mapping[str, datetime],
    ) -> bool:
        check_applied(keys, lines)  # refuse bad input before taking a connection
        with self._guard():
            async with self._pool.acquire() as conn:
                return await record_applied_in(conn, route, keys, document, version, lines)

    # -- lifecycle -------------------------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        return self._failure

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), timeout=10)
        except TimeoutError:
            self._pool.terminate()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            with _translate(f"PostgreSQL state store at {self._where} failed"):
                yield
        except StateUnavailable as exc:
            self._failure = str(exc)
            raise
        self._failure = None


@contextmanager
def _translate(what: str) -> Iterator[None]:
    """asyncpg and socket failures → ``StateUnavailable`` or ``ConfigurationError``."""
    try:
        yield
    except _MISCONFIGURED as exc:
        raise ConfigurationError(f"{what}: {exc}") from None
    except _TRANSIENT as exc:
        reason = str(exc) or type(exc).__name__
        raise StateUnavailable(f"{what}: {reason}", retry_after=1.0) from exc
