"""One drain of the Apicbase supplier list: list, publish with confirms, then mark fetched.

Order of effects (api-facts §5.4, §7.19):

1. list ``status=ORDERED``, ``fetched_by_supplier=false``, ``ordered_on__gt``
   the safety cursor, oldest first, one page of up to 200;
2. normalize each order (``channel=api``: the same idempotency key as the
   webhook copy of the same order, so the ERP sees one effect);
3. publish the page and wait for every confirm;
4. only then ``PATCH … fetched_by_supplier`` (never ``viewed_by_supplier``:
   that tells the customer the order was accepted, which only the ERP may say).

A crash between 3 and 4 re-publishes the page on the next run (absorbed by
idempotency keys); nothing is marked that the broker does not hold. Marked
orders leave the filtered list, so the drain reads page 1 again; should the
``fetched_by_supplier`` filter ever be ignored upstream (its name is not
documented), a page of already-handled orders makes it read the next page
instead of looping. Orders the normalizer refuses are quarantined, then
marked, so one bad order never blocks the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from shared.clients.apicbase import PurchaseOrderPage
from shared.errors import InvalidPayload
from shared.logging import get_logger
from shared.normalize.apicbase import normalize_purchase_order
from shared.schema.models import CanonicalEvent

log = get_logger(__name__)

STREAM = "apicbase.orders"


class SupplierOrders(Protocol):
    """The part of ``ApicbaseClient`` the fetcher uses."""

    async def list_purchase_orders(
        self,
        status: str | None = ...,
        ordered_on_gt: str | datetime | None = ...,
        fetched_by_supplier: bool | None = ...,
        page: int = ...,
        page_size: int = ...,
        *,
        ordering: str | None = ...,
    ) -> PurchaseOrderPage: ...

    async def mark_fetched(self, ids: Sequence[str]) -> int: ...


class EventSink(Protocol):
    async def publish_many(self, events: list[CanonicalEvent]) -> None: ...


class Quarantine(Protocol):
    async def put(self, document: Any, reason: str, *, kind: str) -> None: ...


@dataclass
class FetchResult:
    pages: int = 0
    published: int = 0
    quarantined: int = 0
    marked: int = 0
    newest: datetime | None = None
    drained: bool = False


def safety_cursor(newest: datetime | None, lookback: timedelta) -> datetime | None:
    """The ``ordered_on__gt`` to store after fetching up to ``newest``."""
    return None if newest is None else (newest - lookback).astimezone(UTC)


async def fetch_all(
    client: SupplierOrders,
    *,
    since: datetime | None,
    sink: EventSink,
    quarantine: Quarantine,
    page_size: int,
    on_page: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FetchResult:
    """Fetch until no unfetched order is left (or ``stop``); see the module docstring.

    ``on_page(published, quarantined)`` is told about every page read.
    """
    result = FetchResult()
    handled: set[str] = set()
    page_number = 1
    while True:
        page = await client.list_purchase_orders(
            status="ORDERED",
            ordered_on_gt=since,
            fetched_by_supplier=False,
            page=page_number,
            page_size=page_size,
            ordering="ordered_on",
        )
        result.pages += 1
        fresh = [o for o in page.results if _order_id(o) not in handled]
        if not fresh:
            if on_page is not None:
                on_page(0, 0)
            if not page.has_next:
                break
            page_number += 1  # the filter left handled orders in: look further
            continue
        events, refused, ids = _normalize(fresh, now())
        for document, reason in refused:
            await quarantine.put(document, reason, kind="order")
        await sink.publish_many(events)
        await client.mark_fetched(ids)
        handled.update(ids)
        result.published += len(events)
        result.quarantined += len(refused)
        result.marked += len(ids)
        result.newest = _newest(result.newest, events)
        if on_page is not None:
            on_page(len(events), len(refused))
        if stop is not None and stop.is_set():
            return result
    result.drained = True
    return result


def _order_id(document: Any) -> str:
    return str(document.get("id", "")) if isinstance(document, dict) else ""


def _normalize(
    documents: Sequence[Any], received_at: datetime
) -> tuple[list[CanonicalEvent], list[tuple[Any, str]], list[str]]:
    events: list[CanonicalEvent] = []
    refused: list[tuple[Any, str]] = []
    ids: list[str] = []
    for document in documents:
        try:
            events.append(
                normalize_purchase_order(document, received_at=received_at, channel="api")
            )
        except InvalidPayload as exc:
            log.warning("Apicbase order refused", reason=str(exc))
            refused.append((document, str(exc)))
        if order_id := _order_id(document):
            ids.append(order_id)
    return events, refused, ids


def _newest(current: datetime | None, events: Sequence[CanonicalEvent]) -> datetime | None:
    for event in events:
        stamp = event.last_updated_at
        moment = stamp["utc"] if stamp is not None else None
        if moment is not None and (current is None or moment > current):
            current = moment
    return current
