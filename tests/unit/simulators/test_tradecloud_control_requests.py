"""A request with chosen content over the Tradecloud simulator's control API (loopback HTTP).

What an end-to-end test needs to make "a proposal with another date, another
quantity, a new price in CNY with 18 decimals, reason 'capacity'" and find it
downstream: ``POST /_control/orders {proposal}`` and ``POST
/_control/orders/{id}/advance {step, request}``, with their refusals.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import aiohttp

from services.simulators.serving import serving
from services.simulators.tradecloud.app import TradecloudSimulator, create_app
from services.simulators.tradecloud.content import RequestSpec
from services.simulators.tradecloud.world import World
from shared.schema.codec import loads_exact

CAPACITY = {
    "reason": "capacity",
    "currency": "CNY",
    "decimals": 18,
    "quantity": 37,
    "days": 21,
    "charge_lines": 1,
    "prices_including_requests": False,
}


@asynccontextmanager
async def control(seed: int = 80) -> AsyncIterator[tuple[TradecloudSimulator, str]]:
    sim = TradecloudSimulator(world=World(seed=seed), rate_limit=10_000)
    async with serving(create_app(sim), "127.0.0.1", 0) as base:
        yield sim, base


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, Any], status: int) -> Any:
    async with http.post(url, data=json.dumps(body)) as answer:
        text = await answer.text()
        assert answer.status == status, text
        return loads_exact(text)


async def test_an_order_created_with_a_proposal_shows_it_as_asked() -> None:
    async with control() as (sim, base), aiohttp.ClientSession() as http:
        created = await post(
            http, f"{base}/_control/orders", {"count": 1, "lines": 2, "proposal": CAPACITY}, 201
        )
        (order_id,) = created["order_ids"]
        assert [c["event_name"] for c in created["changes"]] == [
            "OrderIssuedByBuyer",
            "OrderChangesProposedBySupplier",
        ]
        assert len(created["changes"][1]["line_ids"]) == 1, "exactly one line is asked for"
        async with http.get(f"{base}/_control/orders/{order_id}") as answer:
            order = loads_exact(await answer.read())["order"]
        line = order["lines"][0]
        proposal = line["supplierLine"]["requests"]["proposal"]
        assert (proposal["reason"], proposal["status"]) == ("capacity", "Open")
        assert proposal["deliverySchedule"][0]["quantity"] == 37
        assert proposal["deliverySchedule"][0]["date"] > line["deliverySchedule"][0]["date"]
        value = proposal["prices"]["netPrice"]["priceInTransactionCurrency"]["value"]
        assert isinstance(value, Decimal) and int(value.as_tuple().exponent) == -18
        assert len(proposal["chargeLines"]) == 1
        assert "pricesIncludingRequests" not in line
        assert "requests" not in order["lines"][1]["supplierLine"]
    assert sim.world.orders[order_id].lines[0].request is not None


async def test_a_request_step_on_a_chosen_line_with_an_exact_price() -> None:
    async with control() as (sim, base), aiohttp.ClientSession() as http:
        (order_id,) = sim.create_orders(1, lines=3)
        url = f"{base}/_control/orders/{order_id}/advance"
        price = "123.456789012345678901"
        changed = await post(
            http,
            url,
            {"step": "propose", "request": {"line": "0020", "price": price, "currency": "USD"}},
            200,
        )
        order = sim.world.orders[order_id]
        assert changed["line_ids"] == [order.lines[1].id]
        request = order.lines[1].request
        assert request is not None and request.price.net.value == Decimal(price)
        assert request.price.currency == "USD"
        while any(line.process == "Issued" for line in order.lines):
            sim.advance(order_id, "accept")
        sim.advance(order_id, "approve_proposal")
        assert order.lines[1].price.net.value == Decimal(price), "the agreed price, exactly"
        assert all(line.process == "Confirmed" for line in order.lines)


async def test_request_specs_are_checked() -> None:
    async with control() as (sim, base), aiohttp.ClientSession() as http:
        (order_id,) = sim.create_orders(1, lines=1)
        url = f"{base}/_control/orders/{order_id}/advance"
        for body, status in (
            ({"step": "propose", "request": {"currency": "XYZ"}}, 400),
            ({"step": "propose", "request": {"decimals": 99}}, 400),
            ({"step": "propose", "request": {"price": "abc"}}, 400),
            ({"step": "propose", "request": {"quantity": -3}}, 400),
            ({"step": "propose", "request": {"date": "next week"}}, 400),
            ({"step": "propose", "request": {"colour": "red"}}, 400),
            ({"step": "accept", "request": {}}, 400),
            ({"step": "propose", "request": {"line": "0990"}}, 409),
            ({"step": "supplier_reopen", "request": {}}, 409),
        ):
            answer = await post(http, url, body, status)
            assert answer["detail"]
        answer = await post(http, f"{base}/_control/orders", {"proposal": {"currency": "XYZ"}}, 400)
        assert "proposal.currency" in answer["detail"]
        assert sim.world.orders[order_id].lines[0].request is None


def test_request_spec_from_json() -> None:
    spec = RequestSpec.from_json(
        {"price": Decimal("1.50"), "quantity": 5, "date": "2026-04-01", "base_price": True}
    )
    assert spec == RequestSpec(
        price=Decimal("1.50"), quantity=Decimal(5), date="2026-04-01", base_price=True
    )
    assert RequestSpec.from_json({}) == RequestSpec()
