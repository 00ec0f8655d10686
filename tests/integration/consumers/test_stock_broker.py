"""Routes on the broker a user already has: no consistent-hash plugin, or an exchange of the
other layout left from an earlier start."""

from __future__ import annotations

import json
import shutil
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
