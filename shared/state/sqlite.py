"""The embedded state store: one SQLite file in WAL mode, shared by processes on one host.

``ORDERBRIDGE_STATE_URL=sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``
(default ``sqlite:///./orderbridge-state.db``). Query options:

* ``timeout`` (seconds, default 10): how long a writer waits for another
  process's write transaction before ``StateUnavailable``;
* ``synchronous`` (``full`` by default, or ``normal``): ``full`` fsyncs the WAL
  on every commit, so a recorded key or a rotated refresh token survives a
  power loss; ``normal`` (about 20x cheaper per commit here) keeps the file
  consistent after any crash but may forget the last commits after a power
  loss, which costs duplicates (and perhaps a re-login), never a gap.

Why it is safe with several processes: every write is one statement or one
``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so two
writers never deadlock upgrading a read lock): a delivery is inserted if
absent by its primary key, and ``record_applied`` reads the document's parts
and decides again *under* that write lock, so no other process can record
between the read and the write. Readers never block writers in WAL mode. Leases use the
host's wall clock (shared by every process on the host).

One ``aiosqlite`` connection (one thread) per store; each operation, a whole
transaction included, runs on that thread as one call, so this process's
transactions never interleave and a cancelled caller never leaves the
connection inside an open transaction. ``record_applied`` calls that arrive
together share one transaction (group commit: one fsync for the batch, each
event in its own savepoint, every caller answered after the COMMIT).
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast
from urllib.parse import parse_qs, unquote, urlsplit

import aiosqlite

from shared.applied import PartState
from shared.errors import AccessRefused, ConfigurationError, StateUnavailable
from shared.logging import get_logger
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

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_BATCH = 256  # events per group commit, at most
_MICROSECOND = timedelta(microseconds=1)
_NOW_TEXT = "(strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "cursors, tokens, leases, processed keys, document versions and line stamps",
        (
            f"""CREATE TABLE orderbridge_cursors (
                stream TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT})""",
            f"""CREATE TABLE orderbridge_tokens (
                platform TEXT PRIMARY KEY,
                access_token TEXT NOT NULL,
                refresh_token TEXT,
                expires_at TEXT,
                updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT})""",
            # expires_at: unix seconds of the host clock (REAL).
            """CREATE TABLE orderbridge_leases (
                name TEXT PRIMARY KEY,
                holder TEXT NOT NULL,
                expires_at REAL NOT NULL)""",
            f"""CREATE TABLE orderbridge_processed (
                route TEXT NOT NULL,
                key TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
                PRIMARY KEY (route, key)) WITHOUT ROWID""",
            f"""CREATE TABLE orderbridge_documents (
                route TEXT NOT NULL,
                document TEXT NOT NULL,
                version INTEGER,
                updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
                PRIMARY KEY (route, document)) WITHOUT ROWID""",
            # stamp: microseconds since the epoch, UTC (exact, compares as an integer).
            """CREATE TABLE orderbridge_document_lines (
                route TEXT NOT NULL,
                document TEXT NOT NULL,
                line TEXT NOT NULL,
                stamp INTEGER NOT NULL,
                PRIMARY KEY (route, document, line)) WITHOUT ROWID""",
        ),
    ),
    Migration(
        2,
        "deliveries and applied parts (version, stamp, content digest) replace keys and stamps",
        (
            f"""CREATE TABLE orderbridge_deliveries (
                route TEXT NOT NULL,
                delivery TEXT NOT NULL,
                applied_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
                PRIMARY KEY (route, delivery)) WITHOUT ROWID""",
            # stamp: microseconds since the epoch, UTC; digest NULL = recorded by release 1.
            f"""CREATE TABLE orderbridge_applied_parts (
                route TEXT NOT NULL,
                document TEXT NOT NULL,
                part TEXT NOT NULL,
                version INTEGER,
                stamp INTEGER,
                digest TEXT,
                updated_at TEXT NOT NULL DEFAULT {_NOW_TEXT},
                PRIMARY KEY (route, document, part)) WITHOUT ROWID""",
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
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))"""


@dataclass(frozen=True)
class SqliteOptions:
    path: Path
    timeout: float = 10.0
    synchronous: Literal["FULL", "NORMAL"] = "FULL"


