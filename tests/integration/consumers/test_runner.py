"""Routes against the real RabbitMQ, a SQLite state store and real adapters."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from services.consumers import dlq
from services.consumers.adapters import Application
from services.consumers.topology import route_exchange
from shared.broker.publisher import RabbitPublisher
from shared.normalize import tradecloud
from shared.schema.codec import decode_event
from shared.settings import BrokerSettings
from tests.support.consumers import make_route, outcomes, running, sqlite_state
from tests.support.documents import Line, OrderState
from tests.support.events import order_event
from tests.support.files import fixture

pytestmark = pytest.mark.integration
NOW = datetime(2026, 2, 15, tzinfo=UTC)


def inbox(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(p.read_bytes()) for p in sorted(path.glob("*.json"))]


async def test_the_same_order_version_three_ways_is_applied_once(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
) -> None:
    document = fixture("tradecloud/get-order.json")
    by_get = tradecloud.normalize_fetched_order(document, received_at=NOW)
    by_poll = tradecloud.normalize_polled_order(document, received_at=NOW)
    route = make_route({"type": "file", "path": str(tmp_path / "inbox"), "csv": True})
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await publisher.publish(by_get)
        await publisher.publish(by_get)  # a redelivered webhook
        await publisher.publish(by_poll)  # the same version polled
        await runner.drain(quiet_for=0.5)
        files = inbox(tmp_path / "inbox")
        assert len(files) == 1
        assert files[0]["event_id"] == by_get.event_id
        assert outcomes(metrics, route.name) == {"applied": 1, "duplicate": 2}
        (csv_file,) = (tmp_path / "inbox").glob("*.lines.csv")
        rows = csv_file.read_text().splitlines()
        assert rows[0].startswith("source,document_id") and len(rows) == 3
        assert "1234.5678901234567890" in rows[1]
        # A replay of the same event from the dead-letter path is a duplicate too.
        channel = await connection.channel()
        exchange = await channel.get_exchange(route_exchange(route.name), ensure=False)
        await exchange.publish(
            aio_pika.Message(b"", headers={"document_id": by_get.document_id}), "x"
        )  # undecodable: dead-lettered, proving the exchange path works
        await runner.drain(quiet_for=0.5)
        await channel.close()
        letters = await dlq.list_dead_letters(connection, route.name)
        assert [letter.reason for letter in letters] == ["invalid"]


async def test_older_state_never_rolls_back_and_a_late_whole_order_brings_its_other_lines(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
) -> None:
    order_id = f"o-{datetime.now(UTC).timestamp()}"
    v5 = OrderState(order_id, 5, minute=1, lines={"l1": Line(1), "l2": Line(1)})
    v6 = v5.evolve(version=6, minute=2, lines={"l1": Line(2, Decimal(6)), "l2": Line(1)})
    v7 = v6.evolve(
        version=7, minute=3, lines={"l1": Line(2, Decimal(6)), "l2": Line(3, Decimal(7))}
    )
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")})
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        # v7's webhook overtakes v6: then the v6 poll, then v5 polled once more.
        for event in (
            v5.polled(),
            v7.webhook("OrderLinesUpdatedBySupplier", lines=("l2",)),
            v6.polled(),
            v5.polled(),
        ):
            await publisher.publish(event)
            await runner.drain(quiet_for=0.3)
        files = inbox(tmp_path / "inbox")
        assert [f["version"] for f in files] == [5, 7, 6]
        assert [[line["line_id"] for line in f["order"]["lines"]] for f in files] == [
            ["l1", "l2"],
            ["l2"],
            ["l1"],
        ]
        assert [f["applied"] for f in files] == [
            None,  # null: the event applies as published
            None,
            {"header": False, "lines": ["l1"]},
        ], "the v6 header is older than v7's: only its news, line l1, applies"
        assert outcomes(metrics, route.name) == {"applied": 3, "stale": 1}


class ErpStub:
    """An ERP endpoint on loopback: down until ``up_at``, refusing ``poison`` documents."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.poison: set[str] = set()
        self.accepted: dict[str, int] = {}
        self.keys: dict[str, set[str]] = {}
        """Idempotency-Key headers seen per document (every call, refused ones too)."""
        self.calls = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        event = decode_event(await request.read())
        key = request.headers.get("Idempotency-Key", "")
        self.keys.setdefault(event.document_id, set()).add(key)
        if asyncio.get_running_loop().time() < self.down_until:
            return web.Response(status=503, text="maintenance")
        if event.document_id in self.poison:
            return web.Response(status=422, text="unknown article number")
        self.accepted[event.idempotency_key] = self.accepted.get(event.idempotency_key, 0) + 1
        return web.Response(status=201)


