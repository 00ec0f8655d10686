"""The replicated state store: PostgreSQL over an asyncpg pool.

``ORDERBRIDGE_STATE_URL=postgresql://user:password@host:5432/dbname`` (``postgres://``
works too; libpq query options such as ``sslmode`` pass through to asyncpg).

Why it is correct with several replicas on several hosts:

* ``record_applied`` takes a transaction-scoped advisory lock on the
  (route, document) pair, then inserts the delivery if absent, reads the
  document's parts and decides again (``shared.state.port.still_news``)
  before writing: of two transactions recording the same change, the second
  waits for the first, finds nothing new and writes nothing;
* one row per applied part (header, each line) holds its version, stamp
  (``timestamptz``) and content digest, updated in place;
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
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from shared.applied import PartState
from shared.errors import AccessRefused, ConfigurationError, StateUnavailable
from shared.logging import get_logger
from shared.settings import redact_url
from shared.state.migrations import Migration, pending
from shared.state.port import (
    AppliedDocument,
    Lookup,
    Record,
    Tokens,
    check_record,
    check_ttl,
    still_news,
)

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
    Migration(
        2,
        "deliveries and applied parts (version, stamp, content digest) replace keys and stamps",
        (
            """CREATE TABLE orderbridge_deliveries (
                route text NOT NULL,
                delivery text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (route, delivery))""",
            # digest NULL = recorded by release 1 (content unknown).
            """CREATE TABLE orderbridge_applied_parts (
                route text NOT NULL,
                document text NOT NULL,
                part text NOT NULL,
                version bigint,
                stamp timestamptz,
                digest text,
                updated_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (route, document, part))""",
            # What release 1 knew carries over: the whole-document version and the
            # document's own stamp become the header's, line stamps the lines'.
            """INSERT INTO orderbridge_applied_parts (route, document, part, version, stamp)
                SELECT d.route, d.document, '@header', d.version, l.stamp
                FROM orderbridge_documents AS d
                LEFT JOIN orderbridge_document_lines AS l
                  ON l.route = d.route AND l.document = d.document AND l.line = '__document__'""",
            """INSERT INTO orderbridge_applied_parts (route, document, part, stamp)
                SELECT route, document, line, stamp FROM orderbridge_document_lines
                WHERE line <> '__document__'""",
            "DROP TABLE orderbridge_document_lines",
            "DROP TABLE orderbridge_documents",
            "DROP TABLE orderbridge_processed",
        ),
    ),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS orderbridge_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())"""

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"

_LOCK_AND_INSERT_DELIVERY = """
INSERT INTO orderbridge_deliveries (route, delivery)
SELECT $2, $3 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked
ON CONFLICT DO NOTHING"""

_SELECT_PARTS = """
SELECT document, part, version, stamp, digest FROM orderbridge_applied_parts
WHERE route = $1 AND document = ANY($2::text[])"""

_UPSERT_PARTS = """
INSERT INTO orderbridge_applied_parts (route, document, part, version, stamp, digest)
SELECT $1, $2, p.part, p.version, p.stamp, p.digest
FROM unnest($3::text[], $4::bigint[], $5::timestamptz[], $6::text[])
    AS p (part, version, stamp, digest)
ORDER BY p.part
ON CONFLICT (route, document, part) DO UPDATE
SET version = excluded.version, stamp = excluded.stamp, digest = excluded.digest,
    updated_at = now()"""

_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TransactionRollbackError,  # class 40: deadlock, serialization
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now
)
_REFUSED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidAuthorizationSpecificationError,  # class 28: role, password
    asyncpg.exceptions.InsufficientPrivilegeError,
)
_MISCONFIGURED: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.InvalidCatalogNameError,  # 3D000: no such database
)


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


async def record_applied_in(conn: Connection, route: str, record: Record) -> bool:
    """``StateStore.record_applied`` on ``conn``: its own transaction, or a savepoint in yours.

    On False nothing was written and your transaction is still usable.
    """
    return await record_parts_in(conn, route, record) is not None


async def record_parts_in(
    conn: Connection, route: str, record: Record
) -> dict[str, PartState] | None:
    """``record_applied_in`` that says which parts it wrote (None: nothing new).

    Decided again under the document's lock, the parts written may be fewer
    than asked for (another replica recorded some meanwhile): an adapter that
    records in its own transaction applies exactly those.
    """
    try:
        async with conn.transaction():
            return await record_or_raise_in(conn, route, record)
    except NothingNew:
        return None


class NothingNew(Exception):
    """Raised by ``record_or_raise_in``: the record brought nothing new; roll back."""


