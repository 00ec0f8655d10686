"""Trouble at the edge: a locked file, a cut connection, a cancelled caller.

Whatever the driver raises, callers see ``StateUnavailable`` (retryable), the
store reports it on ``not_ready_reason()`` until it answers again, and nothing
half-written is ever left behind.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from shared.applied import HEADER, PartState
from shared.errors import StateUnavailable
from shared.state import open_state_store
from shared.state.port import Lookup, Record
from shared.state.sqlite import SqliteStateStore
from tests.integration.state.conftest import Backend
from tests.support.postgres import private_database
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

RECORD = Record("m", "doc", {HEADER: PartState(1, None, "d")})


def record(i: int) -> Record:
    return Record(f"m{i}", f"doc{i}", {HEADER: PartState(i, None, f"d{i}")})


async def test_a_file_locked_past_the_busy_timeout_is_retryable(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}?timeout=0.2"
    store = await SqliteStateStore.open(url)
    other = sqlite3.connect(store.path, isolation_level=None)  # another process, in effect
    try:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StateUnavailable, match="locked"):
            await store.record_applied("r", RECORD)
        with pytest.raises(StateUnavailable):
            await store.set_cursor("s", "x")
        assert store.not_ready_reason() is not None
        assert await store.get_cursor("s") is None, "readers are not blocked in WAL mode"
        other.execute("ROLLBACK")
        assert await store.record_applied("r", RECORD)
        assert store.not_ready_reason() is None
    finally:
        other.close()
        await store.close()


async def test_a_cut_postgres_connection_is_retryable_and_heals() -> None:
    async with private_database("orderbridge_cut") as url:
        parts = urlsplit(url)
        proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{proxy.port}"))
        store = await open_state_store(proxied)
        try:
            await store.set_cursor("s", "before")
            await proxy.cut()
            with pytest.raises(StateUnavailable):
                await store.record_applied("r", RECORD)
            with pytest.raises(StateUnavailable):
                await store.get_cursor("s")
            reason = store.not_ready_reason()
            assert reason is not None and "PostgreSQL" in reason
            await proxy.restore()
            assert await store.get_cursor("s") == "before", "the pool reconnects"
            assert await store.record_applied("r", RECORD), "nothing was half-done"
            assert store.not_ready_reason() is None
        finally:
            await store.close()
            await proxy.cut()


async def test_opening_waits_for_a_database_that_comes_up() -> None:
    async with private_database("orderbridge_wait") as url:
        parts = urlsplit(url)
        proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432).start()
        port = proxy.port
        await proxy.cut()  # nothing listens: connection refused
        proxied = urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))
        with pytest.raises(StateUnavailable, match="cannot reach"):
            await open_state_store(proxied)
        opening = asyncio.create_task(open_state_store(proxied, wait_seconds=20))
        await asyncio.sleep(0.5)
        assert not opening.done()
        await proxy.restore()
        store = await asyncio.wait_for(opening, 20)
        await store.close()
        await proxy.cut()


async def test_cancelled_callers_leave_whole_records_and_a_usable_store(
    durable_backend: Backend,
) -> None:
    store = await durable_backend.open()
    tasks = [asyncio.create_task(store.record_applied("r", record(i))) for i in range(40)]
    await asyncio.sleep(0.005)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for i in range(40):
        ((delivered, _),) = await store.lookup("r", [Lookup(f"m{i}", "x")])
        assert delivered == (await store.applied_document("r", f"doc{i}") is not None), (
            f"event {i} half recorded"
        )
        assert await store.record_applied("r", record(i)) != delivered