@pytest.fixture
async def erp() -> AsyncIterator[tuple[ErpStub, str]]:
    stub = ErpStub()
    app = web.Application()
    app.router.add_post("/orders", stub.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield stub, f"http://127.0.0.1:{port}/orders"
    await runner.cleanup()


async def test_erp_down_then_up_delivers_everything_once(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
    erp: tuple[ErpStub, str],
) -> None:
    stub, url = erp
    stub.down_until = asyncio.get_running_loop().time() + 2.0
    route = make_route(
        {"type": "http", "url": url, "timeout": 2}, retry_delays=(0.3, 0.6, 1.2, 2.4)
    )
    events = [order_event(version=v) for v in range(1, 11)]
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await publisher.publish_many(events)
        await runner.drain(quiet_for=1.0)
    assert stub.accepted == {event.idempotency_key: 1 for event in events}
    assert [len(keys) for keys in stub.keys.values()] == [1] * 10, (
        "a retried change keeps its Idempotency-Key"
    )
    assert all(key for keys in stub.keys.values() for key in keys)
    counts = outcomes(metrics, route.name)
    assert counts["applied"] == 10 and counts["retried"] >= 10
    assert "dead_lettered" not in counts


async def test_poison_goes_to_the_dead_letter_queue_with_its_reason_and_replays_once_fixed(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
    erp: tuple[ErpStub, str],
) -> None:
    stub, url = erp
    poison, fine = order_event(), order_event()
    stub.poison.add(poison.document_id)
    route = make_route({"type": "http", "url": url})
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, metrics),
    ):
        await publisher.publish_many([poison, fine])
        await runner.drain(quiet_for=0.5)
        assert stub.accepted == {fine.idempotency_key: 1}
        (letter,) = await dlq.list_dead_letters(connection, route.name)
        assert (letter.message_id, letter.reason) == (poison.event_id, "permanent")
        assert "422" in letter.error and "unknown article number" in letter.error
        assert letter.routing_key == "tradecloud.order.Confirmed.Open"
        assert letter.document_id == poison.document_id
        assert await dlq.count(connection, route.name) == 1, "listing removes nothing"

        stub.poison.clear()  # fixed in the ERP
        assert await dlq.replay(connection, broker_settings, route.name, ids=None) == 1
        await runner.drain(quiet_for=0.5)
        assert stub.accepted == {fine.idempotency_key: 1, poison.idempotency_key: 1}
        assert await dlq.count(connection, route.name) == 0
        # The replayed event once more (a second replay, a redelivery): a counted
        # duplicate, no second effect.
        await publisher.publish(poison)
        await runner.drain(quiet_for=0.5)
        assert stub.accepted == {fine.idempotency_key: 1, poison.idempotency_key: 1}
        counts = outcomes(metrics, route.name)
        assert (counts["applied"], counts["duplicate"]) == (2, 1)


async def test_retries_exhausted_dead_letter_with_the_attempt_count(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
    erp: tuple[ErpStub, str],
) -> None:
    stub, url = erp
    stub.down_until = asyncio.get_running_loop().time() + 60
    route = make_route({"type": "http", "url": url}, retry_delays=(0.1, 0.2))
    event = order_event()
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state) as (runner, _),
    ):
        await publisher.publish(event)
        await runner.drain(quiet_for=0.5)
        (letter,) = await dlq.list_dead_letters(connection, route.name)
    assert letter.reason == "retries_exhausted" and letter.attempts == 3
    assert stub.calls == 3


class GatedAdapter:
    """An ERP that holds every apply until the test lets it through."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = 0
        self.applied: list[str] = []

    async def apply(self, item: Application) -> None:
        self.started += 1
        await self.gate.wait()
        self.applied.append(item.event.idempotency_key)

    async def close(self) -> None:
        return None


async def test_nothing_is_acknowledged_before_the_adapter_succeeded(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
    tmp_path: Path,
) -> None:
    """A consumer stopped while its ERP hangs returns every message; once the ERP
    answers, every message is applied and acknowledged (batch acks included)."""
    route = make_route({"type": "file", "path": str(tmp_path / "unused")}, shards=1)
    events = [order_event() for _ in range(20)]
    shard = f"orderbridge.route.{route.name}.shard-0"

    async def ready_messages() -> int:
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(shard, passive=True)
            return int(queue.declaration_result.message_count or 0)
        finally:
            await channel.close()

    async def until_ready(count: int) -> None:
        for _ in range(100):
            if await ready_messages() == count:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{shard} never had {count} ready messages")

    hung = GatedAdapter()
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state, adapter=hung),
    ):
        await publisher.publish_many(events)
        while hung.started < 1:
            await asyncio.sleep(0.02)
        await until_ready(0)  # all delivered to the consumer, none settled yet
    assert hung.applied == []
    await until_ready(20)  # nothing was acknowledged: all back in the queue

    answering = GatedAdapter()
    answering.gate.set()
    async with (
        sqlite_state(tmp_path) as state,
        running(route, connection, broker_settings, state, adapter=answering) as (runner, _),
    ):
        await runner.drain(quiet_for=0.5)
    await asyncio.sleep(0.5)  # an unacknowledged message would be back by now
    assert await ready_messages() == 0
    assert sorted(answering.applied) == sorted(e.idempotency_key for e in events)
