"""The route's decision table: filter, duplicate, echo, stale (versions and lines)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.consumers.config import parse_config
from services.consumers.guards import DOCUMENT_STAMP, decide, document_key, processed_keys
from services.consumers.runner import _rounds
from shared.normalize import tradecloud
from shared.schema.models import CanonicalEvent
from shared.state.port import AppliedDocument

ROUTE = parse_config(
    '[[routes]]\nname = "r"\nbindings = ["#"]\n[routes.adapter]\ntype = "file"\npath = "x"',
    fmt="toml",
).routes[0]
T0 = datetime(2026, 2, 1, 10, 0, tzinfo=UTC)


def _stamp(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _lines(
    stamps: dict[str, int], status: str = "Confirmed", in_progress: str | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "id": key,
            "buyerLine": {"position": key},
            "deliverySchedule": [{"date": "2026-03-01", "quantity": Decimal(1)}],
            "status": {
                "processStatus": status,
                **({"inProgressStatus": in_progress} if in_progress else {}),
            },
            "lastUpdatedAt": _stamp(minute),
        }
        for key, minute in stamps.items()
    ]


def whole(version: int, stamps: dict[str, int], **kw: Any) -> CanonicalEvent:
    order = {
        "id": "o1",
        "version": version,
        "lines": _lines(stamps, **kw),
        "status": {"processStatus": "Confirmed"},
        "lastUpdatedAt": _stamp(max(stamps.values())),
    }
    return tradecloud.normalize_polled_order(
        order, received_at=T0, role="supplier", echo_policy="own-open-requests"
    )


def delta(version: int, stamps: dict[str, int], **kw: Any) -> CanonicalEvent:
    body = {
        "eventName": "OrderLinesConfirmedBySupplier",
        "orderEvent": {
            "orderId": "o1",
            "version": version,
            "lines": _lines(stamps, **kw),
            "lastUpdatedAt": _stamp(max(stamps.values())),
        },
        "meta": {"messageId": f"m{version}"},
    }
    return tradecloud.normalize_order_webhook(
        body, received_at=T0, role="supplier", echo_policy="own-open-requests"
    )


def applied(version: int | None, stamps: dict[str, int]) -> AppliedDocument:
    return AppliedDocument(version, {k: T0 + timedelta(minutes=m) for k, m in stamps.items()})


def test_first_event_applies_everything_and_records_version_and_stamps() -> None:
    decision = decide(whole(5, {"a": 1, "b": 2}), ROUTE, processed=False, applied=None)
    assert decision.outcome == "apply" and decision.lines is None and decision.version == 5
    assert set(decision.stamps) == {"a", "b", DOCUMENT_STAMP}


def test_duplicates_are_skipped_first() -> None:
    assert decide(whole(5, {"a": 1}), ROUTE, processed=True, applied=None).outcome == "duplicate"


def test_an_older_whole_document_is_stale() -> None:
    decision = decide(whole(5, {"a": 1}), ROUTE, processed=False, applied=applied(6, {"a": 3}))
    assert decision.outcome == "stale"
    assert "5 < applied 6" in decision.reason


def test_a_delta_of_an_older_version_still_applies_its_newer_lines() -> None:
    # v6 (whole) applied line a@3 and b@3; the v5 webhook delta touched b@4 later than that.
    decision = decide(
        delta(5, {"b": 4}), ROUTE, processed=False, applied=applied(6, {"a": 3, "b": 3})
    )
    assert decision.outcome == "apply"
    assert decision.version is None, "a delta never moves the version mark"
    assert set(decision.stamps) == {"b"}


def test_a_delta_applies_only_its_lines_newer_than_applied() -> None:
    decision = decide(
        delta(7, {"a": 2, "b": 9}), ROUTE, processed=False, applied=applied(6, {"a": 5, "b": 5})
    )
    assert (decision.outcome, decision.lines) == ("apply", ("b",))
    stale = decide(delta(7, {"a": 2}), ROUTE, processed=False, applied=applied(6, {"a": 5}))
    assert stale.outcome == "stale"


def test_a_newer_whole_document_never_rolls_back_a_line_a_later_delta_set() -> None:
    decision = decide(
        whole(7, {"a": 4, "b": 6}), ROUTE, processed=False, applied=applied(6, {"a": 5, "b": 5})
    )
    assert (decision.outcome, decision.lines, decision.version) == ("apply", ("b",), 7)


def test_echo_only_events_are_skipped_when_the_route_says_so() -> None:
    event = whole(8, {"a": 1}, status="InProgress", in_progress="OpenSupplierProposal")
    assert event.echo.all_changed_lines_echo
    assert decide(event, ROUTE, processed=False, applied=None).outcome == "echo"
    keep = ROUTE.model_copy(update={"skip_echo": False})
    assert decide(event, keep, processed=False, applied=None).outcome == "apply"


def test_filters() -> None:
    route = ROUTE.model_copy(
        update={"filter": ROUTE.filter.model_copy(update={"kinds": ("shipment",)})}
    )
    assert decide(whole(1, {"a": 1}), route, processed=False, applied=None).outcome == "filtered"
    route = ROUTE.model_copy(
        update={"filter": ROUTE.filter.model_copy(update={"line_process_statuses": ("Issued",)})}
    )
    assert decide(whole(1, {"a": 1}), route, processed=False, applied=None).outcome == "filtered"


def test_keys() -> None:
    event = delta(5, {"a": 1})
    assert document_key(event) == "tradecloud:order:o1"
    assert processed_keys(event) == ["tradecloud:order:o1:v5", "message:tradecloud:m5"]


class _Message:
    def __init__(self, document: str, n: int) -> None:
        self.headers = {"document_id": document}
        self.message_id = f"{document}-{n}"


def test_rounds_never_hold_two_events_of_one_document_and_keep_their_order() -> None:
    batch = [_Message(d, i) for i, d in enumerate("aabacbba")]
    rounds = _rounds(batch)  # type: ignore[arg-type]
    for round_ in rounds:
        documents = [m.headers["document_id"] for m in round_]
        assert len(documents) == len(set(documents))
    flat_a = [m.message_id for r in rounds for m in r if m.headers["document_id"] == "a"]
    assert flat_a == ["a-0", "a-1", "a-3", "a-7"]
    assert len(rounds) == 4
