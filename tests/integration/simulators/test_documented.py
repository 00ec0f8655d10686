"""Documented mode end to end: the command-line flag, and the legacy GET webhook meeting ingress.

The situations themselves are shown in tests/unit/simulators/test_documented_*.py;
here the simulators run as a rehearsal runs them (``--documented``) and the
Tradecloud simulator's GET webhook for a deleted order reaches the real
ingress, which fetches the order from the simulator and finds it gone.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from aiohttp import web

from services.ingress.fetch import TradecloudFetcher
from services.simulators.serving import serving
from services.simulators.tradecloud.webhooks import WebhookTarget
from services.simulators.tradecloud.world import World
from shared.broker.publisher import RabbitPublisher
from shared.clients.tradecloud import TradecloudClient
from shared.schema.codec import decode_event
from shared.settings import BrokerSettings
from tests.integration.ingress.test_ingress_get_webhook import (
    InvalidQueue,
    dead_letter_quarantine,
)
from tests.support.ingress import TOKEN, EventTap, serve, test_deps
from tests.support.simulators import running_tradecloud, simulator_process

pytestmark = pytest.mark.integration


async def until(condition: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_get_webhook_for_a_deleted_order_reaches_ingress_which_finds_it_gone(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
) -> None:
    async with (
        running_tradecloud(world=World(seed=70, documented=True), rate_limit=1000) as tradecloud,
        dead_letter_quarantine(connection, broker_settings) as quarantine,
    ):
        sim = tradecloud.simulator
        fetcher = TradecloudFetcher(TradecloudClient(tradecloud.client_settings()))
        tap = await EventTap.open(connection, "tradecloud.order.#")
        deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine)
        try:
            async with serve(deps) as (base, _):
                sim.sender.configure(
                    WebhookTarget(
                        "order",
                        base + "/webhooks/tradecloud/orders/{orderId}",
                        token=TOKEN,
                        method="GET",
                    )
                )
                (order_id,) = sim.create_orders(1, lines=2)
                await sim.sender.idle(20)
                (issued,) = sim.sender.deliveries
                assert issued.attempts == [202] and issued.method == "GET"
                message = await tap.next()
                event = decode_event(message.body)
                assert (event.document_id, event.event_name) == (order_id, None)
                assert event.version == sim.world.orders[order_id].version
                _, deleted = sim.delete_order(order_id)
                await sim.sender.idle(20)
                assert deleted is not None and deleted.state == "failed"
                (status,) = deleted.attempts
                assert isinstance(status, int) and 400 <= status < 500, "not retried"
                await InvalidQueue(connection).take(order_id)  # ingress recorded it
        finally:
            await tap.close()
            await fetcher.close()


async def test_tradecloud_documented_from_the_command_line() -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/orders", hook)
    basic = "Basic " + base64.b64encode(b"integration@buyer.example:secret").decode()

    def header_only_without_lines() -> bool:
        return any("lines" not in body.get("orderEvent", {"lines": 0}) for body in received)

    async with (
        serving(app, "127.0.0.1", 0) as hooks,
        simulator_process(
            "tradecloud",
            "--orders",
            "80",
            "--seed",
            "7",
            "--documented",
            "--omit-total-share",
            "1",
            "--drive-rate",
            "200",
            "--webhook-orders-url",
            f"{hooks}/orders",
            "--webhook-token",
            "hook-token",
        ) as simulator,  # fmt: skip
        aiohttp.ClientSession() as http,
    ):
        control = simulator.url.removesuffix("/v2") + "/_control"
        await until(header_only_without_lines)
        async with http.get(control + "/state") as response:
            state = await response.json()
        assert state["documented"] is True
        async with http.post(
            simulator.url + "/order-search/poll",
            json={"limit": 10},
            headers={"Authorization": basic},
        ) as response:
            page = await response.json()
        assert set(page) == {"data", "lastUpdatedAt"}, "--omit-total-share 1: never a total"
        async with http.get(control + "/documents") as response:
            documents = await response.json()
        stamps = [o["lastUpdatedAt"] for o in documents["orders"].values()]
        assert any(s.endswith("Z") for s in stamps) and any(not s.endswith("Z") for s in stamps)
        assert await simulator.stop() == 0


async def test_apicbase_documented_from_the_command_line_places_an_order_twice() -> None:
    ids: list[str] = []

    async def hook(request: web.Request) -> web.Response:
        ids.append(json.loads(await request.read())["id"])
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/hook", hook)
    async with (
        serving(app, "127.0.0.1", 0) as hooks,
        simulator_process(
            "apicbase",
            "--orders",
            "5",
            "--documented",
            "--drive-interval",
            "0.01",
            "--webhook-share",
            "0.9",
            "--webhook-url",
            f"{hooks}/hook",
        ) as simulator,  # fmt: skip
        aiohttp.ClientSession() as http,
    ):
        await until(lambda: len(ids) > len(set(ids)))
        async with http.get(simulator.url + "/_control/state") as response:
            state = await response.json()
        assert state["documented"] is True and state["answers_lost"] >= 1
        async with http.get(simulator.url + "/_control/orders") as response:
            orders = (await response.json())["orders"]
        assert any(len(order["pushes"]) > 1 for order in orders)
        assert await simulator.stop() == 0


async def test_tradecloud_legacy_get_webhooks_from_the_command_line() -> None:
    paths: list[tuple[str, bytes]] = []

    async def hook(request: web.Request) -> web.Response:
        paths.append((request.path, await request.read()))
        return web.Response(status=202)

    app = web.Application()
    app.router.add_get("/orders/{order_id}", hook)
    async with (
        serving(app, "127.0.0.1", 0) as hooks,
        simulator_process(
            "tradecloud",
            "--orders",
            "5",
            "--documented",
            "--drive-rate",
            "50",
            "--webhook-method",
            "GET",
            "--webhook-orders-url",
            hooks + "/orders/{orderId}",
        ) as simulator,  # fmt: skip
        aiohttp.ClientSession() as http,
    ):
        await until(lambda: len(paths) >= 3)
        async with http.get(simulator.url.removesuffix("/v2") + "/_control/documents") as response:
            known = set((await response.json())["orders"]) | set(
                (await response.json())["deleted_orders"]
            )
        assert await simulator.stop() == 0
    assert all(body == b"" for _, body in paths)
    assert {path.rsplit("/", 1)[1] for path, _ in paths} <= known
