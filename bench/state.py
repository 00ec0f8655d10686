"""The state store's ``record_applied``: what one consumed event costs in each backend.

Each event records its webhook delivery and 11 parts (the header and 10 lines:
version, stamp, content digest), after reading the document's recorded parts
and deciding again, as a consumer does after each applied event.
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
import itertools
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench import _common
from shared.applied import HEADER, PartState
from shared.state.port import Record, StateStore
from shared.state.postgres import PostgresStateStore
from shared.state.sqlite import SqliteStateStore
from tests.support.postgres import private_database

EVENTS = 1_500
ROUNDS = 3
CONCURRENCY = 16
T0 = datetime(2026, 1, 1, tzinfo=UTC)
LINES = {str(n): T0 + timedelta(seconds=n) for n in range(10)}


_VERSIONS = itertools.count(1)


def event(round_: int, i: int) -> Record:
    """Event ``i`` of ``round_``: a newer version of one of 200 documents, every part news."""
    version = next(_VERSIONS)
    parts = {
        part: PartState(version, stamp, f"{part}-{version}")
        for part, stamp in {HEADER: T0, **LINES}.items()
    }
    return Record(f"msg-{round_}-{i}", f"src:order:d{i % 200}", parts)


async def store_rate(store: StateStore, round_: int, concurrency: int) -> float:
    slots = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        record = event(round_, i)
        async with slots:
            assert await store.record_applied("bench", record)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(EVENTS)))
    return EVENTS / (time.perf_counter() - started)


def bare_sqlite_rate(path: Path, synchronous: str, round_: int) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    started = time.perf_counter()
    for i in range(EVENTS):
        record = event(round_, i)
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "INSERT INTO orderbridge_deliveries (route, delivery) VALUES ('bare', ?) "
            "ON CONFLICT DO NOTHING",
            (record.delivery,),
        )
        assert cur.rowcount == 1
        conn.execute(
            "SELECT part, version, stamp, digest FROM orderbridge_applied_parts "
            "WHERE route = 'bare' AND document = ?",
            (record.document,),
        ).fetchall()
        conn.executemany(
            "INSERT INTO orderbridge_applied_parts (route, document, part, version, stamp, digest) "
            "VALUES ('bare', ?, ?, ?, ?, ?) ON CONFLICT (route, document, part) DO UPDATE "
            "SET version = excluded.version, stamp = excluded.stamp, digest = excluded.digest",
            [
                (
                    record.document,
                    part,
                    state.version,
                    (state.stamp - T0) // timedelta(microseconds=1) if state.stamp else None,
                    state.digest,
                )
                for part, state in record.parts.items()
            ],
        )
        conn.execute("COMMIT")
    rate = EVENTS / (time.perf_counter() - started)
    conn.close()
    return rate


async def bare_postgres_rate(url: str, round_: int) -> float:
    conn = await asyncpg.connect(url)
    started = time.perf_counter()
    for i in range(EVENTS):
        record = event(round_, i)
        names = list(record.parts)
        async with conn.transaction():
            status = await conn.execute(
                "INSERT INTO orderbridge_deliveries (route, delivery) VALUES ('bare', $1) "
                "ON CONFLICT DO NOTHING",
                record.delivery,
            )
            assert status.endswith(" 1")
            await conn.fetch(
                "SELECT part, version, stamp, digest FROM orderbridge_applied_parts "
                "WHERE route = 'bare' AND document = $1",
                record.document,
            )
            await conn.execute(
                "INSERT INTO orderbridge_applied_parts "
                "(route, document, part, version, stamp, digest) "
                "SELECT 'bare', $1, p, v, s, d "
                "FROM unnest($2::text[], $3::bigint[], $4::timestamptz[], $5::text[]) "
                "AS t (p, v, s, d) ON CONFLICT (route, document, part) DO UPDATE "
                "SET version = excluded.version, stamp = excluded.stamp, digest = excluded.digest",
                record.document,
                names,
                [record.parts[n].version for n in names],
                [record.parts[n].stamp for n in names],
                [record.parts[n].digest for n in names],
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
