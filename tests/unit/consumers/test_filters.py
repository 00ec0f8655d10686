"""Route filters on a line's in-progress status and on its requests, by table.

The order response in full (``order-response-full.json``): line-0010 is
InProgress / OpenSupplierProposal with the supplier's Open proposal and the
buyer's Rejected reopen request; line-0010-split is InProgress without
requests; line-0090 is Confirmed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from services.consumers.config import parse_config
from services.consumers.policy import decide, passes_filter
from shared.errors import ConfigurationError
from shared.normalize import tradecloud
from shared.schema.models import CanonicalEvent
from tests.support.consumers import make_route
from tests.support.documents import (
    apicbase_event,
    apicbase_order,
    shipment_document,
    shipment_event,
)
from tests.support.files import fixture

REPO = Path(__file__).resolve().parents[3]


def full() -> CanonicalEvent:
    return tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-response-full.json"), received_at=datetime(2026, 3, 3, tzinfo=UTC)
    )


def changed_only(*line_ids: str) -> Callable[[], CanonicalEvent]:
    """The full order response with only ``line_ids`` marked changed (a poll's view)."""

    def build() -> CanonicalEvent:
        event = full()
        assert event.order is not None
        lines = [
            line.model_copy(update={"changed": line.line_id in line_ids})
            for line in event.order.lines
        ]
        return event.model_copy(update={"order": event.order.model_copy(update={"lines": lines})})

    return build


OPEN_SUPPLIER_PROPOSAL = {
    "request_sides": ["supplier"],
    "request_kinds": ["proposal"],
    "request_statuses": ["Open"],
}
Row = tuple[dict[str, Any], Callable[[], CanonicalEvent], bool]


ROWS: dict[str, Row] = {
    "open supplier proposal": (OPEN_SUPPLIER_PROPOSAL, full, True),
    "in-progress status of a line": (
        {"line_in_progress_statuses": ["OpenSupplierProposal"]},
        full,
        True,
    ),
    "an in-progress status no line has": (
        {"line_in_progress_statuses": ["OpenBuyerReopenRequest"]},
        full,
        False,
    ),
    "open buyer reopen request: the buyer's was rejected": (
        {
            "request_sides": ["buyer"],
            "request_kinds": ["reopen_request"],
            "request_statuses": ["Open"],
        },
        full,
        False,
    ),
    "rejected buyer reopen request": (
        {"request_sides": ["buyer"], "request_statuses": ["Rejected"]},
        full,
        True,
    ),
    "request conditions hold for one request, not across two": (
        {"request_sides": ["buyer"], "request_statuses": ["Open"]},
        full,
        False,
    ),
    "the supplier asks no reopen request": (
        {"request_sides": ["supplier"], "request_kinds": ["reopen_request"]},
        full,
        False,
    ),
    "a kind alone": ({"request_kinds": ["proposal"]}, full, True),
    "a status alone": ({"request_statuses": ["Approved", "Open"]}, full, True),
    "a status no request has": ({"request_statuses": ["Approved"]}, full, False),
    "line conditions hold for one line, not across two": (
        {
            "line_process_statuses": ["Confirmed"],
            "line_in_progress_statuses": ["OpenSupplierProposal"],
        },
        full,
        False,
    ),
    "process status and request on the same line": (
        {"line_process_statuses": ["InProgress"], **OPEN_SUPPLIER_PROPOSAL},
        full,
        True,
    ),
    "a confirmed line carries no request": (
        {"line_process_statuses": ["Confirmed"], **OPEN_SUPPLIER_PROPOSAL},
        full,
        False,
    ),
    "only the proposal's line changed": (
        OPEN_SUPPLIER_PROPOSAL,
        changed_only("line-0010"),
        True,
    ),
    "the proposal's line did not change": (
        OPEN_SUPPLIER_PROPOSAL,
        changed_only("line-0090"),
        False,
    ),
    "the in-progress line did not change": (
        {"line_in_progress_statuses": ["OpenSupplierProposal"]},
        changed_only("line-0010-split", "line-0090"),
        False,
    ),
    "no line marked changed: every line counts": (OPEN_SUPPLIER_PROPOSAL, changed_only(), True),
    "kinds with requests": ({"kinds": ["order"], **OPEN_SUPPLIER_PROPOSAL}, full, True),
    "a shipment has no order lines": (
        {"request_statuses": ["Open"]},
        lambda: shipment_event(shipment_document("s1", minute=1)),
        False,
    ),
    "an Apicbase order has no requests": (
        {"request_statuses": ["Open"]},
        lambda: apicbase_event(apicbase_order("a1")),
        False,
    ),
    "an Apicbase order has no in-progress status": (
        {"line_in_progress_statuses": ["OpenSupplierProposal"]},
        lambda: apicbase_event(apicbase_order("a1")),
        False,
    ),
    "no filter": ({}, full, True),
}


@pytest.mark.parametrize(("rules", "build", "passes"), ROWS.values(), ids=list(ROWS))
def test_line_and_request_filters(
    rules: dict[str, Any], build: Callable[[], CanonicalEvent], passes: bool
) -> None:
    route = make_route({"type": "file", "path": "x"}, filter=rules)
    event = build()
    assert passes_filter(event, route) is passes
    outcome = decide(event, route, delivered=False, applied=None).outcome
    assert outcome == ("apply" if passes else "filtered")


@pytest.mark.parametrize(
    ("filter_toml", "message"),
    [
        ('request_sides = ["Supplier"]', "buyer or supplier"),
        ('request_kinds = ["reopenRequest"]', "snake_case"),
        ('request_state = ["Open"]', "request_state"),
        ('line_in_progress_status = ["OpenSupplierProposal"]', "line_in_progress_status"),
    ],
)
def test_filter_keys_are_checked(filter_toml: str, message: str) -> None:
    text = (
        '[[routes]]\nname = "r"\nbindings = ["#"]\n'
        f"[routes.filter]\n{filter_toml}\n"
        '[routes.adapter]\ntype = "file"\npath = "x"\n'
    )
    with pytest.raises(ConfigurationError, match=message):
        parse_config(text, fmt="toml")


def test_the_purchasing_route_of_the_deployment_takes_open_supplier_proposals() -> None:
    text = (REPO / "deploy" / "consumer" / "routes.toml").read_text()
    config = parse_config(text, fmt="toml", env={"ORDERBRIDGE_ERP_INBOX": "/data"})
    route = config.route("purchasing-proposals")
    assert route.filter.request_sides == ("supplier",)
    assert passes_filter(full(), route)
    assert not passes_filter(changed_only("line-0090")(), route)


def test_the_readme_documents_every_filter_key() -> None:
    readme = (REPO / "README.md").read_text()
    for key in (
        "line_process_statuses",
        "line_in_progress_statuses",
        "request_sides",
        "request_kinds",
        "request_statuses",
    ):
        assert f"{key} = " in readme, key
