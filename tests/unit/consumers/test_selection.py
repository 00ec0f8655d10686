"""What a replay reads from the archive and sends to a route, by table (``selection``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.consumers.selection import (
    Position,
    check_pattern,
    check_window,
    parse_position,
    select,
    topic_matches,
)
from shared.broker.envelope import envelope_for
from tests.support.consumers import make_route
from tests.support.events import order_event

NOW = datetime(2026, 12, 4, 20, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("0", 0),
        ("12345", 12345),
        (" 42 ", 42),
        ("first", "first"),
        ("FIRST", "first"),
        ("start", "first"),
        ("90s", NOW - timedelta(seconds=90)),
        ("30m", NOW - timedelta(minutes=30)),
        ("2h", NOW - timedelta(hours=2)),
        ("2H", NOW - timedelta(hours=2)),
        ("7d", NOW - timedelta(days=7)),
        ("7D", NOW - timedelta(days=7)),  # RabbitMQ's own spelling of days
        ("1w", NOW - timedelta(weeks=1)),
        ("1h30m", NOW - timedelta(minutes=90)),
        ("2026-12-04T10:00:00Z", datetime(2026, 12, 4, 10, tzinfo=UTC)),
        ("2026-12-04T10:00:00", datetime(2026, 12, 4, 10, tzinfo=UTC)),  # no zone: UTC
        ("2026-12-04T11:00:00+01:00", datetime(2026, 12, 4, 10, tzinfo=UTC)),
        ("2026-12-04", datetime(2026, 12, 4, tzinfo=UTC)),
    ],
)
def test_positions(text: str, position: Position) -> None:
    parsed = parse_position(text, now=NOW)
    assert parsed == position
    if isinstance(parsed, datetime):
        assert parsed.tzinfo is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["", "-5", "2x", "h2", "last", "yesterday", "1.5h", "12:00"])
def test_what_is_no_position(text: str) -> None:
    with pytest.raises(ValueError, match="not a stream position: use an offset"):
        parse_position(text, now=NOW)


@pytest.mark.parametrize(
    ("start", "until", "problem"),
    [
        ("first", None, None),
        ("first", 10, None),
        (5, 5, None),
        (5, 10, None),
        (10, 5, "is before --from"),
        (NOW, NOW + timedelta(1), None),
        (NOW, NOW - timedelta(1), "is before --from"),
        (5, NOW, None),  # an offset and a time: the broker decides which comes first
        (NOW, 5, None),
        (5, "first", "not 'first'"),
    ],
)
def test_windows(start: Position, until: Position | None, problem: str | None) -> None:
    if problem is None:
        check_window(start, until)
    else:
        with pytest.raises(ValueError, match=problem):
            check_window(start, until)


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("tradecloud.order.Confirmed.Open", "tradecloud.order.Confirmed.Open", True),
        ("tradecloud.order.Confirmed.Open", "tradecloud.order.Confirmed.Shipped", False),
        ("tradecloud.order.*.*", "tradecloud.order.Confirmed.Open", True),
        ("tradecloud.order.*", "tradecloud.order.Confirmed.Open", False),  # * is one word
        ("*.order.*.Shipped", "apicbase.order.Issued.Shipped", True),
        ("tradecloud.#", "tradecloud.order.Confirmed.Open", True),
        ("tradecloud.#", "tradecloud", True),  # # may be no word at all
        ("#", "apicbase.order.Issued.Open", True),
        ("#.Open", "apicbase.order.Issued.Open", True),
        ("#.Open", "apicbase.order.Issued.Shipped", False),
        ("tradecloud.#.Open", "tradecloud.order.Confirmed.Open", True),
        ("tradecloud.#.Open", "tradecloud.Open", True),
        ("tradecloud.#.order.#", "tradecloud.order.x.order.y", True),
        ("apicbase.#", "tradecloud.order.Confirmed.Open", False),
        ("tradecloud.order.confirmed.open", "tradecloud.order.Confirmed.Open", False),  # exact
        ("*", "tradecloud", True),
        ("*", "tradecloud.order", False),
    ],
)
def test_topic_matching(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


@pytest.mark.parametrize("pattern", ["a..b", "a.b*", "a.#b", "a b", ""])
def test_what_is_no_pattern(pattern: str) -> None:
    with pytest.raises(ValueError, match="not a routing-key pattern"):
        check_pattern(pattern)


CONFIRMED_OPEN = order_event(process_status="Confirmed", logistics_status="Open")
ISSUED_OPEN = order_event(process_status="Issued", logistics_status="Open", event_name="X")
SHIPPED = order_event(process_status="Confirmed", logistics_status="Shipped")


@pytest.mark.parametrize(
    ("bindings", "filter_", "pattern", "verdicts"),
    [
        (["tradecloud.#"], {}, None, ["match", "match", "match"]),
        (["tradecloud.order.Confirmed.*"], {}, None, ["match", "unbound", "match"]),
        (["tradecloud.#"], {}, "*.*.*.Open", ["match", "match", "outside_pattern"]),
        (  # the pattern narrows what the route takes, never widens it
            ["tradecloud.order.Confirmed.*"],
            {},
            "#.Open",
            ["match", "unbound", "outside_pattern"],
        ),
        (
            ["tradecloud.#"],
            {"event_names": ["OrderLinesConfirmedBySupplier"]},
            None,
            ["match", "filtered", "match"],
        ),
        (
            ["tradecloud.#"],
            {"line_process_statuses": ["Issued"]},
            "*.*.*.Open",
            ["filtered", "match", "outside_pattern"],
        ),
        (["apicbase.#"], {}, None, ["unbound", "unbound", "unbound"]),
    ],
)
def test_an_archived_event_goes_where_the_route_would_have_taken_it(
    bindings: list[str], filter_: dict[str, list[str]], pattern: str | None, verdicts: list[str]
) -> None:
    route = make_route({"type": "file", "path": "/tmp/unused"}, bindings=bindings, filter=filter_)
    found = [
        select(event, envelope_for(event).routing_key, route, pattern)
        for event in (CONFIRMED_OPEN, ISSUED_OPEN, SHIPPED)
    ]
    assert found == verdicts


def test_a_zone_other_than_utc_is_the_same_instant() -> None:
    cet = timezone(timedelta(hours=1))
    assert parse_position("2026-12-04T21:00:00+01:00", now=NOW) == NOW.astimezone(cet)
