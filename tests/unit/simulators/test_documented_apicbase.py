"""The Apicbase simulator's documented mode: copies that differ in formatting, orders placed twice.

"The response JSON is the same as the webhook one" promises the same content,
not the same bytes; and a push whose answer got lost leaves the order in the
cart, so the customer places it again with the same id. Loopback only.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import aiohttp
from aiohttp import web

from services.simulators.apicbase.app import ORDERS_PATH, ApicbaseSimulator, create_app, history
from services.simulators.apicbase.orders import (
    DEFAULT_STYLE,
    DIFFERING_STYLES,
    OrderBook,
    OrderGenerator,
    Style,
)
from services.simulators.apicbase.webhooks import SIGNATURE_HEADER
from services.simulators.serving import serving

SECRET = "documented-secret"


def _money(order: dict[str, Any]) -> list[str]:
    values = [order["theoretical_price"]]
    for package in order["packages"]:
        values.append(package["supplier_package"]["theoretical_price_per_package"])
        values.append(package["total_theoretical_price"])
    return values


def _same_content(webhook: dict[str, Any], api: dict[str, Any]) -> None:
    """Equal up to formatting: money as decimals, ``ordered_on`` up to the dropped digits."""
    assert [Decimal(v) for v in _money(webhook)] == [Decimal(v) for v in _money(api)]
    moments = [datetime.fromisoformat(o["ordered_on"]) for o in (webhook, api)]
    assert all(m.tzinfo is not None for m in moments)
    assert abs(moments[0] - moments[1]) < timedelta(milliseconds=1)
    strip = ("ordered_on", "theoretical_price", "packages")
    assert {k: v for k, v in webhook.items() if k not in strip} == {
        k: v for k, v in api.items() if k not in strip and k in webhook
    }


def test_documented_copies_differ_in_formatting_only_for_a_share_of_orders() -> None:
    book = history(5, 200, documented=True)
    differing = 0
    forms: set[tuple[str, str]] = set()
    for order in book.orders.values():
        webhook, api = order.document(), order.api_json()
        _same_content(webhook, api)
        if webhook != {k: api[k] for k in webhook}:
            differing += 1
        forms.add((order.webhook_style.prices, order.api_style.prices))
    assert 0.4 * len(book.orders) < differing < 0.8 * len(book.orders)
    assert ("trimmed", "fixed") in forms and ("fixed", "trimmed") in forms
    again = history(5, 200, documented=True).orders.values()
    assert [(o.id, o.webhook_style, o.api_style) for o in again] == [
        (o.id, o.webhook_style, o.api_style) for o in book.orders.values()
    ], "seeded"
    plain = history(5, 200)
    assert [o.document() for o in plain.orders.values()] == [
        {k: o.api_json()[k] for k in o.document()} for o in plain.orders.values()
    ], "by default both copies are the same"


def test_the_documented_formats_on_one_order() -> None:
    book = OrderBook(OrderGenerator(9))
    order = book.add(datetime.fromisoformat("2026-01-05T17:30:00.123456+01:00"), lines=2)
    order.packages[0].price_per_package = Decimal("26.10")
    order.webhook_style, order.api_style = DIFFERING_STYLES
    webhook, api = order.document(), order.api_json()
    assert webhook["packages"][0]["supplier_package"]["theoretical_price_per_package"] == "26.1"
    assert api["packages"][0]["supplier_package"]["theoretical_price_per_package"] == "26.10"
    assert webhook["ordered_on"] == "2026-01-05T17:30:00.123456+01:00"
    assert api["ordered_on"] == "2026-01-05T16:30:00.123Z"
    _same_content(webhook, api)
    assert Style.from_json({"prices": "trimmed"}) == Style("trimmed", "default")
    assert DEFAULT_STYLE.money(Decimal("26.1")) == "26.10"


@dataclass
class Hook:
    answer: Callable[[int], int] = lambda _: 202
    bodies: list[bytes] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.signatures.append(request.headers[SIGNATURE_HEADER])
        return web.json_response({"ok": True}, status=self.answer(len(self.bodies)))

    @asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        async with serving(app, "127.0.0.1", 0) as base:
            yield base + "/hook"


@asynccontextmanager
async def apicbase(
    hook_url: str, *, documented: bool = True
) -> AsyncIterator[tuple[ApicbaseSimulator, str]]:
    sim = ApicbaseSimulator(
        book=OrderBook(OrderGenerator(21), documented=documented),
        clients={"orderbridge": SECRET},
        rate_limit=100_000,
    )
    sim.configure_webhook(hook_url, timeout=5)
    async with serving(create_app(sim), "127.0.0.1", 0) as base:
        yield sim, base


async def _api_items(http: aiohttp.ClientSession, sim: ApicbaseSimulator, base: str) -> Any:
    token = sim.issue_tokens().access_token
    async with http.get(
        base + ORDERS_PATH,
        params={"page_size": "200"},
        headers={"Authorization": f"Bearer {token}"},
    ) as response:
        assert response.status == 200
        return (await response.json())["results"]


async def test_the_signature_covers_the_bytes_sent_and_the_api_copy_differs() -> None:
    hook = Hook()
    async with (
        hook.running() as url,
        apicbase(url) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{base}/_control/orders",
            json={"count": 1, "lines": 3, "via": "webhook", "styles": "differ"},
        ) as response:
            (order_id,) = (await response.json())["order_ids"]
        (item,) = await _api_items(http, sim, base)
    (body,) = hook.bodies
    expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hook.signatures == [expected], "signed over exactly the bytes sent"
    webhook = json.loads(body)
    assert webhook["id"] == item["id"] == order_id
    assert webhook["ordered_on"].endswith("+01:00") and item["ordered_on"].endswith("Z")
    assert webhook["ordered_on"] != item["ordered_on"]
    _same_content(webhook, item)


async def test_a_lost_answer_and_a_failed_push_are_placed_again_with_the_same_id() -> None:
    hook = Hook(answer=lambda n: 503 if n == 3 else 202)
    async with (
        hook.running() as url,
        apicbase(url) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{base}/_control/orders",
            json={"count": 1, "via": "webhook", "lose_answer": True},
        ) as response:
            ((lost,),) = [(await response.json())["deliveries"]]
        assert lost["state"] == "not_sent" and lost["answer_lost"] is True
        assert lost["received_status"] == 202, "the supplier got it and said yes"
        assert sim.order(lost["order_id"]).status == "IN_PROGRESS"
        assert await _api_items(http, sim, base) == [], "still in the cart: not in the API"
        async with http.post(f"{base}/_control/orders/{lost['order_id']}/push") as response:
            again = await response.json()
        assert again["state"] == "sent" and again["order_id"] == lost["order_id"]
        (refused,) = await sim.place_orders(1, lose_answer=False)
        assert refused.state == "not_sent" and refused.status == 503
        async with http.post(
            f"{base}/_control/orders/{refused.order_id}/push", json={"keep_ordered_on": True}
        ) as response:
            assert (await response.json())["state"] == "sent"
        async with http.get(f"{base}/_control/orders") as response:
            truth = {o["id"]: o for o in (await response.json())["orders"]}
        async with http.get(f"{base}/_control/state") as response:
            state = await response.json()
    bodies = [json.loads(body) for body in hook.bodies]
    assert [b["id"] for b in bodies] == [lost["order_id"]] * 2 + [refused.order_id] * 2
    assert bodies[0]["ordered_on"] != bodies[1]["ordered_on"], "placed again later"
    assert bodies[2]["ordered_on"] == bodies[3]["ordered_on"], "kept on demand"
    replaced = truth[lost["order_id"]]
    assert replaced["state"] == "ORDERED" and replaced["api"]["id"] == lost["order_id"]
    assert [p["state"] for p in replaced["pushes"]] == ["not_sent", "sent"]
    assert json.loads(replaced["pushes"][1]["body"]) == bodies[1]
    assert state["answers_lost"] == 1 and state["replaced"] == 2
    assert state["awaiting_replace"] == 0


async def test_the_customer_places_an_order_that_was_not_sent_again_by_itself() -> None:
    hook = Hook(answer=lambda n: 502 if n == 1 else 202)
    async with (
        hook.running() as url,
        apicbase(url) as (sim, base),
        aiohttp.ClientSession() as http,
    ):
        async with http.post(
            f"{base}/_control/customer", json={"replace_after": 0.05, "lose_answer_share": 0}
        ) as response:
            assert (await response.json())["replace_after"] == 0.05
        (refused,) = await sim.place_orders(1)
        assert refused.state == "not_sent" and sim.awaiting_replace == [refused.order_id]
        deadline = time.monotonic() + 10
        while sim.order(refused.order_id).status != "ORDERED":
            assert time.monotonic() < deadline, "the customer never tried again"
            await asyncio.sleep(0.01)
    assert [json.loads(body)["id"] for body in hook.bodies] == [refused.order_id] * 2
    assert sim.awaiting_replace == []


async def test_driving_in_documented_mode_loses_answers_and_places_orders_again() -> None:
    hook = Hook()
    async with hook.running() as url, apicbase(url) as (sim, _):
        assert sim.documented and sim.lose_answer_share > 0 and sim.replace_after
        sim.replace_after = 0.05
        stop = asyncio.Event()
        driver = asyncio.create_task(sim.drive(0.001, webhook_share=0.8, stop=stop))
        deadline = time.monotonic() + 30
        try:
            while not any(
                sum(1 for d in sim.deliveries if d.order_id == order_id) > 1
                for order_id in {d.order_id for d in sim.deliveries if d.answer_lost}
            ):
                assert time.monotonic() < deadline, "no order was placed again"
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            await driver
    ids = [json.loads(body)["id"] for body in hook.bodies]
    assert len(ids) > len(set(ids)), "the supplier received one id twice"


async def test_without_documented_mode_nothing_is_lost_or_placed_twice() -> None:
    hook = Hook()
    async with hook.running() as url, apicbase(url, documented=False) as (sim, _):
        assert not sim.documented and sim.replace_after is None
        await sim.place_orders(5)
    assert all(d.state == "sent" and not d.answer_lost for d in sim.deliveries)
    assert len({json.loads(b)["id"] for b in hook.bodies}) == 5
    assert all(o.webhook_style == o.api_style == DEFAULT_STYLE for o in sim.book.orders.values())
