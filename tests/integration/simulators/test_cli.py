"""``orderbridge simulate tradecloud|apicbase`` as real processes, as a rehearsal runs them."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.simulators.serving import serving
from shared.clients.apicbase import ApicbaseClient, ApicbaseSettings
from shared.clients.tradecloud import TradecloudClient, TradecloudSettings
from shared.state.memory import MemoryStateStore
from tests.support.simulators import simulator_process

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


async def test_tradecloud_from_the_command_line_serves_polls_and_drives_webhooks() -> None:
    received: list[Any] = []

    async def hook(request: web.Request) -> web.Response:
        assert request.headers["Authorization"] == "Bearer hook-token"
        received.append(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/orders", hook)
    async with serving(app, "127.0.0.1", 0) as hooks:
        async with simulator_process(
            "tradecloud",
            "--orders", "150",
            "--seed", "5",
            "--username", "rehearsal@buyer.example",
            "--password", "pässword",
            "--drive-rate", "20",
            "--webhook-orders-url", f"{hooks}/orders",
            "--webhook-token", "hook-token",
        ) as simulator:  # fmt: skip
            settings = TradecloudSettings(
                tradecloud_api_url=simulator.url,
                tradecloud_username="rehearsal@buyer.example",
                tradecloud_password="pässword",  # type: ignore[arg-type]
            )
            async with TradecloudClient(settings) as client:
                page = await client.poll_orders("2020-01-01T00:00:00.000Z")
                assert page.total is not None and page.total >= 150 and len(page.data) == 100
            async with asyncio.timeout(20):
                while len(received) < 3:
                    await asyncio.sleep(0.05)
            assert await simulator.stop() == 0
        assert all("eventName" in body for body in received)


async def test_apicbase_from_the_command_line_accepts_the_documented_refresh_token() -> None:
    async with simulator_process(
        "apicbase", "--orders", "12", "--client-id", "cli-app", "--client-secret", "cli-secret"
    ) as simulator:
        settings = ApicbaseSettings(
            apicbase_api_url=simulator.url,
            apicbase_client_id="cli-app",
            apicbase_client_secret="cli-secret",  # type: ignore[arg-type]
            apicbase_refresh_token="simulated-refresh-token",  # type: ignore[arg-type]
        )
        async with ApicbaseClient(settings, MemoryStateStore()) as client:
            page = await client.list_purchase_orders(status=None, fetched_by_supplier=None)
            assert page.count == 12
        async with (
            aiohttp.ClientSession() as http,
            http.get(simulator.url + "/_control/state") as response,
        ):
            assert (await response.json())["orders"] == 12
        assert await simulator.stop() == 0
