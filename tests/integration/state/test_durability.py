"""What only real databases can show: reopening, migrating, several processes, SIGKILL."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import stat
import time
import uuid

import asyncpg
import pytest

from shared.applied import HEADER, PartState
from shared.errors import ConfigurationError
from shared.state import open_state_store
from shared.state import postgres as postgres_store
from shared.state import sqlite as sqlite_store
from shared.state.lease import LeaseKeeper
from shared.state.port import AppliedDocument, Lookup, Record, Tokens
from shared.state.sqlite import parse_sqlite_url
from tests.integration.state.conftest import Backend, Spawn, read_line
from tests.support.state_worker import EPOCH, churn_parts

pytestmark = pytest.mark.integration


async def test_everything_survives_closing_and_reopening(durable_backend: Backend) -> None:
    store = await durable_backend.open()
    await store.set_cursor("tradecloud:orders", "2025-04-23T10:01:53.812Z")
    await store.save_tokens("apicbase", Tokens("access", "rotated-refresh", EPOCH))
    parts = {HEADER: PartState(3, EPOCH, "h3"), "1": PartState(3, EPOCH, "a3")}
    assert await store.record_applied("r", Record("m3", "doc", parts))
    await durable_backend.close()

    reopened = await durable_backend.open()
    assert await reopened.get_cursor("tradecloud:orders") == "2025-04-23T10:01:53.812Z"
    assert await reopened.load_tokens("apicbase") == Tokens("access", "rotated-refresh", EPOCH)
    assert await reopened.lookup("r", [Lookup("m3", "doc")]) == [(True, None)]
    assert await reopened.applied_document("r", "doc") == AppliedDocument(parts)
    assert await durable_backend.ledger() == [1, 2], "reopening migrates nothing twice"


async def test_what_release_1_recorded_carries_over(fresh_url: str) -> None:
    """A store written by release 1 (keys, whole-document versions, line stamps) opens
    migrated: the version and the document stamp become the header's, line stamps the
    lines' (content unknown), and the old tables are gone."""
    sqlite = fresh_url.startswith("sqlite")
    migrations = (sqlite_store if sqlite else postgres_store).MIGRATIONS[:1]
    micros = 1_767_225_600_000_000  # EPOCH in microseconds
    legacy = [
        *migrations[0].statements,
        "INSERT INTO orderbridge_processed (route, key) VALUES ('r', 'tc:order:o1:v3')",
        "INSERT INTO orderbridge_documents (route, document, version) VALUES ('r', 'doc', 3)",
        "INSERT INTO orderbridge_document_lines (route, document, line, stamp) VALUES "
        + (
            f"('r', 'doc', '__document__', {micros}), ('r', 'doc', 'l1', {micros})"
            if sqlite
            else "('r', 'doc', '__document__', '2026-01-01T00:00:00Z'),"
            " ('r', 'doc', 'l1', '2026-01-01T00:00:00Z')"
        ),
    ]
    ledger = (
        "CREATE TABLE orderbridge_schema_migrations (version INTEGER PRIMARY KEY, "
        "name TEXT NOT NULL, applied_at TEXT NOT NULL DEFAULT 'then')"
    )
    backend = Backend("sqlite" if sqlite else "postgres", fresh_url)
    if sqlite:
        parse_sqlite_url(fresh_url).path.parent.mkdir(parents=True, exist_ok=True)
    for statement in [ledger, *legacy]:
        await backend.execute(statement)
    await backend.execute(
        "INSERT INTO orderbridge_schema_migrations (version, name) VALUES (1, 'release 1')"
    )
    store = await open_state_store(fresh_url)
    try:
        assert await store.applied_document("r", "doc") == AppliedDocument(
            {HEADER: PartState(3, EPOCH, None), "l1": PartState(None, EPOCH, None)}
        )
        assert await backend.ledger() == [1, 2]
        with pytest.raises((sqlite3.Error, asyncpg.PostgresError)):
            await backend.execute("SELECT 1 FROM orderbridge_processed")
    finally:
        await store.close()


async def test_concurrent_first_opens_migrate_once(fresh_url: str, spawn_worker: Spawn) -> None:
    """Replicas starting together on an empty database: in-process and in other processes."""
    workers = [await spawn_worker(fresh_url, "open") for _ in range(3)]
    opened = await asyncio.gather(
        *(open_state_store(fresh_url) for _ in range(3)), return_exceptions=True
    )
    stores = [store for store in opened if not isinstance(store, BaseException)]
    try:
        assert len(stores) == 3, f"an open failed: {opened}"
        for worker in workers:
            assert await read_line(worker) == "opened"
            assert await worker.wait() == 0
        await stores[0].set_cursor("s", "x")
        assert await stores[2].get_cursor("s") == "x"
    finally:
        for store in stores:
            await store.close()
    backend = Backend("sqlite" if fresh_url.startswith("sqlite") else "postgres", fresh_url)
    assert await backend.ledger() == [1, 2]


