"""``orderbridge replay``: archived events to one route, once, against the real RabbitMQ.

Each test has a vhost of its own, so the archive stream holds exactly the events
the test published (offsets from 0).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.consumers import dlq
from services.consumers.config import ConsumerConfig, load_config
from services.consumers.topology import shard_queue
from shared import exit_codes
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings
from tests.support.cli import cli_env, orderbridge
from tests.support.consumers import outcomes, running, sqlite_state
from tests.support.events import order_event
from tests.support.rabbit import private_vhost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUTES = """
[[routes]]
name = "erp"
bindings = ["tradecloud.#"]
shards = 2
retry_delays = [0.2]
[routes.adapter]
type = "file"
path = "{tmp}/erp"

[[routes]]
name = "other"
bindings = ["tradecloud.#"]
shards = 2
retry_delays = [0.2]
[routes.adapter]
type = "file"
path = "{tmp}/other"

[[routes]]
name = "confirmed-only"
bindings = ["tradecloud.order.#"]
shards = 2
retry_delays = [0.2]
[routes.filter]
event_names = ["OrderLinesConfirmedBySupplier"]
[routes.adapter]
type = "file"
path = "{tmp}/confirmed"

[[routes]]
name = "never-started"
bindings = ["#"]
[routes.adapter]
type = "file"
path = "{tmp}/never"
"""


@dataclass
class World:
    url: str
    broker: BrokerSettings
    connection: AbstractRobustConnection
    config: ConsumerConfig
    env: dict[str, str]
    tmp: Path

    async def publish(self, *events: CanonicalEvent) -> None:
        publisher = await RabbitPublisher.open(self.connection, self.broker)
        try:
            await publisher.publish_many(events)
        finally:
            await publisher.close()

    async def replay(self, *args: str) -> dict:  # type: ignore[type-arg]
        ran = await orderbridge("replay", *args, "--json", env=self.env)
        assert ran.code == 0, ran.stderr
        result: dict = json.loads(ran.stdout)  # type: ignore[type-arg]
        return result

    async def queued(self, route: str) -> int:
        counts = [
            await dlq.queue_count(self.connection, shard_queue(route, shard)) or 0
            for shard in range(self.config.route(route).shards)
        ]
        return sum(counts)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    with private_vhost("orderbridge-replay") as url:
        broker = BrokerSettings(amqp_url=SecretStr(url), publish_timeout_seconds=3.0)
        connection = await connect(broker, name="tests", wait_seconds=10)
        await declare_topology(connection, broker.topology())
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(tmp=tmp_path))
        env = cli_env(
            ORDERBRIDGE_AMQP_URL=url,
            ORDERBRIDGE_CONSUMER_CONFIG=str(routes),
            ORDERBRIDGE_LOG_FORMAT="console",  # errors as the one text line a person reads
        )
        try:
            yield World(url, broker, connection, load_config(routes), env, tmp_path)
        finally:
            await connection.close()


def inbox(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(p.read_bytes()) for p in sorted(path.glob("*.json"))]


def confirmed() -> CanonicalEvent:
    return order_event(process_status="Confirmed", logistics_status="Open")


def issued() -> CanonicalEvent:
    return order_event(process_status="Issued", event_name="OrderIssuedByBuyer")


def shipped() -> CanonicalEvent:
    return order_event(process_status="Confirmed", logistics_status="Shipped")


async def test_archived_events_reach_only_the_chosen_route_and_only_once(
    world: World,
) -> None:
    events = [confirmed(), confirmed(), issued(), shipped()]
    await world.publish(*events)  # before the routes exist: only the archive has them
    erp, other = world.config.route("erp"), world.config.route("other")
    async with (
        sqlite_state(world.tmp) as state,
        running(erp, world.connection, world.broker, state) as (erp_runner, erp_metrics),
        running(other, world.connection, world.broker, state) as (other_runner, _),
    ):
        first = await world.replay("--route", "erp", "--from", "first")
        assert (first["read"], first["matched"], first["published"]) == (4, 4, 4)
        assert (first["first_offset"], first["last_offset"]) == (0, 3)
        await erp_runner.drain(quiet_for=0.5)
        await other_runner.drain(quiet_for=0.3)
        applied = inbox(world.tmp / "erp")
        assert sorted(f["event_id"] for f in applied) == sorted(e.event_id for e in events)
        assert other_runner.handled == 0 and inbox(world.tmp / "other") == []
        assert await world.queued("other") == 0

        ran = await orderbridge("replay", "--route", "erp", "--from", "0", env=world.env)
        assert ran.code == 0, ran.stderr
        assert ran.stdout.strip().splitlines()[-1] == (
            "replay erp: read 4, matched 4, published 4 to orderbridge.route.erp (offsets 0-3)"
        )
        await erp_runner.drain(quiet_for=0.5)
        assert len(inbox(world.tmp / "erp")) == 4, "a repeat applies nothing twice"
        assert outcomes(erp_metrics, "erp") == {"applied": 4, "duplicate": 4}
        assert other_runner.handled == 0 and await world.queued("other") == 0


async def test_only_what_the_route_would_take_narrowed_by_a_pattern_and_bounded(
    world: World,
) -> None:
    events = [confirmed(), issued(), shipped(), confirmed(), confirmed()]
    await world.publish(*events)
    route = world.config.route("confirmed-only")
    async with (
        sqlite_state(world.tmp) as state,
        running(route, world.connection, world.broker, state) as (runner, _),
    ):
        counted = await world.replay(
            "--route",
            "confirmed-only",
            "--from",
            "first",
            "--routing-key",
            "*.*.*.Open",
            "--dry-run",
        )
        assert counted["dry_run"] is True
        assert (counted["read"], counted["matched"], counted["published"]) == (5, 3, 0)
        assert counted["skipped"] == {"filtered": 1, "outside_pattern": 1}
        assert counted["by_routing_key"] == {"tradecloud.order.Confirmed.Open": 3}
        await runner.drain(quiet_for=0.3)
        assert runner.handled == 0, "a dry run publishes nothing"

        bounded = await world.replay("--route", "confirmed-only", "--from", "1", "--until", "3")
        assert (bounded["first_offset"], bounded["last_offset"]) == (1, 3)
        assert (bounded["read"], bounded["matched"], bounded["published"]) == (3, 2, 2)
        assert bounded["skipped"] == {"filtered": 1}
        await runner.drain(quiet_for=0.5)
        assert sorted(f["event_id"] for f in inbox(world.tmp / "confirmed")) == sorted(
            [events[2].event_id, events[3].event_id]
        )


async def test_a_time_window_is_the_broker_s_write_time(world: World) -> None:
    before = [confirmed(), confirmed()]
    after = [confirmed(), shipped()]
    await world.publish(*before)
    await asyncio.sleep(1.5)  # AMQP timestamps have whole seconds
    middle = datetime.now(UTC).replace(microsecond=0)
    await asyncio.sleep(1.5)
    await world.publish(*after)
    route = world.config.route("other")
    async with (
        sqlite_state(world.tmp) as state,
        running(route, world.connection, world.broker, state),
    ):
        since = await world.replay("--route", "other", "--from", middle.isoformat(), "--dry-run")
        assert (since["first_offset"], since["last_offset"], since["matched"]) == (2, 3, 2)
        till = await world.replay(
            "--route", "other", "--from", "first", "--until", middle.isoformat(), "--dry-run"
        )
        assert (till["first_offset"], till["last_offset"], till["matched"]) == (0, 1, 2)
        recent = await world.replay("--route", "other", "--from", "1h", "--dry-run")
        assert recent["read"] == 4
        empty = await world.replay("--route", "other", "--from", "5", "--dry-run")
        assert (empty["read"], empty["first_offset"]) == (0, None)


async def test_what_replay_refuses(world: World) -> None:
    await world.publish(confirmed())
    cases = [
        (["--route", "nope", "--from", "first"], exit_codes.USAGE, "no route named 'nope'"),
        (["--from", "first"], exit_codes.ARGUMENTS, "--route NAME is required"),
        (
            ["--routing-key", "#", "--from", "first"],
            exit_codes.ARGUMENTS,
            "--routing-key only narrows",
        ),
        (["--route", "erp", "--from", "yesterday"], exit_codes.ARGUMENTS, "not a stream position"),
        (["--route", "erp", "--from", "9", "--until", "3"], exit_codes.ARGUMENTS, "before --from"),
        (["--route", "erp", "--from", "0", "--routing-key", "a..b"], exit_codes.ARGUMENTS, "not a"),
        (
            ["--route", "never-started", "--from", "first"],
            exit_codes.USAGE,
            "run `orderbridge consumer --route never-started` once",
        ),
    ]
    for args, code, message in cases:
        ran = await orderbridge("replay", *args, env=world.env)
        assert (ran.code, ran.stdout) == (code, ""), (args, ran.stderr)
        line = ran.stderr.strip().splitlines()[-1]
        assert line.startswith("orderbridge replay: ") and message in line, (args, ran.stderr)
    unknown = await orderbridge("replay", "--route", "nope", "--from", "0", env=world.env)
    assert "known routes: erp, other, confirmed-only, never-started" in unknown.stderr


async def test_a_replay_stops_at_the_end_the_stream_had_when_it_started(world: World) -> None:
    from services.consumers.replay import replay

    await world.publish(*(confirmed() for _ in range(20)))
    route = world.config.route("other")
    stop = asyncio.Event()

    async def keep_publishing() -> int:
        sent = 0
        while not stop.is_set():
            await world.publish(confirmed())
            sent += 1
            await asyncio.sleep(0.05)
        return sent

    async with (
        sqlite_state(world.tmp) as state,
        running(route, world.connection, world.broker, state),
    ):
        writer = asyncio.create_task(keep_publishing())
        await asyncio.sleep(0.3)
        result = await replay(world.connection, world.broker, route, start="first", dry_run=True)
        await asyncio.sleep(0.5)
        stop.set()
        sent = await writer
    assert result.end is not None and result.last == result.end
    assert result.read == result.end + 1 >= 20
    assert result.end < 20 + sent - 1, "events published after the start were left alone"
