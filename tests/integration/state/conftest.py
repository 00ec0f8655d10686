"""One state-store contract, three backends: memory, SQLite (a temporary file) and
PostgreSQL (a private database on the real server).

``backend`` opens stores of one kind; tests that need durability or several
processes use ``durable_backend`` (SQLite and PostgreSQL only). Lease expiry
runs on a fake clock for memory and SQLite and on the database clock (real
time, short TTLs) for PostgreSQL, the only honest way to test ``now()``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import asyncpg
import pytest

from shared.state import open_state_store
from shared.state.memory import MemoryStateStore
from shared.state.port import StateStore
from shared.state.sqlite import SqliteStateStore, parse_sqlite_url
from shared.testing import FakeClock
from tests.support.postgres import private_database

REPO = Path(__file__).resolve().parents[3]

Kind = Literal["memory", "sqlite", "postgres"]

TABLES = (
    "orderbridge_cursors",
    "orderbridge_tokens",
    "orderbridge_leases",
    "orderbridge_deliveries",
    "orderbridge_applied_parts",
)


@dataclass
class Backend:
    kind: Kind
    url: str
    clock: FakeClock | None = None
    memory: MemoryStateStore | None = None
    opened: list[StateStore] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    async def open(self) -> StateStore:
        """Another handle on the same state (memory: the one in-process store)."""
        if self.memory is not None:
            return self.memory
        store: StateStore
        if self.kind == "sqlite":
            store = await SqliteStateStore.open(self.url, clock=self.clock or FakeClock())
        else:
            store = await open_state_store(self.url)
        self.opened.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        """Let lease time pass: the fake clock jumps, the database clock is waited for."""
        if self.clock is not None:
            await self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    async def ledger(self) -> list[int]:
        """Versions recorded in ``orderbridge_schema_migrations``, one row each."""
        if self.kind == "sqlite":
            path = parse_sqlite_url(self.url).path
            with sqlite3.connect(path) as lite:
                rows = lite.execute(
                    "SELECT version FROM orderbridge_schema_migrations ORDER BY version"
                ).fetchall()
            return [int(row[0]) for row in rows]
        conn = await asyncpg.connect(self.url)
        try:
            records = await conn.fetch(
                "SELECT version FROM orderbridge_schema_migrations ORDER BY version"
            )
        finally:
            await conn.close()
        return [int(record["version"]) for record in records]

    async def execute(self, sql: str) -> None:
        """Run raw SQL against the backing database (to simulate other releases)."""
        if self.kind == "sqlite":
            with sqlite3.connect(parse_sqlite_url(self.url).path) as lite:
                lite.execute(sql)
            return
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def close(self) -> None:
        for store in self.opened:
            await store.close()
        self.opened.clear()


@pytest.fixture(scope="session")
async def pg_url() -> AsyncIterator[str]:
    """One private database for the session; tests start from empty tables."""
    async with private_database("orderbridge_state") as url:
        store = await open_state_store(url)  # migrate once
        await store.close()
        yield url


async def _backend(kind: Kind, tmp_path: Path, pg_url: str) -> Backend:
    if kind == "memory":
        clock = FakeClock()
        return Backend(kind, "memory://", clock=clock, memory=MemoryStateStore(clock=clock))
    if kind == "sqlite":
        return Backend(kind, f"sqlite:///{tmp_path / 'state.db'}", clock=FakeClock())
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(TABLES)}")
    finally:
        await conn.close()
    return Backend(kind, pg_url)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def backend(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> AsyncIterator[Backend]:
    b = await _backend(request.param, tmp_path, pg_url)
    yield b
    await b.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def durable_backend(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str
) -> AsyncIterator[Backend]:
    b = await _backend(request.param, tmp_path, pg_url)
    yield b
    await b.close()


@pytest.fixture(params=["sqlite", "postgres"])
async def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A state URL whose database does not exist yet (SQLite) or is empty (PostgreSQL)."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh' / 'state.db'}"
        return
    async with private_database("orderbridge_fresh") as url:
        yield url


@pytest.fixture
async def store(backend: Backend) -> StateStore:
    return await backend.open()


Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]


@pytest.fixture
async def spawn_worker() -> AsyncIterator[Spawn]:
    """Start ``python -m tests.support.state_worker URL ARGS…`` from the repository root;
    workers still running at the end of the test are killed and reaped."""
    started: list[asyncio.subprocess.Process] = []

    async def spawn(url: str, *args: str) -> asyncio.subprocess.Process:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.state_worker",
            url,
            *args,
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        started.append(process)
        return process

    yield spawn
    for process in started:
        if process.returncode is None:
            process.kill()
        await process.communicate()


async def read_line(process: asyncio.subprocess.Process) -> str:
    """The worker's next stdout line; its stderr in the failure if it died first."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    if not line:
        assert process.stderr is not None
        err = await process.stderr.read()
        raise AssertionError(f"worker exited ({await process.wait()}): {err.decode()[-2000:]}")
    return line.decode().strip()