async def test_a_newer_schema_is_refused(durable_backend: Backend) -> None:
    await durable_backend.open()
    await durable_backend.close()
    await durable_backend.execute(
        "INSERT INTO orderbridge_schema_migrations (version, name) VALUES (999, 'from the future')"
    )
    try:
        with pytest.raises(ConfigurationError, match="999"):
            await open_state_store(durable_backend.url)
    finally:
        await durable_backend.execute(
            "DELETE FROM orderbridge_schema_migrations WHERE version = 999"
        )


async def test_processes_racing_on_duplicates_apply_each_event_once(
    durable_backend: Backend, spawn_worker: Spawn
) -> None:
    route = f"race-{uuid.uuid4().hex[:6]}"
    events = 60
    workers = [
        await spawn_worker(durable_backend.url, "race", route, str(events), str(seed))
        for seed in range(3)
    ]
    for worker in workers:
        assert await read_line(worker) == "ready"
    for worker in workers:  # all connected: start together
        assert worker.stdin is not None
        worker.stdin.write(b"go\n")
        await worker.stdin.drain()
    won: list[int] = []
    for worker in workers:
        won += json.loads(await read_line(worker))
        assert await worker.wait() == 0
    assert sorted(won) == list(range(events)), "each event won by exactly one process"
    store = await durable_backend.open()
    answers = await store.lookup(route, [Lookup(None, f"doc-{i}") for i in range(events)])
    assert all(applied is not None for _, applied in answers)


async def test_a_process_killed_mid_run_leaves_a_consistent_store(
    durable_backend: Backend, spawn_worker: Spawn
) -> None:
    """SIGKILL while the worker records, commits cursors and rotates tokens in a loop:
    after reopening, every round is there whole or not at all, in order."""
    route = f"churn-{uuid.uuid4().hex[:6]}"
    worker = await spawn_worker(durable_backend.url, "churn", route)
    while int(await read_line(worker)) < 40:
        pass
    worker.send_signal(signal.SIGKILL)
    assert await worker.wait() == -signal.SIGKILL

    store = await durable_backend.open()  # reopens and recovers (SQLite: the WAL)
    applied = await store.applied_document(route, "doc")
    assert applied is not None
    last = applied.parts[HEADER].version
    assert last is not None and last >= 40
    delivered = await store.lookup(route, [Lookup(f"m{i}", "x") for i in (1, last // 2, last)])
    assert all(found for found, _ in delivered)
    (after_last,) = await store.lookup(route, [Lookup(f"m{last + 1}", "x")])
    assert not after_last[0], "no half-recorded round"
    expected = {}
    for i in range(max(1, last - 2), last + 1):
        expected.update(churn_parts(i))
    assert applied.parts == expected
    cursor = await store.get_cursor(route)
    assert cursor in (f"{last:08d}", f"{last - 1:08d}"), "cursor committed after its round"
    tokens = await store.load_tokens(route)
    assert tokens is not None
    assert tokens.refresh_token in {f"refresh-{int(cursor)}", f"refresh-{int(cursor) - 1}"}
    if durable_backend.kind == "sqlite":
        path = parse_sqlite_url(durable_backend.url).path
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_a_waiting_replica_takes_over_when_the_holder_is_killed(
    durable_backend: Backend, spawn_worker: Spawn
) -> None:
    ttl = 0.6
    lease = f"tradecloud-orders-{uuid.uuid4().hex[:6]}"
    holder = await spawn_worker(durable_backend.url, "hold", lease, "replica-1", str(ttl))
    assert await read_line(holder) == "held"

    store = await open_state_store(durable_backend.url)  # real clock, own connection
    try:
        keeper = LeaseKeeper(store, lease, "replica-2", ttl=ttl, renew_every=ttl / 4)
        waiting = asyncio.create_task(keeper.acquire())
        await asyncio.sleep(2 * ttl)
        assert not waiting.done(), "replica-1 keeps renewing: replica-2 waits"
        assert await store.lease_holder(lease) == "replica-1"

        holder.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        await holder.wait()
        await asyncio.wait_for(waiting, 5 * ttl)
        took = time.monotonic() - killed_at
        assert keeper.held and await store.lease_holder(lease) == "replica-2"
        assert took <= ttl + keeper.retry_every + 1.0, f"takeover took {took:.2f}s"
        await keeper.release()
    finally:
        await store.close()


async def test_the_sqlite_file_is_private_and_in_wal_mode(tmp_path: os.PathLike[str]) -> None:
    url = f"sqlite:///{tmp_path}/nested/dir/state.db"
    store = await open_state_store(url)
    try:
        await store.save_tokens("apicbase", Tokens("secret-access", "secret-refresh"))
        path = parse_sqlite_url(url).path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, "refresh tokens: owner only"
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        await store.close()