def parse_sqlite_url(url: str) -> SqliteOptions:
    """``sqlite:///rel/path`` → ``rel/path``; ``sqlite:////abs/path`` → ``/abs/path``."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise ConfigurationError(
            f"not a SQLite state URL: {url!r} (use sqlite:///relative.db or sqlite:////abs.db)"
        )
    raw = unquote(parts.path)
    if not raw.startswith("/") or raw == "/":
        raise ConfigurationError(f"SQLite state URL {url!r} names no file")
    if raw == "/:memory:":
        raise ConfigurationError(
            "an in-memory SQLite store is private to one connection: use memory:// instead"
        )
    path = Path(raw[1:])
    options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(options) - {"timeout", "synchronous"}
    if unknown:
        raise ConfigurationError(f"unknown SQLite state URL option(s): {sorted(unknown)}")
    try:
        timeout = float(options.get("timeout", "10"))
    except ValueError:
        raise ConfigurationError(f"timeout must be a number of seconds in {url!r}") from None
    if not timeout > 0:
        raise ConfigurationError(f"timeout must be positive in {url!r}")
    synchronous = options.get("synchronous", "full").upper()
    if synchronous not in ("FULL", "NORMAL"):
        raise ConfigurationError(f"synchronous must be 'full' or 'normal' in {url!r}")
    return SqliteOptions(
        path=path,
        timeout=timeout,
        synchronous="FULL" if synchronous == "FULL" else "NORMAL",
    )


def _to_micros(stamp: datetime) -> int:
    return (stamp - _EPOCH) // _MICROSECOND


def _from_micros(micros: int) -> datetime:
    return _EPOCH + micros * _MICROSECOND


class SqliteStateStore:
    """The ``StateStore`` port over one SQLite file (see the module docstring)."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        options: SqliteOptions,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._options = options
        self._clock = clock
        self._failure: str | None = None
        self._queue: list[tuple[_Applied, asyncio.Future[bool]]] = []
        self._committer: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, url: str, *, clock: Callable[[], float] = time.time) -> SqliteStateStore:
        """Open the file (creating it, owner-only, with its folder) and migrate it."""
        options = parse_sqlite_url(url)
        _create_private(options.path)
        with _translate(f"cannot open SQLite state file {options.path}"):
            conn = await aiosqlite.connect(
                options.path, timeout=options.timeout, isolation_level=None
            )
        store = cls(conn, options, clock=clock)
        try:
            with _translate(f"cannot open SQLite state file {options.path}"):
                await store._call(_configure, options)
                await store._call(_migrate, MIGRATIONS)
        except BaseException:
            await conn.close()
            raise
        return store

    @property
    def path(self) -> Path:
        return self._options.path

    # -- cursors ---------------------------------------------------------------------------

    async def get_cursor(self, stream: str) -> str | None:
        rows = await self._run(
            _fetch, "SELECT value FROM orderbridge_cursors WHERE stream = ?", (stream,)
        )
        return str(rows[0][0]) if rows else None

    async def set_cursor(self, stream: str, value: str) -> None:
        await self._run(
            _fetch,
            """INSERT INTO orderbridge_cursors (stream, value) VALUES (?, ?)
               ON CONFLICT (stream) DO UPDATE
               SET value = excluded.value, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')""",
            (stream, value),
        )

    # -- tokens ----------------------------------------------------------------------------

    async def load_tokens(self, platform: str) -> Tokens | None:
        rows = await self._run(
            _fetch,
            """SELECT access_token, refresh_token, expires_at
               FROM orderbridge_tokens WHERE platform = ?""",
            (platform,),
        )
        if not rows:
            return None
        access, refresh, expires = rows[0]
        return Tokens(
            access_token=access,
            refresh_token=refresh,
            expires_at=None if expires is None else datetime.fromisoformat(expires),
        )

    async def save_tokens(self, platform: str, tokens: Tokens) -> None:
        expires = None if tokens.expires_at is None else tokens.expires_at.isoformat()
        await self._run(
            _fetch,
            """INSERT INTO orderbridge_tokens (platform, access_token, refresh_token, expires_at)
               VALUES (?, ?, ?, ?)
               ON CONFLICT (platform) DO UPDATE
               SET access_token = excluded.access_token,
                   refresh_token = excluded.refresh_token,
                   expires_at = excluded.expires_at,
                   updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')""",
            (platform, tokens.access_token, tokens.refresh_token, expires),
        )

    # -- leases ----------------------------------------------------------------------------

    async def try_acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        check_ttl(ttl_seconds)
        now = self._clock()
        # One statement: the upsert's WHERE decides under the write lock.
        rows = await self._run(
            _fetch,
            """INSERT INTO orderbridge_leases (name, holder, expires_at) VALUES (?, ?, ?)
               ON CONFLICT (name) DO UPDATE
               SET holder = excluded.holder, expires_at = excluded.expires_at
               WHERE orderbridge_leases.holder = excluded.holder
                  OR orderbridge_leases.expires_at <= ?
               RETURNING holder""",
            (name, holder, now + ttl_seconds, now),
        )
        return bool(rows)

    async def release_lease(self, name: str, holder: str) -> None:
        await self._run(
            _fetch, "DELETE FROM orderbridge_leases WHERE name = ? AND holder = ?", (name, holder)
        )

    async def lease_holder(self, name: str) -> str | None:
        rows = await self._run(
            _fetch,
            "SELECT holder FROM orderbridge_leases WHERE name = ? AND expires_at > ?",
            (name, self._clock()),
        )
        return str(rows[0][0]) if rows else None

    # -- deliveries and applied parts ------------------------------------------------------

    async def applied_document(self, route: str, document: str) -> AppliedDocument | None:
        found = await self._run(_lookup, route, [Lookup(None, document)])
        return found[0][1]

    async def lookup(
        self, route: str, lookups: Sequence[Lookup]
    ) -> list[tuple[bool, AppliedDocument | None]]:
        if not lookups:
            return []
        return await self._run(_lookup, route, list(lookups))

    async def record_applied(self, route: str, record: Record) -> bool:
        parts = check_record(record)
        applied: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((_Applied(route, record.delivery, record.document, parts), applied))
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_queued())
        return await applied

    async def record_applied_many(self, route: str, records: Sequence[Record]) -> list[bool]:
        """A round's records in one thread hop and one transaction (each in a savepoint)."""
        items = [
            _Applied(route, record.delivery, record.document, check_record(record))
            for record in records
        ]
        if not items:
            return []
        return await self._run(_record_batch, items)

    async def _commit_queued(self) -> None:
        """Group commit: the events queued meanwhile share one transaction (one fsync).

        Each event stays atomic on its own (a savepoint), and the results are
        those of applying the queue one by one; every caller is answered only
        after the COMMIT. Calls arrive while a batch is in the thread, so the
        batch grows with the load and stays at one event when idle.
        """
        while self._queue:
            batch, self._queue = self._queue[:_BATCH], self._queue[_BATCH:]
            try:
                results = await self._run(_record_batch, [item for item, _ in batch])
            except asyncio.CancelledError:  # the loop is shutting down
                for _, applied in batch + self._queue:
                    applied.cancel()
                raise
            except Exception as exc:
                for _, applied in batch:
                    if not applied.done():
                        applied.set_exception(exc)
                continue
            for (_, applied), result in zip(batch, results, strict=True):
                if not applied.done():  # a caller that stopped waiting is still recorded
                    applied.set_result(result)

    # -- lifecycle -------------------------------------------------------------------------

    def not_ready_reason(self) -> str | None:
        return self._failure

    async def close(self) -> None:
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
        await self._conn.close()

    # -- plumbing --------------------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``_call`` with failures translated and remembered for ``not_ready_reason``."""
        try:
            with _translate("SQLite state store failed"):
                result = await self._call(fn, *args)
        except StateUnavailable as exc:
            self._failure = str(exc)
            raise
        self._failure = None
        return result

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(sqlite3_connection, *args)`` on the connection's own thread.

        aiosqlite runs every call on that one thread, in order (``_execute`` is
        how its own methods do it). Handing it a whole transaction as one
        function costs one thread hop instead of five (2.5x the throughput),
        keeps this process's transactions from interleaving without a lock, and
        makes each one immune to cancellation: a caller that stops waiting
        leaves the thread to commit or roll back what it started.
        """
        execute = cast(Callable[..., Awaitable[T]], self._conn._execute)
        return await execute(fn, self._conn._conn, *args)


def _fetch(conn: sqlite3.Connection, sql: str, params: Sequence[object]) -> list[Any]:
    """One statement in autocommit mode: its own transaction, atomic."""
    return conn.execute(sql, params).fetchall()


@contextmanager
def transaction(conn: sqlite3.Connection, begin: str = "BEGIN IMMEDIATE") -> Iterator[None]:
    """``begin`` … ``COMMIT``, or ``ROLLBACK`` on any exception (also a failed COMMIT).

    Writers begin ``IMMEDIATE``: the write lock is taken (or waited for, within
    the busy timeout) up front, so a transaction never fails upgrading a read
    lock that another process's commit has made stale.
    """
    conn.execute(begin)
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise


@dataclass(frozen=True)
class _Applied:
    route: str
    delivery: str | None
    document: str
    parts: dict[str, PartState]  # stamps in UTC


def _record_batch(conn: sqlite3.Connection, batch: list[_Applied]) -> list[bool]:
    """``record_applied`` for each event in turn, each in its own savepoint, one COMMIT."""
    results = []
    with transaction(conn):
        for item in batch:
            conn.execute("SAVEPOINT event")
            recorded = _record_one(conn, item)
            if not recorded:
                conn.execute("ROLLBACK TO event")
            conn.execute("RELEASE event")
            results.append(recorded)
    return results


def _record_one(conn: sqlite3.Connection, item: _Applied) -> bool:
    """Decide again under the write lock (``BEGIN IMMEDIATE``), then write."""
    if item.delivery is not None:
        inserted = conn.execute(
            """INSERT INTO orderbridge_deliveries (route, delivery) VALUES (?, ?)
               ON CONFLICT DO NOTHING""",
            (item.route, item.delivery),
        )
        if inserted.rowcount != 1:
            return False
    recorded = _parts(conn, item.route, item.document)
    writes = still_news(item.parts, recorded)
    if writes is None:
        return False  # the caller rolls the delivery back too
    conn.executemany(
        """INSERT INTO orderbridge_applied_parts (route, document, part, version, stamp, digest)
           VALUES (?, ?, ?, ?, ?, ?)
           ON CONFLICT (route, document, part) DO UPDATE
           SET version = excluded.version, stamp = excluded.stamp, digest = excluded.digest,
               updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')""",
        [
            (
                item.route,
                item.document,
                part,
                state.version,
                None if state.stamp is None else _to_micros(state.stamp),
                state.digest,
            )
            for part, state in sorted(writes.items())
        ],
    )
    return True