async def record_or_raise_in(conn: Connection, route: str, record: Record) -> dict[str, PartState]:
    """Record inside the caller's transaction, without a savepoint of its own.

    Raises ``NothingNew`` when nothing is news anymore: the caller's
    transaction must then be rolled back (what it wrote is in it). Cheaper by
    two round trips than ``record_parts_in`` for an adapter that applies its
    effect in the same transaction and has nothing to keep on a duplicate.
    """
    parts = check_record(record)
    # One writer per (route, document) at a time, until the transaction ends; the
    # delivery is inserted in the same statement, after the lock (one round trip).
    lock = f"{route}\x1f{record.document}"
    if record.delivery is None:
        await conn.execute(_LOCK, lock)
    else:
        status = await conn.execute(_LOCK_AND_INSERT_DELIVERY, lock, route, record.delivery)
        if _row_count(status) != 1:
            raise NothingNew
    recorded = (await _parts_in(conn, route, [record.document])).get(record.document, {})
    writes = still_news(parts, recorded)
    if writes is None:
        raise NothingNew
    names = sorted(writes)
    await conn.execute(
        _UPSERT_PARTS,
        route,
        record.document,
        names,
        [writes[name].version for name in names],
        [writes[name].stamp for name in names],
        [writes[name].digest for name in names],
    )
    return writes


async def _parts_in(
    conn: Connection, route: str, documents: Sequence[str]
) -> dict[str, dict[str, PartState]]:
    rows = await conn.fetch(_SELECT_PARTS, route, list(documents))
    found: dict[str, dict[str, PartState]] = {}
    for row in rows:
        found.setdefault(row["document"], {})[row["part"]] = PartState(
            row["version"], row["stamp"], row["digest"]
        )
    return found


async def applied_document_in(
    conn: Connection, route: str, document: str
) -> AppliedDocument | None:
    parts = (await _parts_in(conn, route, [document])).get(document)
    return None if parts is None else AppliedDocument(parts)


async def lookup_in(
    conn: Connection, route: str, lookups: Sequence[Lookup]
) -> list[tuple[bool, AppliedDocument | None]]:
    """``StateStore.lookup`` on ``conn``: one statement for a whole round."""
    deliveries = [item.delivery for item in lookups if item.delivery is not None]
    rows = await conn.fetch(_LOOKUP, route, deliveries, sorted({item.document for item in lookups}))
    delivered = {row["document"] for row in rows if row["part"] is None}
    documents: dict[str, dict[str, PartState]] = {}
    for row in rows:
        if row["part"] is not None:
            documents.setdefault(row["document"], {})[row["part"]] = PartState(
                row["version"], row["stamp"], row["digest"]
            )
    results: list[tuple[bool, AppliedDocument | None]] = []
    for item in lookups:
        if item.delivery is not None and item.delivery in delivered:
            results.append((True, None))
            continue
        parts = documents.get(item.document)
        results.append((False, None if parts is None else AppliedDocument(parts)))
    return results


_LOOKUP = """
SELECT delivery AS document, NULL AS part, NULL::bigint AS version,
       NULL::timestamptz AS stamp, NULL AS digest
FROM orderbridge_deliveries WHERE route = $1 AND delivery = ANY($2::text[])
UNION ALL
SELECT document, part, version, stamp, digest FROM orderbridge_applied_parts
WHERE route = $1 AND document = ANY($3::text[])"""
"""Delivered messages (rows without a part) and the documents' parts, in one round trip."""


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

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        with self._guard():
            async with self._pool.acquire() as conn:
                return await applied_document_in(conn, route, document)

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        if not lookups:
            return []
        with self._guard():
            async with self._pool.acquire() as conn:
                return await lookup_in(conn, route, lookups)

    async def record_applied(self, route: str, record: Record) -> bool:
        check_record(record)  # refuse bad input before taking a connection
        with self._guard():
            async with self._pool.acquire() as conn:
                return await record_applied_in(conn, route, record)

    async def record_applied_many(self, route: str, records: Sequence[Record]) -> list[bool]:
        for record in records:
            check_record(record)
        with self._guard():
            async with self._pool.acquire() as conn:
                return [await record_applied_in(conn, route, record) for record in records]

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
    """asyncpg and socket failures → ``StateUnavailable``, ``AccessRefused`` or
    ``ConfigurationError``."""
    try:
        yield
    except _REFUSED as exc:
        raise AccessRefused(f"{what}: {exc}") from None
    except _MISCONFIGURED as exc:
        raise ConfigurationError(f"{what}: {exc}") from None
    except _TRANSIENT as exc:
        reason = str(exc) or type(exc).__name__
        raise StateUnavailable(f"{what}: {reason}", retry_after=1.0) from exc
