"""The state store's ``record_applied``: what one consumed event costs in each backend.

Each event records two keys (idempotency key, message id), one document
version and 10 line stamps, as a consumer does after each applied event.
Measured one at a time (``_seq``) and 16 at a time (``_x16``, a route with a
prefetch). The baseline is the same transaction hand-written on the bare
driver in the same run, one event after another (``sqlite3`` in the calling
thread, blocking the event loop, with the same ``synchronous`` setting; one
bare ``asyncpg`` connection).

Headline: SQLite with ``synchronous=full`` (the default) at 16 in flight,
where group commit shares one fsync among the events queued together;
target >= 1.0x the bare loop. One at a time the store pays aiosqlite's thread
hop (about 100 us here), which any store that keeps the event loop free pays.

    python -m bench.state
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench import _common
from shared.state.port import StateStore
from shared.state.postgres import PostgresStateStore
from shared.state.sqlite import SqliteStateStore
from tests.support.postgres import private_database

EVENTS = 1_500
ROUNDS = 3
CONCURRENCY = 16
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LINES = {str(n): T0 + timedelta(seconds=n) for n in range(10)}


def event(round_: int, i: int) -> tuple[list[str], str]:
    return [f"src:order:d{i}:v{round_}", f"msg-{round_}-{i}"], f"src:order:d{i % 200}"


async def store_rate(store: StateStore, round_: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        keys, document = event(round_, i)
        async with slots:
            assert await store.record_applied("bench", keys, document, round_, LINES)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(EVENTS)))
    return EVENTS / (time.perf_counter() - started)


def bare_sqlite_rate(path: Path, synchronous: str, round_: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    stamps = [(line, (stamp - T0) // timedelta(microseconds=1)) for line, stamp in LINES.items()]
    started = time.perf_counter()
    for i in range(EVENTS):
        keys, document = event(round_, i)
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.executemany(
            "INSERT INTO orderbridge_processed (route, key) VALUES ('bare', ?) "
            "ON CONFLICT DO NOTHING",
            [(key,) for key in keys],
        )
        assert cur.rowcount == len(keys)
        conn.execute(
            "INSERT INTO orderbridge_documents (route, document, version) VALUES ('bare', ?, ?) "
            "ON CONFLICT (route, document) DO UPDATE SET version = max(version, excluded.version)",
            (document, round_),
        )
        conn.executemany(
            "INSERT INTO orderbridge_document_lines (route, document, line, stamp) "
            "VALUES ('bare', ?, ?, ?) ON CONFLICT (route, document, line) DO UPDATE "
            "SET stamp = excluded.stamp WHERE excluded.stamp > stamp",
            [(document, line, stamp) for line, stamp in stamps],
        )
        conn.execute("COMMIT")
    rate = EVENTS / (time.perf_counter() - started)
    conn.close()
    return rate


async def bare_postgres_rate(url: str, round_: int) -> float:
    conn = await asyncpg.connect(url)
    names, stamps = list(LINES), list(LINES.values())
    started = time.perf_counter()
    for i in range(EVENTS):
        keys, document = event(round_, i)
        async with conn.transaction():
            status = await conn.execute(
                "INSERT INTO orderbridge_processed (route, key) "
                "SELECT 'bare', k FROM unnest($1::text[]) AS k ON CONFLICT DO NOTHING",
                keys,
            )
            assert status.endswith(" 2")
            await conn.execute(
                "INSERT INTO orderbridge_documents (route, document, version) "
                "VALUES ('bare', $1, $2) ON CONFLICT (route, document) DO UPDATE "
                "SET version = GREATEST(orderbridge_documents.version, excluded.version)",
                document,
                round_,
            )
            await conn.execute(
                "INSERT INTO orderbridge_document_lines (route, document, line, stamp) "
                "SELECT 'bare', $1, l, s FROM unnest($2::text[], $3::timestamptz[]) AS t (l, s) "
                "ON CONFLICT (route, document, line) DO UPDATE SET stamp = excluded.stamp "
                "WHERE orderbridge_document_lines.stamp < excluded.stamp",
                document,
                names,
                stamps,
            )
    rate = EVENTS / (time.perf_counter() - started)
    await conn.close()
    return rate


async def best(runs: Callable[[int], Awaitable[float]]) -> float:
    return max([await runs(round_) for round_ in range(ROUNDS)])


async def main() -> None:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for synchronous in ("full", "normal"):
            path = Path(tmp) / f"{synchronous}.db"
            store = await SqliteStateStore.open(f"sqlite:///{path}?synchronous={synchronous}")
            for round_ in range(ROUNDS):  # alternate to share the machine's noise
                for key, rate in (
                    (f"sqlite_{synchronous}_bare", bare_sqlite_rate(path, synchronous, round_)),
                    (f"sqlite_{synchronous}_seq", await store_rate(store, round_, 1)),
                    (
                        f"sqlite_{synchronous}_x{CONCURRENCY}",
                        await store_rate(store, round_ + 100, CONCURRENCY),
                    ),
                ):
                    results[key] = max(results.get(key, 0.0), rate)
            await store.close()
            _common.note(f"sqlite {synchronous}: " + str({k: round(v) for k, v in results.items()}))
    async with private_database("orderbridge_bench") as url:
        pg = await PostgresStateStore.open(url)
        for round_ in range(ROUNDS):
            for key, rate in (
                ("postgres_bare", await bare_postgres_rate(url, round_)),
                ("postgres_seq", await store_rate(pg, round_, 1)),
                (f"postgres_x{CONCURRENCY}", await store_rate(pg, round_ + 100, CONCURRENCY)),
            ):
                results[key] = max(results.get(key, 0.0), rate)
        await pg.close()
    _common.note(str({k: round(v) for k, v in results.items()}))
    _common.report(
        "state",
        value=results[f"sqlite_full_x{CONCURRENCY}"],
        unit="events/s",
        baseline=results["sqlite_full_bare"],
        ratio=results[f"sqlite_full_x{CONCURRENCY}"] / results["sqlite_full_bare"],
        target=">= 1.0",
        events=EVENTS,
        lines_per_event=len(LINES),
        **{key: round(value) for key, value in results.items()},
    )


if __name__ == "__main__":
    asyncio.run(main())
