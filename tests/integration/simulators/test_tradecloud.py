"""Tradecloud client against the simulator over real loopback HTTP."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from services.simulators.serving import serving
from services.simulators.tradecloud.app import Fault
from services.simulators.tradecloud.webhooks import WebhookTarget
from services.simulators.tradecloud.world import parse_ms
from shared.clients.tradecloud import StatusFilter, TradecloudClient
from shared.errors import UpstreamRejected, UpstreamUnavailable
from tests.support.simulators import PASSWORD, USERNAME, RunningTradecloud, running_tradecloud

pytestmark = pytest.mark.integration

EPOCH = "2020-01-01T00:00:00.000Z"


@pytest.fixture
async def tradecloud() -> AsyncIterator[RunningTradecloud]:
    async with running_tradecloud(seed=7, orders=350, rate_limit=1000) as running:
        yield running


async def _drain(client: TradecloudClient, since: str) -> tuple[list[Any], str]:
    """What the poller does: page under one cursor, then advance."""
    seen: list[Any] = []
    offset = 0
    while True:
        page = await client.poll_orders(since, offset=offset)
        seen += page.data
        if page.exhausted:
            return seen, page.last_updated_at or since
        offset += len(page.data)


async def test_paging_under_one_cursor_misses_no_same_millisecond_sibling(
    tradecloud: RunningTradecloud,
) -> None:
    async with TradecloudClient(tradecloud.client_settings()) as client:
        seen, cursor = await _drain(client, EPOCH)
        assert len(seen) == len(tradecloud.simulator.world.orders)
        assert len({order["id"] for order in seen}) == len(seen)
        stamps = [parse_ms(order["lastUpdatedAt"]) for order in seen]
        assert stamps == sorted(stamps)
        assert cursor == seen[-1]["lastUpdatedAt"]
        # Strictly after: the newest order is not returned again.
        again = await client.poll_orders(cursor)
        assert again.data == [] and again.total == 0
        # A change after the cursor is picked up, and only it.
        change = tradecloud.simulator.advance()
        assert change is not None
        newer = await client.poll_orders(cursor)
        assert [order["id"] for order in newer.data] == [change.document_id]


async def test_a_cursor_inside_a_tie_returns_the_whole_tie_after_it(
    tradecloud: RunningTradecloud,
) -> None:
    world = tradecloud.simulator.world
    stamps = [order.updated_ms for order in world.orders_after(-1)]
    tied = next(ms for ms in stamps if stamps.count(ms) >= 3)
    async with TradecloudClient(tradecloud.client_settings()) as client:
        page = await client.poll_orders(
            __import__("services.simulators.tradecloud.world", fromlist=["iso_ms"]).iso_ms(tied - 1)
        )
        first = [parse_ms(o["lastUpdatedAt"]) for o in page.data]
        assert first[: stamps.count(tied)] == [tied] * stamps.count(tied)


async def test_status_filters_limit_and_single_delivery(tradecloud: RunningTradecloud) -> None:
    async with TradecloudClient(tradecloud.client_settings()) as client:
        confirmed = await client.poll_orders(
            EPOCH, status=StatusFilter(process_status=["Confirmed"])
        )
        assert confirmed.data
        assert all(o["status"]["processStatus"] == "Confirmed" for o in confirmed.data)
        single = await client.poll_orders(EPOCH, limit=5, single_delivery=True)
        assert len(single.data) == 5 and "statusLine" in single.data[0]["lines"][0]
        with pytest.raises(ValueError, match="limit"):
            await client.poll_orders(EPOCH, limit=101)
    async with aiohttp.ClientSession() as session:
        basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        async with session.post(
            tradecloud.url + "/order-search/poll",
            json={"filters": {"lastUpdatedSince": EPOCH}, "limit": 101},
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            assert response.status == 400, "limit > 100 is refused"
        async with session.post(
            tradecloud.url + "/order-search/poll",
            json={"filters": {"lastUpdatedSince": EPOCH}, "limit": 3},
            headers={"Authorization": f"Basic {basic}"},
        ) as response:
            assert response.status == 200, "Basic is accepted on poll, legacy lastUpdatedSince too"
            assert len((await response.json())["data"]) == 3
        order_id = next(iter(tradecloud.simulator.world.orders))
        async with session.get(
            f"{tradecloud.url}/order/{order_id}", headers={"Authorization": f"Basic {basic}"}
        ) as response:
            assert response.status == 401, "Basic is refused on GET /order/{id}"


async def test_get_order_and_shipment_by_id(tradecloud: RunningTradecloud) -> None:
    world = tradecloud.simulator.world
    order_id = world.issue_order(lines=1).document_id
    for step in ("accept", "produce", "ship"):
        world.advance(order_id, step)
    shipment_id = next(s.id for s in world.shipments.values() if s.order_id == order_id)
    async with TradecloudClient(tradecloud.client_settings()) as client:
        order = await client.get_order(order_id)
        assert order["id"] == order_id and order["status"]["logisticsStatus"] == "Shipped"
        shipment = await client.get_shipment(shipment_id)
        assert shipment["id"] == shipment_id
        with pytest.raises(UpstreamRejected) as info:
            await client.get_order("no-such-order")
        assert info.value.status == 404


async def test_expired_tokens_mid_run_are_renewed_by_logging_in_again(
    tradecloud: RunningTradecloud,
) -> None:
    async with TradecloudClient(tradecloud.client_settings()) as client:
        await client.poll_orders(EPOCH, limit=1)
        tradecloud.simulator.inject(Fault("expire_tokens"))
        page = await client.poll_orders(EPOCH, limit=1)
        assert page.data


async def test_proactive_refresh_rotates_the_refresh_token() -> None:
    async with running_tradecloud(orders=3, rate_limit=1000) as tradecloud:
        settings = tradecloud.client_settings(tradecloud_refresh_seconds=0.05)
        async with TradecloudClient(settings) as client:
            await client.poll_orders(EPOCH)
            old_refresh = client._tokens.refresh  # type: ignore[union-attr]
            await asyncio.sleep(0.1)
            await client.poll_orders(EPOCH)
            assert client._tokens.refresh != old_refresh  # type: ignore[union-attr]
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                tradecloud.url + "/authentication/refresh",
                headers={"Refresh-Token": str(old_refresh)},
            ) as response,
        ):
            assert response.status == 401, "a used refresh token is dead"


async def test_429_storms_5xx_and_slow_answers_are_retried(tradecloud: RunningTradecloud) -> None:
    sim = tradecloud.simulator
    sim.inject(Fault("status", status=429, retry_after=0.2, count=3))
    sim.inject(Fault("status", status=503, count=2))
    sim.inject(Fault("delay", seconds=1.0, count=1))
    settings = tradecloud.client_settings(tradecloud_timeout_seconds=0.5)
    async with TradecloudClient(settings) as client:
        started = time.monotonic()
        page = await client.poll_orders(EPOCH, limit=2)
        assert len(page.data) == 2
        assert time.monotonic() - started >= 0.5, "Retry-After was honoured"


async def test_connection_resets_are_retried(tradecloud: RunningTradecloud) -> None:
    tradecloud.simulator.inject(Fault("reset", count=2))
    async with TradecloudClient(tradecloud.client_settings()) as client:
        assert (await client.poll_orders(EPOCH, limit=1)).data


async def test_an_unreachable_api_becomes_upstream_unavailable() -> None:
    async with running_tradecloud() as tradecloud:
        settings = tradecloud.client_settings(tradecloud_retry_seconds=1.0)
    async with TradecloudClient(settings) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.poll_orders(EPOCH)


async def test_wrong_credentials_are_rejected() -> None:
    async with running_tradecloud() as tradecloud:
        settings = tradecloud.client_settings(tradecloud_password="wrong")
        async with TradecloudClient(settings) as client:
            with pytest.raises(UpstreamRejected):
                await client.poll_orders(EPOCH)


async def test_the_rate_limit_is_enforced_and_the_client_stays_under_it() -> None:
    async with running_tradecloud(orders=5, rate_limit=10) as tradecloud:
        async with aiohttp.ClientSession() as session:
            basic = base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
            statuses = []
            for _ in range(15):
                async with session.post(
                    tradecloud.url + "/order-search/poll",
                    json={"filters": {}, "limit": 1},
                    headers={"Authorization": f"Basic {basic}"},
                ) as response:
                    statuses.append(response.status)
            assert 429 in statuses
        async with TradecloudClient(tradecloud.client_settings()) as client:
            for _ in range(15):
                await client.poll_orders(EPOCH, limit=1)


async def test_webhook_sender_retries_only_above_500() -> None:
    answers = {"order": [503, 502, 202], "order_documents": [500], "shipment": [400]}
    received: dict[str, int] = {}

    async def handler(request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        received[kind] = received.get(kind, 0) + 1
        assert request.headers["Authorization"].startswith(("Basic ", "Bearer "))
        return web.Response(status=answers[kind].pop(0) if answers[kind] else 202)

    app = web.Application()
    app.router.add_post("/{kind}", handler)
    async with (
        serving(app, "127.0.0.1", 0) as hooks,
        running_tradecloud(rate_limit=1000) as tradecloud,
    ):
        sim = tradecloud.simulator
        for kind in ("order", "order_documents", "shipment"):
            sim.sender.configure(
                WebhookTarget(
                    kind,
                    f"{hooks}/{kind}",
                    token="tok" if kind != "order" else None,
                    username="u" if kind == "order" else None,
                    password="p",
                )
            )
        order_id = sim.create_orders(1, lines=1)[0]
        sim.advance(order_id, "accept")
        sim.advance(order_id, "attach_document")
        for step in ("produce", "ship"):
            sim.advance(order_id, step)
        await sim.sender.idle(10)
        by_kind = {d.kind: d for d in reversed(sim.sender.deliveries)}
        first_order = sim.sender.deliveries[0]
        assert first_order.attempts == [503, 502, 202] and first_order.state == "delivered"
        assert by_kind["order_documents"].attempts == [500]
        assert by_kind["order_documents"].state == "failed", "a 500 is never retried"
        assert by_kind["shipment"].attempts == [400] and by_kind["shipment"].state == "failed"


async def test_advancing_the_cursor_to_a_full_pages_last_order_skips_tied_siblings() -> None:
    """Why the poller must page under one cursor: the hazard is real in the simulator."""
    async with running_tradecloud(seed=3, orders=250, rate_limit=1000) as tradecloud:
        async with TradecloudClient(tradecloud.client_settings()) as client:
            naive: list[Any] = []
            cursor = EPOCH
            while True:
                page = await client.poll_orders(cursor)
                naive += page.data
                if not page.data or page.exhausted:
                    break
                cursor = page.data[-1]["lastUpdatedAt"]  # the wrong way
            careful, _ = await _drain(client, EPOCH)
        assert len(careful) == 250
        missed = {o["id"] for o in careful} - {o["id"] for o in naive}
        # The first page ends inside a run of five (positions 97..101): 100 and 101 are lost.
        assert missed == {careful[100]["id"], careful[101]["id"]}


async def test_basic_and_bearer_calls_of_one_user_share_the_rate_limit() -> None:
    async with running_tradecloud(orders=3, rate_limit=10) as tradecloud:
        basic = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
        statuses = []
        async with aiohttp.ClientSession() as session:
            async with session.get(
                tradecloud.url + "/authentication/login", headers={"Authorization": basic}
            ) as response:
                bearer = "Bearer " + response.headers["Set-Authorization"]
            for i in range(14):
                async with session.post(
                    tradecloud.url + "/order-search/poll",
                    json={"limit": 1},
                    headers={"Authorization": basic if i % 2 else bearer},
                ) as response:
                    statuses.append(response.status)
        assert statuses.count(429) >= 4 and tradecloud.simulator.throttled >= 4


async def test_the_control_api_over_http(tradecloud: RunningTradecloud) -> None:
    received: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=202)

    app = web.Application()
    app.router.add_post("/orders", hook)
    control = tradecloud.control_url
    async with serving(app, "127.0.0.1", 0) as hooks:
        async with aiohttp.ClientSession() as http:
            async with http.post(
                control + "/webhooks",
                json={"kind": "order", "url": f"{hooks}/orders", "token": "t"},
            ) as response:
                assert response.status == 200
            async with http.post(control + "/orders", json={"count": 1, "lines": 3}) as response:
                assert response.status == 201
                (order_id,) = (await response.json())["order_ids"]
            async with http.post(
                f"{control}/orders/{order_id}/advance", json={"step": "deliver"}
            ) as response:
                assert response.status == 409, "impossible steps are refused"
            async with http.post(
                f"{control}/orders/{order_id}/advance", json={"step": "fly"}
            ) as response:
                assert response.status == 400
            async with http.post(
                f"{control}/orders/{order_id}/advance", json={"step": "propose"}
            ) as response:
                change = await response.json()
                assert change["event_name"] == "OrderChangesProposedBySupplier"
            async with http.post(f"{control}/orders/{order_id}/resend") as response:
                assert response.status == 202
            async with http.get(f"{control}/orders/{order_id}") as response:
                state = await response.json()
                assert "approve_proposal" in state["possible_steps"]
            async with http.post(control + "/faults", json={"kind": "nonsense"}) as response:
                assert response.status == 400
            async with http.post(
                control + "/faults", json={"kind": "status", "status": 502, "count": 2}
            ) as response:
                assert (await response.json())["faults_pending"] == 1
            await tradecloud.simulator.sender.idle(10)
            async with http.get(control + "/deliveries?state=delivered&kind=order") as response:
                deliveries = await response.json()
            async with http.get(control + "/state") as response:
                assert (await response.json())["faults_pending"] == 1
        names = [body["eventName"] for body in received]
        assert names == [
            "OrderIssuedByBuyer",
            "OrderChangesProposedBySupplier",
            "OrderResentByBuyer",
        ]
        assert [d["event_name"] for d in deliveries] == names
        assert len(received[1]["orderEvent"]["lines"]) <= 3
        assert len(received[2]["orderEvent"]["lines"]) == 3, "a resend carries the whole order"
        assert len({body["meta"]["messageId"] for body in received}) == 3
        assert len({body["meta"]["source"]["traceId"] for body in received}) == 1, "one flow"
