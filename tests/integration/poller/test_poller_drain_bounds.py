"""The poller's drain against the Tradecloud simulator over HTTP and the real RabbitMQ.

Two hazards of paging a poll backlog: answers without ``total`` (a full page
is not the last one), and a big backlog under steady change traffic (paging
restarted under the cursor on every shift never ends; re-anchoring does).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.poller.__main__ import build_streams, serve
from services.poller.drain import drain
from services.poller.settings import PollerSettings
from services.simulators.tradecloud.app import TradecloudSimulator
from services.simulators.tradecloud.world import iso_ms, parse_ms
from shared.broker.publisher import RabbitPublisher
from shared.clients.tradecloud import TradecloudClient
from shared.settings import BrokerSettings, StateSettings
from shared.state.sqlite import SqliteStateStore
from tests.support.pulling import Collected
from tests.support.simulators import running_tradecloud

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

START = "2020-01-01T00:00:00.000Z"


def poller_settings() -> PollerSettings:
    return PollerSettings(
        tradecloud_role="buyer",
        poll_start=START,
        poll_interval_seconds=0.3,
        poll_lease_seconds=3.0,
        metrics_port=0,
    )


@pytest.fixture
async def collected(connection: AbstractRobustConnection) -> AsyncIterator[Collected]:
    async with Collected.open(connection, "tradecloud.#") as events:
        yield events


def final_versions(simulator: TradecloudSimulator, newer_than_ms: int = -1) -> dict[str, int]:
    """Each order's version now (only orders updated after ``newer_than_ms``)."""
    return {
        order.id: order.version
        for order in simulator.world.orders.values()
        if order.updated_ms > newer_than_ms
    }


def arrived(collected: Collected, wanted: dict[str, int]) -> bool:
    """Whether the newest published version of every order in ``wanted`` is the wanted one."""
    latest = collected.latest_versions("order")
    return all(latest.get(order_id) == version for order_id, version in wanted.items())


async def test_answers_without_total_still_drain_the_whole_backlog(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    db = tmp_path / "state.db"
    state = StateSettings(state_url=SecretStr(f"sqlite:///{db}"))
    # 450 orders: five pages, and a run of five same-millisecond orders across every
    # page boundary. No answer says how many there are.
    async with running_tradecloud(orders=450, rate_limit=1000) as tradecloud:
        sim = tradecloud.simulator
        sim.omit_total = True
        settings = tradecloud.client_settings(tradecloud_requests_per_second=1000)
        status = await serve(
            poller_settings(),
            once=True,
            names=["orders"],
            broker=broker_settings,
            state=state,
            tradecloud=settings,
        )
        assert status == 0
        assert sim.polls_without_total == 5  # offsets 0, 99, 198, 297, 396
        wanted = final_versions(sim)
        await collected.until(lambda _: arrived(collected, wanted), within=15)
        assert len([e for e in collected.events if e.kind == "order"]) == 450
        store = await SqliteStateStore.open(f"sqlite:///{db}")
        try:
            newest = max(order.updated_ms for order in sim.world.orders.values())
            assert await store.get_cursor("tradecloud.orders") == iso_ms(newest)
        finally:
            await store.close()


class Quarantined:
    def __init__(self) -> None:
        self.items: list[tuple[Any, str, str]] = []

    async def put(self, document: Any, reason: str, *, kind: str) -> None:
        self.items.append((document, reason, kind))


async def update_read_orders(
    sim: TradecloudSimulator,
    collected: Collected,
    per_second: float,
    stop: asyncio.Event,
    updated: list[str],
) -> None:
    """About ``per_second`` order updates a second until ``stop``, mostly of orders read.

    Half of them change an order among the last ones published (what a run of
    offset pages just read: each shifts it), the other half any order published
    so far; before anything was published, any order. Paced by the clock, not
    by the gaps: a drain busy normalizing does not slow the traffic down.
    """
    rng = random.Random(5)
    world = sim.world
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while not stop.is_set():
        events = collected.events
        pool = events[-200:] if rng.random() < 0.5 else events
        candidates = [rng.choice(pool).document_id for _ in range(10)] if pool else []
        movable = [order_id for order_id in candidates if world.can_move(world.orders[order_id])]
        change = sim.advance(movable[0] if movable else None)
        if change is not None:
            updated.append(change.document_id)
        next_at += 1.0 / per_second
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(next_at - loop.time(), 0.0))


async def test_a_big_backlog_under_steady_updates_drains_in_bounded_time_and_skips_nothing(
    publisher: RabbitPublisher, collected: Collected
) -> None:
    n, rate, per_second = 5000, 10.0, 5.0
    quiet_pages = math.ceil((n - 1) / 99)  # 51: 100 a page, each overlapping the last by one
    # Paging restarted under the cursor never finishes here; re-anchored, the drain
    # costs about a quiet drain's requests (1 s = 10 requests at Tradecloud's limit).
    deadline = 2 * quiet_pages / rate + 15.0
    async with running_tradecloud(orders=n, rate_limit=rate) as tradecloud:
        sim = tradecloud.simulator
        settings = tradecloud.client_settings(tradecloud_requests_per_second=rate)
        async with TradecloudClient(settings) as client:
            [stream] = build_streams(poller_settings(), client, ["orders"])
            commits: list[str] = []

            async def commit(cursor: str) -> None:
                commits.append(cursor)

            stop, updated = asyncio.Event(), list[str]()
            churn = asyncio.create_task(
                update_read_orders(sim, collected, per_second, stop, updated)
            )
            started = time.monotonic()
            try:
                async with asyncio.timeout(deadline):
                    result = await drain(
                        stream, START, sink=publisher, commit=commit, quarantine=Quarantined()
                    )
            finally:
                stop.set()
                await churn
            elapsed = time.monotonic() - started

            assert result.drained and elapsed < deadline
            assert len(updated) >= 10 and result.restarts >= 1, "the backlog never shifted"
            # The first page, the page that showed the shift, then pages by anchor reading
            # at least 95 new orders each (a tie group of at most five is re-read) while
            # the updates join the end of the backlog.
            bound = 3 + math.ceil((n + len(updated)) / 95)
            assert result.requests <= bound < 2 * quiet_pages, (result.requests, bound)
            assert commits == [result.cursor_after]  # one commit, once drained

            # Every order stamped up to the committed cursor arrived in its newest state.
            drained_to = parse_ms(result.cursor_after)
            wanted = final_versions(sim)
            done = {k: v for k, v in wanted.items() if sim.world.orders[k].updated_ms <= drained_to}
            await collected.until(lambda _: arrived(collected, done), within=20)
            # The rest changed after the last answer: the next (quiet) drain brings them.
            later = await drain(
                stream, result.cursor_after, sink=publisher, commit=commit, quarantine=Quarantined()
            )
            assert later.drained and later.restarts == 0
            await collected.until(lambda _: arrived(collected, wanted), within=20)
        pairs = [(e.document_id, e.version) for e in collected.events if e.kind == "order"]
        assert len(pairs) == len(set(pairs)), "an order state was published twice"
