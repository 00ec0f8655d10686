"""Routes on the broker a user already has: no consistent-hash plugin, or an exchange of the
other layout left from an earlier start."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from aio_pika.exceptions import ChannelClosed
from pydantic import SecretStr

from services.consumers import dlq
from services.consumers.adapters import create_adapter
from services.consumers.declare import declare_route, reshard_route
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from services.consumers.topology import RouteLayout, route_exchange, shard_queue
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.errors import ConfigurationError
from shared.local_rabbit import LocalRabbit, installed
from shared.metrics import new_registry
from shared.settings import BrokerSettings
from shared.state import open_state_store
from tests.support.consumers import make_route, outcomes, running, sqlite_state
from tests.support.events import order_event

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stock_settings(stock_amqp_url: str) -> BrokerSettings:
    return BrokerSettings(amqp_url=SecretStr(stock_amqp_url), publish_timeout_seconds=3.0)


@pytest.fixture
async def stock_connection(
    stock_settings: BrokerSettings,
) -> AsyncIterator[AbstractRobustConnection]:
    conn = await connect(stock_settings, name="tests-stock", wait_seconds=10)
    await declare_topology(conn, stock_settings.topology())
    yield conn
    await conn.close()


def inbox(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(p.read_bytes()) for p in sorted(path.glob("*.json"))]


async def exists(connection: AbstractRobustConnection, queue: str) -> bool:
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue, passive=True)
    except ChannelClosed:
        return False
    if not channel.is_closed:
        await channel.close()
    return True


async def test_a_route_runs_on_one_shard_without_the_plugin_and_replays_reach_it(
    stock_connection: AbstractRobustConnection, stock_settings: BrokerSettings, tmp_path: Path
) -> None:
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")}, shards=3)
    events = [order_event(), order_event()]
    newer = order_event(document_id=events[0].document_id, version=2)
    publisher = await RabbitPublisher.open(stock_connection, stock_settings)
    try:
        async with (
            sqlite_state(tmp_path) as state,
            running(route, stock_connection, stock_settings, state) as (runner, metrics),
        ):
            await publisher.publish_many([*events, newer])
            await runner.drain(quiet_for=0.5)
            assert outcomes(metrics, route.name) == {"applied": 3}
            assert await exists(stock_connection, shard_queue(route.name, 0))
            assert not await exists(stock_connection, shard_queue(route.name, 1))
            # A replay (or a retry queue) publishes to the route exchange: it still arrives.
            channel = await stock_connection.channel()
            exchange = await channel.get_exchange(route_exchange(route.name), ensure=False)
            await exchange.publish(aio_pika.Message(b"{", headers={"document_id": "d"}), "x")
            await channel.close()
            await runner.drain(quiet_for=0.5)
            letters = await dlq.list_dead_letters(stock_connection, route.name)
            assert [letter.reason for letter in letters] == ["invalid"]
    finally:
        await publisher.close()
    versions = {(f["document_id"], f["version"]) for f in inbox(tmp_path / "inbox")}
    assert (events[0].document_id, 2) in versions and len(versions) == 3


async def test_an_exchange_made_by_hand_with_another_type_is_named_not_a_crash_loop(
    stock_connection: AbstractRobustConnection, stock_settings: BrokerSettings, tmp_path: Path
) -> None:
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")})
    channel = await stock_connection.channel()
    await channel.declare_exchange(route_exchange(route.name), type="topic", auto_delete=True)
    adapter = create_adapter(route.adapter.type, route.adapter.options())
    state = await open_state_store("memory://")
    runner = RouteRunner(
        route,
        connection=stock_connection,
        broker=stock_settings,
        state=state,
        adapter=adapter,
        metrics=ConsumerMetrics(new_registry()),
    )
    with pytest.raises(ConfigurationError, match="already exists as a topic exchange") as raised:
        await runner.start()
    assert "\n" not in str(raised.value)
    await runner.stop()
    await adapter.close()
    await state.close()
    await channel.close()


async def test_a_route_created_without_the_plugin_keeps_its_fanout_exchange_once_it_is_on(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
) -> None:
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")}, shards=4)
    channel = await connection.channel()
    # what a consumer on a stock broker left behind, before the plugin was enabled
    await channel.declare_exchange(route_exchange(route.name), type="fanout", durable=True)
    await channel.close()
    event = order_event()
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await publisher.publish(event)
        await runner.drain(quiet_for=0.5)
        assert outcomes(metrics, route.name) == {"applied": 1}
        assert not await exists(connection, shard_queue(route.name, 1))
    assert [f["event_id"] for f in inbox(tmp_path / "inbox")] == [event.event_id]


async def test_reshard_moves_a_plain_route_to_its_shards_once_it_is_idle(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
) -> None:
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")}, shards=3)
    # as a consumer on a stock broker declared it
    assert await declare_route(connection, route, consistent_hash=False) == RouteLayout("fanout", 1)
    with pytest.raises(ConfigurationError, match="rabbitmq-plugins enable"):
        await reshard_route(connection, route, consistent_hash=False)
    first = order_event()
    await publisher.publish(first)
    with pytest.raises(ConfigurationError, match=r"1 message\(s\) wait.*--drain"):
        await reshard_route(connection, route, consistent_hash=True)
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await runner.drain(quiet_for=0.5)
        with pytest.raises(ConfigurationError, match="still read"):
            await reshard_route(connection, route, consistent_hash=True)
    assert await reshard_route(connection, route, consistent_hash=True) is True
    assert await reshard_route(connection, route, consistent_hash=True) is False
    assert await exists(connection, shard_queue(route.name, 2))
    later = [order_event() for _ in range(6)]
    await publisher.publish_many(later)
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await runner.drain(quiet_for=0.5)
        assert outcomes(metrics, route.name) == {"applied": 6}
    applied = {f["event_id"] for f in inbox(tmp_path / "inbox")}
    assert applied == {event.event_id for event in [first, *later]}


@pytest.mark.skipif(not installed(), reason="rabbitmq-server is not installed here")
async def test_a_sharded_route_on_a_broker_that_lost_the_plugin_says_to_enable_it_again(
    tmp_path: Path,
) -> None:
    directory = Path(tempfile.mkdtemp(prefix="orderbridge-plugin-off-", dir="/tmp"))
    name = f"off{uuid.uuid4().hex[:6]}"
    node = LocalRabbit(directory, port=5693, name=name)
    node.start()
    try:
        route = make_route({"type": "file", "path": str(tmp_path / "inbox")})
        settings = BrokerSettings(amqp_url=SecretStr(node.url))
        conn = await connect(settings, name="tests", wait_seconds=10)
        await declare_topology(conn, settings.topology())
        assert (await declare_route(conn, route, consistent_hash=True)).hashed
        await conn.close()
        node.stop()
        node = LocalRabbit(directory, port=5693, name=name, plugins=())  # plugin disabled
        node.start()
        conn = await connect(settings, name="tests", wait_seconds=10)
        try:
            with pytest.raises(ConfigurationError, match="no longer has the plugin") as raised:
                await declare_route(conn, route, consistent_hash=False)
            assert "rabbitmq-plugins enable" in str(raised.value)
            assert "\n" not in str(raised.value)
        finally:
            await conn.close()
    finally:
        node.stop()
        shutil.rmtree(directory, ignore_errors=True)


def consumer_process(
    amqp_url: str, tmp_path: Path, route_name: str, *extra: str
) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "routes.toml"
    config.write_text(
        f'[[routes]]\nname = "{route_name}"\nbindings = ["tradecloud.order.#"]\nshards = 4\n'
        f'[routes.adapter]\ntype = "file"\npath = "{tmp_path / "inbox"}"\n'
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")},
        "ORDERBRIDGE_AMQP_URL": amqp_url,
        "ORDERBRIDGE_METRICS_PORT": "0",
        "ORDERBRIDGE_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "ORDERBRIDGE_LOG_FORMAT": "console",
    }
    argv = [sys.executable, "-m", "services.cli", "consumer", "--config", str(config), *extra]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


async def test_the_consumer_command_drains_on_a_stock_broker_with_one_warning(
    stock_connection: AbstractRobustConnection, stock_settings: BrokerSettings, tmp_path: Path
) -> None:
    route_name = f"cli-{uuid.uuid4().hex[:8]}"
    # the route's queues exist once the consumer ran; publish, then drain
    first = await asyncio.to_thread(
        consumer_process,
        stock_settings.amqp_url.get_secret_value(),
        tmp_path,
        route_name,
        "--drain",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    event = order_event()
    publisher = await RabbitPublisher.open(stock_connection, stock_settings)
    await publisher.publish(event)
    await publisher.close()
    done = await asyncio.to_thread(
        consumer_process,
        stock_settings.amqp_url.get_secret_value(),
        tmp_path,
        route_name,
        "--drain",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    warnings = [line for line in output.splitlines() if "no consistent-hash exchange" in line]
    assert len(warnings) == 1, output[-3000:]
    assert f"{route_name} (4)" in warnings[0]
    assert "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in warnings[0]
    assert "Traceback" not in output and "COMMAND_INVALID" not in output
    assert [f["event_id"] for f in inbox(tmp_path / "inbox")] == [event.event_id]


async def test_the_consumer_command_names_a_foreign_exchange_in_one_line(
    stock_connection: AbstractRobustConnection, stock_settings: BrokerSettings, tmp_path: Path
) -> None:
    route_name = f"cli-{uuid.uuid4().hex[:8]}"
    channel = await stock_connection.channel()
    await channel.declare_exchange(route_exchange(route_name), type="direct", auto_delete=True)
    done = await asyncio.to_thread(
        consumer_process,
        stock_settings.amqp_url.get_secret_value(),
        tmp_path,
        route_name,
        "--drain",
    )
    await channel.close()
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    (line,) = [line for line in done.stderr.splitlines() if "already exists" in line]
    assert "direct exchange" in line and route_name in line