def _parts(conn: sqlite3.Connection, route: str, document: str) -> dict[str, PartState]:
    rows = conn.execute(
        """SELECT part, version, stamp, digest FROM orderbridge_applied_parts
           WHERE route = ? AND document = ?""",
        (route, document),
    ).fetchall()
    return {
        part: PartState(version, None if stamp is None else _from_micros(stamp), digest)
        for part, version, stamp, digest in rows
    }


def _lookup(
    conn: sqlite3.Connection, route: str, lookups: list[Lookup]
) -> list[tuple[bool, AppliedDocument | None]]:
    """Every event of a round in one snapshot and one thread hop."""
    results: list[tuple[bool, AppliedDocument | None]] = []
    with transaction(conn, "BEGIN"):
        for item in lookups:
            if item.delivery is not None:
                found = conn.execute(
                    """SELECT 1 FROM orderbridge_deliveries
                       WHERE route = ? AND delivery = ?""",
                    (route, item.delivery),
                ).fetchone()
                if found is not None:
                    results.append((True, None))
                    continue
            parts = _parts(conn, route, item.document)
            results.append((False, AppliedDocument(parts) if parts else None))
    return results


@contextmanager
def _translate(what: str) -> Iterator[None]:
    """sqlite3 failures (locked past the busy timeout, I/O errors) → ``StateUnavailable``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StateUnavailable(f"{what}: {exc}", retry_after=1.0) from exc


def _create_private(path: Path) -> None:
    """Create the file owner-only (it holds refresh tokens); WAL files inherit the mode."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    except PermissionError as exc:
        raise AccessRefused(
            f"cannot create SQLite state file {path}: {exc.strerror}; "
            "choose a path this user may write"
        ) from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot create SQLite state file {path}: {exc.strerror or exc}; "
            "choose a writable path (its folder is created when missing)"
        ) from None


def _configure(conn: sqlite3.Connection, options: SqliteOptions) -> None:
    configure_wal(conn, options.path, timeout=options.timeout, synchronous=options.synchronous)


def configure_wal(
    conn: sqlite3.Connection,
    path: Path,
    *,
    timeout: float,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
) -> None:
    """Busy timeout, WAL mode and the sync level, safe while other processes open the file."""
    conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
    # Switching to WAL needs a moment alone with the file; another process opening it
    # at the same time may hold it briefly, and the busy handler does not cover this.
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # on the connection's own thread, not the event loop
    if mode != "wal":
        raise ConfigurationError(f"SQLite file {path} cannot use WAL (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")


def _migrate(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply missing migrations under the write lock: concurrent openers apply each once."""
    with transaction(conn):
        conn.execute(_LEDGER)
        rows = conn.execute("SELECT version FROM orderbridge_schema_migrations").fetchall()
        for migration in pending({int(row[0]) for row in rows}, migrations, where="SQLite"):
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO orderbridge_schema_migrations (version, name) VALUES (?, ?)",
                (migration.version, migration.name),
            )
            log.info("state store migrated", backend="sqlite", version=migration.version)
