"""Poll answers → ``PollPage``: when a page ends the backlog, with and without ``total``.

Some Tradecloud poll answers carry only ``{data, lastUpdatedAt}``. Reading the
missing ``total`` as ``len(data)`` made every page look like the last one, so
a drain stopped after one page and its cursor jumped past the rest.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from shared.clients.tradecloud import PollPage, _page
from shared.errors import UpstreamRejected

STAMP = "2026-03-01T00:00:00.123Z"


def orders(count: int) -> list[dict[str, Any]]:
    return [{"id": f"o{i}", "lastUpdatedAt": STAMP} for i in range(count)]


def test_a_full_page_without_total_is_not_the_last_one() -> None:
    page = _page({"data": orders(100), "lastUpdatedAt": STAMP}, 0, 100)
    assert page.total is None and page.limit == 100 and page.offset == 0
    assert not page.exhausted
    assert page.last_updated_at == STAMP


@pytest.mark.parametrize("count", [0, 1, 99])
def test_a_short_page_without_total_ends_the_backlog(count: int) -> None:
    page = _page({"data": orders(count), "lastUpdatedAt": STAMP}, 297, 100)
    assert page.total is None and page.exhausted


@pytest.mark.parametrize(
    ("offset", "count", "total", "exhausted"),
    [(0, 100, 250, False), (198, 52, 250, True), (0, 100, 100, True), (0, 3, 3, True)],
)
def test_with_total_the_page_ends_the_backlog_when_it_reaches_it(
    offset: int, count: int, total: int, exhausted: bool
) -> None:
    page = _page({"data": orders(count), "total": total, "lastUpdatedAt": STAMP}, offset, 100)
    assert page.total == total and page.exhausted is exhausted


@pytest.mark.parametrize("total", [None, True, "250", Decimal("250"), 250.0])
def test_a_total_that_is_not_an_integer_counts_as_missing(total: object) -> None:
    page = _page({"data": orders(100), "total": total}, 0, 100)
    assert page.total is None and not page.exhausted


def test_without_total_or_limit_only_an_empty_page_is_known_to_be_the_end() -> None:
    assert not PollPage(orders(3), None, STAMP).exhausted
    assert PollPage([], None, None).exhausted


def test_older_answers_say_orders_and_carry_the_cursor_only_on_their_documents() -> None:
    shipment = {"id": "s1", "meta": {"lastUpdatedAt": "2026-03-01T00:00:01.000Z"}}
    page = _page({"orders": [*orders(2), shipment]}, 0, 100)
    assert len(page.data) == 3 and page.last_updated_at == "2026-03-01T00:00:01.000Z"
    assert page.total is None and page.exhausted


@pytest.mark.parametrize("body", [[], {"data": {}}, {"total": 3}])
def test_an_answer_without_a_data_array_is_refused(body: object) -> None:
    with pytest.raises(UpstreamRejected):
        _page(body, 0, 100)
