"""The fetcher's order of effects against a fake supplier list: publish confirmed, then mark."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.apicbase_fetcher.fetch import fetch_all, safety_cursor
from shared.clients.apicbase import PurchaseOrderPage
from shared.errors import PublishTimeout
from shared.schema.models import CanonicalEvent

ORDERED_ON = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)


def purchase_order(n: int) -> dict[str, Any]:
    return {
        "id": f"po-{n}",
        "order_number": f"PO-{n}",
        "status": "ORDERED",
        "ordered_on": (ORDERED_ON + timedelta(minutes=n)).isoformat(),
        "owned_by": {"username": "chef"},
        "packages": [
            {
                "stock_item": {"name": "Flour"},
                "supplier_package": {
                    "supplier_article_number": "F-1",
                    "theoretical_price_per_package": "12.50",
                },
                "quantity_ordered": 2,
                "total_theoretical_price": "25.00",
            }
        ],
        "theoretical_price": "25.00",
        "fetched_by_supplier": False,
    }


class SupplierList:
    """Apicbase's list: marked orders leave the ``fetched_by_supplier=false`` view."""

    def __init__(self, count: int, *, honour_filter: bool = True) -> None:
        self.orders = [purchase_order(n) for n in range(count)]
        self.marked: list[str] = []
        self.log: list[str] = []
        self.honour_filter = honour_filter

    async def list_purchase_orders(
        self,
        status: str | None = "ORDERED",
        ordered_on_gt: str | datetime | None = None,
        fetched_by_supplier: bool | None = False,
        page: int = 1,
        page_size: int = 200,
        *,
        ordering: str | None = None,
    ) -> PurchaseOrderPage:
        visible = [o for o in self.orders if not (self.honour_filter and o["id"] in self.marked)]
        start = (page - 1) * page_size
        window = visible[start : start + page_size]
        more = "next" if start + page_size < len(visible) else None
        return PurchaseOrderPage(len(visible), more, None, window, page, page_size)

    async def mark_fetched(self, ids: Sequence[str]) -> int:
        self.log.append(f"mark {len(ids)}")
        self.marked.extend(ids)
        return len(ids)


class Sink:
    def __init__(self, supplier: SupplierList, fail: bool = False) -> None:
        self.supplier, self.fail = supplier, fail
        self.events: list[CanonicalEvent] = []

    async def publish_many(self, events: list[CanonicalEvent]) -> None:
        await asyncio.sleep(0)
        if self.fail:
            raise PublishTimeout("no confirm")
        self.events.extend(events)
        self.supplier.log.append(f"confirmed {len(events)}")


class NoQuarantine:
    async def put(self, document: Any, reason: str, *, kind: str) -> None:
        raise AssertionError(reason)


async def test_each_page_is_confirmed_before_it_is_marked() -> None:
    supplier = SupplierList(5)
    sink = Sink(supplier)
    result = await fetch_all(
        supplier, since=None, sink=sink, quarantine=NoQuarantine(), page_size=2
    )
    assert supplier.log == [
        "confirmed 2",
        "mark 2",
        "confirmed 2",
        "mark 2",
        "confirmed 1",
        "mark 1",
    ]
    assert result.drained and result.published == 5 and len(supplier.marked) == 5
    assert all(e.channel == "api" and e.source == "apicbase" for e in sink.events)


async def test_nothing_is_marked_when_the_broker_does_not_confirm() -> None:
    supplier = SupplierList(3)
    with pytest.raises(PublishTimeout):
        await fetch_all(
            supplier,
            since=None,
            sink=Sink(supplier, fail=True),
            quarantine=NoQuarantine(),
            page_size=200,
        )
    assert supplier.marked == [] and supplier.log == []


async def test_an_ignored_filter_pages_on_instead_of_looping() -> None:
    supplier = SupplierList(5, honour_filter=False)
    result = await fetch_all(
        supplier, since=None, sink=Sink(supplier), quarantine=NoQuarantine(), page_size=2
    )
    assert result.drained and result.published == 5


def test_the_safety_cursor_trails_the_newest_order() -> None:
    assert safety_cursor(None, timedelta(days=1)) is None
    assert safety_cursor(ORDERED_ON, timedelta(days=1)) == ORDERED_ON - timedelta(days=1)
