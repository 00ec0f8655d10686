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

import pytest

from shared.errors import ConfigurationError
from shared.state import open_state_store
from shared.state.lease import LeaseKeeper
from shared.state.port import AppliedDocument, Tokens
from shared.state.sqlite import parse_sqlite_url
from tests.integration.state.conftest import Backend, Spawn, read_line
from tests.support.state_worker import EPOCH, churn_lines

pytestmark = pytest.mark.integration


async def test_everything_survives_closing_and_reopening(durable_backend: Backend) -> None:
    store = await durable_backend.open()
    await store.set_cursor("tradecloud:orders", "2025-04-23T10:01:53.812Z")
    await store.save_tokens("apicbase", Tokens("access", "rotated-refresh", EPOCH))
    assert await store.record_applied("r", ["k:v3"], "doc", 3, {"1": EPOCH})
    await durable_backend.close()

    reopened = await durable_backend.open()
    assert await reopened.get_cursor("tradecloud:orders") == "2025-04-23T10:01:53.812Z"
    assert await reopened.load_tokens("apicbase") == Tokens("access", "rotated-refresh", EPOCH)
    assert await reopened.is_processed("r", ["k:v3"])
    assert await reopened.applied_document("r", "doc") == AppliedDocument(3, {"1": EPOCH})
    assert await durable_backend.ledger() == [1], "reopening migrates nothing twice"


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
    assert await backend.ledger() == [1]


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
    assert all([await store.is_processed(route, [f"message-{i}"]) for i in range(events)])


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
    assert applied is not None and applied.version is not None
    last = applied.version
    assert last >= 40
    for i in (1, last // 2, last):
        assert await store.is_processed(route, [f"k{i}"])
        assert await store.is_processed(route, [f"m{i}"])
    assert not await store.is_processed(route, [f"k{last + 1}"])
    assert not await store.is_processed(route, [f"m{last + 1}"]), "no half-recorded round"
    expected_lines = {}
    for i in range(max(1, last - 2), last + 1):
        expected_lines.update(churn_lines(i))
    assert applied.lines == expected_lines
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
