"""The poller against the Tradecloud simulator, the real RabbitMQ and a real state store."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.poller.__main__ import serve
from services.poller.settings import PollerSettings
from services.simulators.faults import Fault
from services.simulators.tradecloud.world import iso_ms
from shared import exit_codes
from shared.clients.tradecloud import TradecloudClient
from shared.normalize.tradecloud import normalize_order_webhook, normalize_polled_order
from shared.settings import BrokerSettings, StateSettings
from shared.state.sqlite import SqliteStateStore
from tests.support.pulling import Collected, finish, start_service
from tests.support.simulators import PASSWORD, USERNAME, RunningTradecloud, running_tradecloud

pytestmark = pytest.mark.timeout(120)

START = "2020-01-01T00:00:00.000Z"


def poller_settings(**overrides: object) -> PollerSettings:
    values: dict[str, object] = {
        "tradecloud_role": "buyer",
        "poll_start": START,
        "poll_interval_seconds": 0.3,
        "poll_lease_seconds": 3.0,
        "metrics_port": 0,
    }
    values.update(overrides)
    return PollerSettings(**values)  # type: ignore[arg-type]


def poller_env(amqp_url: str, state_url: str, tradecloud: RunningTradecloud) -> dict[str, str]:
    return {
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_STATE_URL": state_url,
        "ORDERBRIDGE_TRADECLOUD_ROLE": "buyer",
        "ORDERBRIDGE_POLL_START": START,
        "ORDERBRIDGE_POLL_INTERVAL_SECONDS": "0.3",
        "ORDERBRIDGE_POLL_LEASE_SECONDS": "3",
        "ORDERBRIDGE_METRICS_PORT": "0",
        "ORDERBRIDGE_TRADECLOUD_API_URL": tradecloud.url,
        "ORDERBRIDGE_TRADECLOUD_USERNAME": USERNAME,
        "ORDERBRIDGE_TRADECLOUD_PASSWORD": PASSWORD,
        "ORDERBRIDGE_TRADECLOUD_REQUESTS_PER_SECOND": "1000",
        "ORDERBRIDGE_TRADECLOUD_BACKOFF_INITIAL_SECONDS": "0.05",
        "ORDERBRIDGE_TRADECLOUD_BACKOFF_MAX_SECONDS": "0.5",
    }


@pytest.fixture
async def collected(connection: AbstractRobustConnection) -> AsyncIterator[Collected]:
    async with Collected.open(connection, "tradecloud.#") as events:
        yield events


async def cursor(path: Path, stream: str = "tradecloud.orders") -> str | None:
    store = await SqliteStateStore.open(f"sqlite:///{path}")
    try:
        return await store.get_cursor(stream)
    finally:
        await store.close()


def assert_world_arrived(tradecloud: RunningTradecloud, collected: Collected) -> None:
    world = tradecloud.simulator.world
    assert collected.latest_versions("order") == {o.id: o.version for o in world.orders.values()}
    shipments = {e.document_id for e in collected.events if e.kind == "shipment"}
    assert shipments == set(world.shipments)


async def test_a_backlog_with_ties_arrives_whole_and_the_cursor_is_the_servers(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    state = StateSettings(state_url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}"))
    async with running_tradecloud(orders=450, rate_limit=1000) as tradecloud:
        settings = tradecloud.client_settings(tradecloud_requests_per_second=1000)
        status = await serve(
            poller_settings(), once=True, broker=broker_settings, state=state, tradecloud=settings
        )
        assert status == 0
        await collected.until(
            lambda events: len(events) >= 450 + len(tradecloud.simulator.world.shipments)
        )
        assert_world_arrived(tradecloud, collected)
        orders = [e for e in collected.events if e.kind == "order"]
        assert all(e.channel == "poll" and e.event_name is None for e in orders)
        assert len(orders) == 450  # no document twice
        newest = max(o.updated_ms for o in tradecloud.simulator.world.orders.values())
        assert await cursor(tmp_path / "state.db") == iso_ms(newest)

        # Nothing changed upstream: the next run publishes nothing and keeps the cursor.
        before = len(collected.events)
        assert (
            await serve(
                poller_settings(),
                once=True,
                broker=broker_settings,
                state=state,
                tradecloud=settings,
            )
            == 0
        )
        await asyncio.sleep(0.3)
        assert len(await collected.take()) == before
        assert await cursor(tmp_path / "state.db") == iso_ms(newest)


async def test_expired_tokens_a_429_storm_and_5xx_mid_backlog_lose_nothing(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    state = StateSettings(state_url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}"))
    async with running_tradecloud(orders=350, rate_limit=1000) as tradecloud:
        sim = tradecloud.simulator
        sim.inject(Fault("status", path="/v2/order-search/poll", count=1, status=502))
        sim.inject(Fault("expire_tokens", path="/v2/order-search/poll"))
        sim.inject(
            Fault("status", path="/v2/order-search/poll", count=6, status=429, retry_after=0.1)
        )
        sim.inject(Fault("reset", path="/v2/order-search/poll"))
        sim.inject(Fault("status", path="/v2/shipment/poll", count=3, status=503))
        settings = tradecloud.client_settings(tradecloud_requests_per_second=1000)
        status = await serve(
            poller_settings(), once=True, broker=broker_settings, state=state, tradecloud=settings
        )
        assert status == 0
        await collected.until(lambda events: len(events) >= 350 + len(sim.world.shipments))
        assert_world_arrived(tradecloud, collected)


async def test_polled_order_and_webhook_of_the_same_version_share_the_idempotency_key() -> None:
    async with running_tradecloud(orders=5) as tradecloud:
        world = tradecloud.simulator.world
        change = tradecloud.simulator.advance()
        assert change is not None
        order = world.orders[change.document_id]
        now = datetime.now(UTC)
        webhook = normalize_order_webhook(world.webhook_body(change), received_at=now)
        polled = normalize_polled_order(
            world.order_document(order),
            received_at=now,
            role="buyer",
            echo_policy="own-open-requests",
        )
        assert webhook.version == polled.version == order.version
        assert webhook.idempotency_key == polled.idempotency_key
        assert webhook.event_id != polled.event_id  # two deliveries, one effect


async def test_sigkill_between_publish_and_commit_leaves_no_gap(
    tmp_path: Path, amqp_url: str, collected: Collected
) -> None:
    db = tmp_path / "state.db"
    async with running_tradecloud(orders=3000, rate_limit=1000) as tradecloud:
        env = poller_env(amqp_url, f"sqlite:///{db}", tradecloud)
        # 5 requests/s: the 30 pages would take about 6 s. Once 300 events are confirmed,
        # the next polls stall upstream, and the process is killed mid-backlog.
        slow = env | {"ORDERBRIDGE_TRADECLOUD_REQUESTS_PER_SECOND": "5"}
        process = await start_service("poller", "--once", "--stream", "orders", env=slow)
        deadline = asyncio.get_running_loop().time() + 60
        while await collected.arrived() < 300:
            assert process.returncode is None and asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        tradecloud.simulator.inject(
            Fault("delay", path="/v2/order-search/poll", count=1000, seconds=30)
        )
        await asyncio.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        status, _ = await finish(process)
        assert status == -signal.SIGKILL
        tradecloud.simulator.faults.clear()
        assert await cursor(db) is None, "the cursor moved before the backlog was drained"
        published_before_restart = len(await collected.take())
        assert published_before_restart < 3000

        for _ in range(40):  # the world moves on while the poller is down
            tradecloud.simulator.advance()
        status, stderr = await finish(
            await start_service("poller", "--once", "--stream", "orders", env=env)
        )
        assert status == 0, stderr[-2000:]
        world = tradecloud.simulator.world
        await collected.until(
            lambda _: (
                collected.latest_versions("order")
                == {o.id: o.version for o in world.orders.values()}
            ),
            within=30,
        )
        newest = max(o.updated_ms for o in world.orders.values())
        assert await cursor(db) == iso_ms(newest)


async def test_two_replicas_one_polls_and_the_other_takes_over_when_it_dies(
    tmp_path: Path, amqp_url: str, collected: Collected
) -> None:
    db = tmp_path / "state.db"
    async with running_tradecloud(orders=20, rate_limit=1000) as tradecloud:
        env = poller_env(amqp_url, f"sqlite:///{db}", tradecloud)
        replicas = [await start_service("poller", "--stream", "orders", env=env) for _ in range(2)]
        try:
            await collected.until(lambda events: len(events) >= 20, within=30)
            store = await SqliteStateStore.open(f"sqlite:///{db}")
            try:
                holder = await store.lease_holder("poller:tradecloud.orders")
                assert holder is not None
                active_pid = int(holder.split(":")[1])
                [active] = [p for p in replicas if p.pid == active_pid]
                [standby] = [p for p in replicas if p.pid != active_pid]
                active.send_signal(signal.SIGKILL)
                await active.wait()

                created = tradecloud.simulator.create_orders(5)
                await collected.until(
                    lambda events: set(created) <= {e.document_id for e in events}, within=30
                )
                holder = await store.lease_holder("poller:tradecloud.orders")
                assert holder is not None and int(holder.split(":")[1]) == standby.pid
            finally:
                await store.close()
            standby.send_signal(signal.SIGTERM)
            status, stderr = await finish(standby, within=20)
            assert status == 0, stderr[-2000:]
        finally:
            for process in replicas:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        orders = [e for e in collected.events if e.kind == "order"]
        # Each replica may publish a document once (a takeover re-polls from the cursor),
        # never in an endless loop.
        assert len(orders) <= 2 * 25


async def test_a_first_run_without_a_start_refuses_to_guess(tmp_path: Path, amqp_url: str) -> None:
    async with running_tradecloud(orders=1) as tradecloud:
        env = poller_env(amqp_url, f"sqlite:///{tmp_path / 's.db'}", tradecloud)
        del env["ORDERBRIDGE_POLL_START"]
        status, stderr = await finish(await start_service("poller", "--once", env=env))
        assert status == exit_codes.CONFIG
        assert "ORDERBRIDGE_POLL_START" in stderr


async def test_the_client_reports_each_kind_of_upstream_trouble() -> None:
    async with running_tradecloud(orders=3, rate_limit=1000) as tradecloud:
        sim = tradecloud.simulator
        sim.inject(
            Fault("status", path="/v2/order-search/poll", count=2, status=429, retry_after=0)
        )
        sim.inject(Fault("status", path="/v2/order-search/poll", count=1, status=503))
        sim.inject(Fault("reset", path="/v2/order-search/poll"))
        kinds: list[str] = []
        async with TradecloudClient(
            tradecloud.client_settings(tradecloud_requests_per_second=1000), on_trouble=kinds.append
        ) as client:
            page = await client.poll_orders(START)
        assert len(page.data) == 3
        assert sorted(kinds) == ["connection", "server_error", "throttled", "throttled"]
