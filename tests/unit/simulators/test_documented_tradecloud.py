"""The Tradecloud simulator's documented mode over loopback HTTP (no broker, no pipeline).

Webhooks in parallel and out of order, overtaken retries, legacy GET webhooks
for a deleted order, poll answers without ``total``, unsubscribed changes that
push nothing, random deletions while driving. Tests wait on conditions with
deadlines.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.simulators.serving import serving
from services.simulators.tradecloud.app import TradecloudSimulator, create_app
from services.simulators.tradecloud.webhooks import Kind, WebhookSender, WebhookTarget
from services.simulators.tradecloud.world import StepOptions, World

USER, PASSWORD = "integration@buyer.example", "secret"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@dataclass
class Received:
    method: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]


@dataclass
class Receiver:
    """A webhook receiver on loopback: records every request, answers ``answer(request)``."""

    answer: Callable[[Received], int] = lambda _: 202
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        received = Received(
            request.method,
            request.path,
            dict(request.query),
            await request.read(),
            dict(request.headers),
        )
        self.requests.append(received)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            return web.Response(status=self.answer(received))
        finally:
            self.in_flight -= 1

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        async with serving(app, "127.0.0.1", 0) as base:
            yield base


@asynccontextmanager
async def simulator(
    sender: WebhookSender | None = None, *, world: World | None = None, documented: bool = False
) -> AsyncIterator[tuple[TradecloudSimulator, str]]:
    sim = TradecloudSimulator(
        world=world or World(seed=60),
        users={USER: PASSWORD},
        rate_limit=10_000,
        sender=sender or WebhookSender(initial_backoff=0.05, max_backoff=0.2),
        documented=documented,
    )
    async with serving(create_app(sim), "127.0.0.1", 0) as base:
        yield sim, base


async def until(condition: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def _message_id(received: Received) -> str:
    body: dict[str, Any] = json.loads(received.body)
    return str(body["meta"]["messageId"])


async def test_the_default_sender_delivers_one_at_a_time_in_order() -> None:
    receiver = Receiver(delay=0.02)
    async with receiver.running() as hooks, simulator() as (sim, _):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        sim.create_orders(6, lines=1)
        await sim.sender.idle(10)
    assert receiver.most_in_flight == 1
    assert [_message_id(r) for r in receiver.requests] == [
        d.message_id for d in sim.sender.deliveries
    ]


async def test_parallel_deliveries_are_in_flight_at_once() -> None:
    receiver = Receiver(delay=0.1)
    sender = WebhookSender(initial_backoff=0.05, parallel=4)
    async with receiver.running() as hooks, simulator(sender) as (sim, _):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        sim.create_orders(8, lines=1)
        await sim.sender.idle(10)
    assert receiver.most_in_flight == 4
    assert all(d.state == "delivered" for d in sim.sender.deliveries)


async def test_a_retried_delivery_is_overtaken_by_the_ones_behind_it() -> None:
    first: list[str] = []

    def answer(received: Received) -> int:
        if not first:
            first.append(_message_id(received))
            return 503  # above 500: Tradecloud retries it later
        return 202

    receiver = Receiver(answer=answer)
    sender = WebhookSender(initial_backoff=0.3, max_backoff=0.5, parallel=2, overtake=True)
    async with receiver.running() as hooks, simulator(sender) as (sim, _):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        sim.create_orders(5, lines=1)
        await sim.sender.idle(10)
    retried = next(d for d in sim.sender.deliveries if d.message_id == first[0])
    assert retried.attempts == [503, 202] and retried.state == "delivered"
    assert retried.sequence == 1
    assert retried.finished == len(sim.sender.deliveries), "every later delivery went first"
    arrived = [_message_id(r) for r in receiver.requests]
    assert arrived[0] == arrived[-1] == retried.message_id


async def test_a_held_delivery_is_overtaken_even_one_at_a_time() -> None:
    receiver = Receiver()
    async with receiver.running() as hooks, simulator() as (sim, base):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{base}/_control/webhooks/hold", json={"kind": "order", "seconds": 0.3}
            ) as response,
        ):
            assert response.status == 200
        sim.create_orders(3, lines=1)
        await sim.sender.idle(10)
    held, *others = sim.sender.deliveries
    assert held.held == 0.3 and held.finished == 3
    assert [_message_id(r) for r in receiver.requests] == [
        *(d.message_id for d in others),
        held.message_id,
    ]


async def test_documented_mode_delivers_out_of_order_at_random() -> None:
    receiver = Receiver()
    async with receiver.running() as hooks, simulator(documented=True) as (sim, _):
        assert sim.sender.parallel == 4 and sim.sender.overtake
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        sim.create_orders(40, lines=1)
        await sim.sender.idle(20)
    enqueued = [d.message_id for d in sim.sender.deliveries]
    arrived = [_message_id(r) for r in receiver.requests]
    assert sorted(arrived) == sorted(enqueued) and arrived != enqueued
    assert any(d.held for d in sim.sender.deliveries), "a share is held back"


@pytest.mark.parametrize("in_query", [False, True])
async def test_a_deleted_order_is_announced_by_a_legacy_get_webhook(in_query: bool) -> None:
    template = "/hooks/order?orderId={orderId}" if in_query else "/hooks/order/{orderId}"
    receiver = Receiver()
    async with receiver.running() as hooks, simulator() as (sim, base):
        sim.sender.configure(WebhookTarget("order", hooks + template, token="tok", method="GET"))
        (order_id,) = sim.create_orders(1, lines=1)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/_control/orders/{order_id}/delete") as response:
                assert response.status == 202
                answer = await response.json()
            await sim.sender.idle(10)
            async with http.get(
                f"{base}/v2/authentication/login", headers={"Authorization": BASIC}
            ) as response:
                bearer = "Bearer " + response.headers["Set-Authorization"]
            async with http.get(
                f"{base}/v2/order/{order_id}", headers={"Authorization": bearer}
            ) as response:
                assert response.status == 404
            async with http.get(f"{base}/_control/orders/{order_id}") as response:
                assert response.status == 404 and (await response.json())["deleted"] is True
            async with http.get(f"{base}/_control/documents") as response:
                documents = await response.json()
    assert answer["change"]["get_only"] is True and answer["delivery"]["method"] == "GET"
    assert order_id not in documents["orders"] and documents["deleted_orders"] == [order_id]
    expected = (
        ("/hooks/order", {"orderId": order_id})
        if in_query
        else (
            f"/hooks/order/{order_id}",
            {},
        )
    )
    issued, deleted = receiver.requests
    for request in (issued, deleted):
        assert request.method == "GET" and request.body == b""
        assert (request.path, request.query) == expected
        assert request.headers["Authorization"] == "Bearer tok"
        assert "Content-Type" not in request.headers
    url = hooks + template.replace("{orderId}", order_id)
    assert [d.url for d in sim.sender.deliveries] == [url, url]


async def test_a_post_integration_hears_nothing_of_a_deletion() -> None:
    receiver = Receiver()
    async with receiver.running() as hooks, simulator() as (sim, _):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        (order_id,) = sim.create_orders(1, lines=1)
        change, delivery = sim.delete_order(order_id)
        await sim.sender.idle(10)
    assert delivery is None and change.get_only
    assert len(receiver.requests) == 1, "only the issue event"


async def test_shipment_get_webhooks_fill_the_shipment_placeholder() -> None:
    receiver = Receiver()
    async with receiver.running() as hooks, simulator() as (sim, _):
        sim.sender.configure(
            WebhookTarget("shipment", hooks + "/ship?shipmentId={shipmentId}", method="GET")
        )
        (order_id,) = sim.create_orders(1, lines=1)
        for step in ("accept", "produce", "ship"):
            sim.advance(order_id, step)
        await sim.sender.idle(10)
    (shipment_id,) = sim.world.shipments
    (request,) = receiver.requests
    assert request.method == "GET" and request.query == {"shipmentId": shipment_id}


async def test_unsubscribed_changes_push_nothing() -> None:
    receiver = Receiver()
    world = World(seed=61, documented=True)
    async with receiver.running() as hooks, simulator(world=world) as (sim, _):
        sim.sender.configure(WebhookTarget("order", f"{hooks}/orders"))
        (order_id,) = sim.create_orders(1, lines=2, zoneless=False)
        sim.advance(order_id, "accept")
        details = sim.advance_all(order_id, "change_item_details")
        forced = sim.advance_all(order_id, "reassign_contact", StepOptions(subscribed=False))
        await sim.sender.idle(10)
    assert [c.subscribed for c in [*details, *forced]] == [False, False]
    pushed = {d.message_id for d in sim.sender.deliveries}
    assert pushed.isdisjoint(c.message_id for c in [*details, *forced])
    assert len(receiver.requests) == len(pushed) == 2, "issue and accept only"


async def _poll(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.post(url, json={"limit": 5}, headers={"Authorization": BASIC}) as response:
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body


async def test_poll_answers_without_total() -> None:
    world = World(seed=62)
    world.generate(12)
    async with simulator(world=world) as (sim, base), aiohttp.ClientSession() as http:
        polls = (f"{base}/v2/order-search/poll", f"{base}/v2/shipment/poll")
        for url in polls:
            assert set(await _poll(http, url)) >= {"data", "total"}
        async with http.post(f"{base}/_control/poll", json={"omit_total": True}) as response:
            assert (await response.json())["omit_total"] is True
        for url in polls:
            answer = await _poll(http, url)
            assert "total" not in answer and "data" in answer
        answer = await _poll(http, polls[0])
        assert set(answer) == {"data", "lastUpdatedAt"}
        assert answer["lastUpdatedAt"].endswith("Z")
        assert sim.polls_without_total == 3


async def test_documented_mode_leaves_total_out_of_a_share_of_poll_answers() -> None:
    world = World(seed=63, documented=True)
    world.generate(30)
    async with simulator(world=world) as (sim, base), aiohttp.ClientSession() as http:
        assert sim.documented and 0 < sim.omit_total_share < 1
        forms = {"total" in await _poll(http, f"{base}/v2/order-search/poll") for _ in range(40)}
        async with http.get(f"{base}/_control/state") as response:
            state = await response.json()
    assert forms == {True, False}
    assert state["documented"] is True and state["polls_without_total"] > 0


async def test_zoneless_documents_poll_with_a_zoned_cursor() -> None:
    world = World(seed=64, documented=True)
    world.generate(40)
    async with simulator(world=world) as (sim, base), aiohttp.ClientSession() as http:
        sim.omit_total = False
        seen: list[dict[str, Any]] = []
        cursor = "2020-01-01T00:00:00.000Z"
        while True:
            async with http.post(
                f"{base}/v2/order-search/poll",
                json={"filters": {"lastUpdatedAfter": cursor}, "limit": 100},
                headers={"Authorization": BASIC},
            ) as response:
                page = await response.json()
            if not page["data"]:
                break
            seen += page["data"]
            assert page["lastUpdatedAt"].endswith("Z")
            cursor = page["lastUpdatedAt"]
    assert len({o["id"] for o in seen}) == len(world.orders)
    assert any(not o["lastUpdatedAt"].endswith("Z") for o in seen)
    assert any(o["lastUpdatedAt"].endswith("Z") for o in seen)


async def test_driving_in_documented_mode_deletes_orders_at_random() -> None:
    world = World(seed=65, documented=True)
    world.generate(50)
    async with simulator(world=world) as (sim, _):
        stop = asyncio.Event()
        driver = asyncio.create_task(sim.drive(2000, stop=stop))
        try:
            await until(lambda: bool(world.deleted), within=30)
        finally:
            stop.set()
            await driver
    assert all(order_id not in world.orders for order_id in world.deleted)


async def test_documented_situations_on_demand_over_the_control_api() -> None:
    world = World(seed=66, documented=True)
    receiver = Receiver()
    kinds: tuple[Kind, ...] = ("order", "order_documents", "shipment")
    async with (
        receiver.running() as hooks,
        simulator(world=world) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        for kind in kinds:
            async with http.post(
                f"{base}/_control/webhooks",
                json={"kind": kind, "url": f"{hooks}/{kind}", "parallel": 2},
            ) as response:
                assert response.status == 200
        async with http.post(
            f"{base}/_control/orders", json={"count": 1, "lines": 2, "zoneless": True}
        ) as response:
            (order_id,) = (await response.json())["order_ids"]
        control = f"{base}/_control/orders/{order_id}"

        async def step(body: dict[str, Any], status: int = 200) -> Any:
            async with http.post(control + "/advance", json=body) as response:
                assert response.status == status, await response.text()
                return await response.json()

        while any(line.process == "Issued" for line in world.orders[order_id].lines):
            await step({"step": "accept"})
        await step({"step": "accept"}, status=409)
        header = await step({"step": "reassign_contact", "by": "supplier", "lines": "omit"})
        assert header["event_name"] == "OrderContactReassignedBySupplier"
        assert header["line_ids"] == [] and header["lines_key"] is False
        quiet = await step({"step": "update_labels", "subscribed": False})
        assert quiet["subscribed"] is False
        await step({"step": "produce"})
        pair = await step({"step": "line_and_logistics_update"})
        assert len(pair["changes"]) == 2
        assert len({c["version"] for c in pair["changes"]}) == 1
        await step({"step": "reassign_contact", "lines": "sideways"}, status=400)
        await step({"step": "fly"}, status=400)
        async with http.post(control + "/resend", json={"by": "supplier"}) as response:
            assert (await response.json())["event_name"] == "OrderResentBySupplier"
        async with http.post(control + "/zoneless", json={"zoneless": False}) as response:
            assert (await response.json())["zoneless"] is False
        async with http.get(control) as response:
            order = (await response.json())["order"]
            assert order["lastUpdatedAt"].endswith("Z")
        for line in world.orders[order_id].lines:
            line.logistics = "ReadyToShip"
        while any(line.logistics != "Shipped" for line in world.orders[order_id].lines):
            await step({"step": "ship"})
        shipment_id = next(iter(world.shipments))
        shipment_url = f"{base}/_control/shipments/{shipment_id}"
        for action, body in (
            ("update-header", {"what": "erp_meta"}),
            ("reject", {"reason": "Broken pallet"}),
            ("reissue", {}),
            ("approve", {}),
        ):
            async with http.post(f"{shipment_url}/{action}", json=body) as response:
                assert response.status == 200, action
        async with http.post(f"{shipment_url}/fly") as response:
            assert response.status == 404
        async with http.get(shipment_url) as response:
            shipment = (await response.json())["shipment"]
        assert shipment["status"] == {"processStatus": "Approved"}
        assert shipment["meta"]["supplierErpMeta"]
        async with http.get(f"{base}/_control/changes?document_id={order_id}") as response:
            changes = await response.json()
        assert any(not c["subscribed"] for c in changes)
        async with http.get(f"{base}/_control/documents") as response:
            documents = await response.json()
        assert documents["orders"][order_id]["version"] == world.orders[order_id].version
        assert documents["shipments"][shipment_id] == shipment
        await sim.sender.idle(20)
    pushed = {d.message_id for d in sim.sender.deliveries}
    assert quiet["message_id"] not in pushed
    assert {c["message_id"] for c in pair["changes"]} <= pushed
