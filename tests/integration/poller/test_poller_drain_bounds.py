"""The poller's drain against the Tradecloud simulator over HTTP and the real RabbitMQ.

Hazards of paging a poll backlog: answers without ``total`` (a full page is
not the last one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.poller.__main__ import serve
from services.poller.settings import PollerSettings
from services.simulators.tradecloud.app import TradecloudSimulator
from services.simulators.tradecloud.world import iso_ms
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
