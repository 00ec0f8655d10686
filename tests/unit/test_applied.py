"""``shared.applied``: how parts compare, and which differences count as a change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.applied import (
    HEADER,
    PartState,
    instant,
    parts_of,
    rank,
    state_digest,
    verdict,
    worth_recording,
)
from shared.normalize.fields import parse_timestamp
from tests.support.documents import (
    Line,
    OrderState,
    apicbase_event,
    apicbase_order,
    shipment_document,
    shipment_event,
    stamp,
)

T = datetime(2026, 2, 1, tzinfo=UTC)
LATER = T + timedelta(milliseconds=1)


@pytest.mark.parametrize(
    ("incoming", "applied", "expected"),
    [
        (PartState(6, T, "x"), None, "news"),
        (PartState(6, T, "x"), PartState(6, T, "x"), "known"),
        (PartState(6, T, "y"), PartState(6, T, "x"), "news"),  # one version, two contents
        (PartState(7, T, "x"), PartState(6, T, "x"), "known"),  # newer, nothing changed
        (PartState(5, LATER, "y"), PartState(6, T, "x"), "older"),  # the version decides
        (PartState(None, T, "y"), PartState(None, LATER, "x"), "older"),  # then the stamp
        (PartState(None, LATER, "y"), PartState(None, T, "x"), "news"),
        (PartState(6, None, "y"), PartState(None, T, "x"), "news"),  # nothing to order by
        (PartState(6, T, "x"), PartState(6, T, None), "known"),  # recorded by release 1
        (PartState(7, T, "x"), PartState(6, T, None), "news"),
    ],
)
def test_verdicts(incoming: PartState, applied: PartState | None, expected: str) -> None:
    assert verdict(incoming, applied) == expected


def test_known_content_seen_as_of_a_newer_state_moves_the_mark_on() -> None:
    assert worth_recording(PartState(7, T, "x"), PartState(6, T, "x"))
    assert not worth_recording(PartState(6, T, "x"), PartState(6, T, "x"))
    assert not worth_recording(PartState(5, T, "y"), PartState(6, T, "x"))
    assert rank(PartState(7, None, None), PartState(6, None, None)) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2019-12-31T10:11:12", datetime(2019, 12, 31, 10, 11, 12, tzinfo=UTC)),
        ("2019-12-31T10:11:12.345", datetime(2019, 12, 31, 10, 11, 12, 345000, tzinfo=UTC)),
        ("2019-12-31T11:11:12+01:00", datetime(2019, 12, 31, 10, 11, 12, tzinfo=UTC)),
        ("2019-12-31", None),
        ("yesterday", None),
    ],
)
def test_a_zone_less_stamp_reads_as_utc(text: str, expected: datetime | None) -> None:
    assert instant(parse_timestamp(text)) == expected


def test_the_same_state_in_another_notation_digests_alike() -> None:
    zoned = OrderState("o1", 5, minute=1, lines={"a": Line(1)})
    zoneless = zoned.evolve(zoneless=True)
    assert parts_of(zoned.polled()) == parts_of(zoneless.polled())
    webhook = apicbase_event(apicbase_order("a1", price="26.10"))
    api = apicbase_event(
        apicbase_order("a1", price="26.1", ordered_on="2026-02-01T10:30:00Z"), "api"
    )
    assert parts_of(webhook) == parts_of(api)
    assert state_digest(webhook) == state_digest(api)


def test_channel_flags_are_not_content() -> None:
    state = OrderState("o1", 5, minute=1, lines={"a": Line(1)})
    webhook = state.webhook("OrderIssuedByBuyer", lines=("a",))
    polled = state.polled(role="supplier", echo_policy="own-open-requests")
    assert webhook.order is not None and webhook.order.lines[0].changed is True
    assert parts_of(webhook) == parts_of(polled)


def test_what_makes_a_header_new() -> None:
    base = OrderState("o1", 5, minute=1, lines={"a": Line(1)})

    def header(state: OrderState) -> PartState:
        return parts_of(state.polled()).header

    assert header(base.evolve(contact="other@example.com")).digest != header(base).digest
    assert header(base.evolve(version=6)).digest != header(base).digest
    assert header(base.evolve(minute=2)).digest != header(base).digest
    lines_only = base.evolve(lines={"a": Line(1, status="Cancelled")})
    assert header(lines_only) == header(base), "a line's change is the line's"


def test_a_shipment_header_covers_status_reason_and_departure() -> None:
    issued = shipment_document("s1", minute=1, line_minutes=(1,))

    def header(**changes: object) -> str | None:
        document = shipment_document("s1", minute=1, line_minutes=(1,), **changes)  # type: ignore[arg-type]
        return parts_of(shipment_event(document)).header.digest

    base = parts_of(shipment_event(issued)).header.digest
    assert header(status="Approved") != base
    assert header(reason="damaged") != base
    assert header(atd="2026-02-03") != base
    assert header() == base


def test_parts_are_keyed_like_the_erp_keys_lines() -> None:
    state = OrderState("o1", 5, minute=1, lines={"a": Line(1), "b": Line(2)})
    parts = parts_of(state.polled())
    assert [key for key, _ in parts.lines] == ["a", "b"]
    assert parts.header.version == 5
    assert parts.lines[1][1].stamp == datetime.fromisoformat(stamp(2))
    assert HEADER not in dict(parts.lines)
