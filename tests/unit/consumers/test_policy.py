"""The route's policy by tables: what an event changes in the ERP, and where a failed message goes.

Each exactly-once case of the platforms as documented (api-facts §1, §2, §5, §7)
is a row: a history of events already applied, the event that arrives, and
what the ERP must get of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from services.consumers.config import Route, parse_config
from services.consumers.policy import (
    ATTEMPT,
    ATTEMPTS,
    REASON,
    ROUTING_KEY,
    DeadLetter,
    Decision,
    Retry,
    after_failure,
    decide,
    lookup_for,
    replay_headers,
)
from services.consumers.worker import rounds
from shared.applied import HEADER, PartState
from shared.errors import PermanentError, RetryableError
from shared.normalize import tradecloud
from shared.schema.models import CanonicalEvent
from shared.state.port import AppliedDocument, still_news
from tests.support.documents import (
    Line,
    OrderState,
    apicbase_event,
    apicbase_order,
    shipment_document,
    shipment_event,
)

ROUTE = parse_config(
    '[[routes]]\nname = "r"\nbindings = ["#"]\nretry_delays = [5, 30]\n'
    '[routes.adapter]\ntype = "file"\npath = "x"',
    fmt="toml",
).routes[0]
KEEP_ECHOES = ROUTE.model_copy(update={"skip_echo": False})
SUPPLIER = {"role": "supplier", "echo_policy": "own-open-requests"}


@dataclass
class Ledger:
    """What one route recorded, kept the way the stores keep it (``still_news``)."""

    route: Route = ROUTE
    parts: dict[str, dict[str, PartState]] = field(default_factory=dict)
    deliveries: set[str] = field(default_factory=set)

    def offer(self, event: CanonicalEvent) -> Decision:
        question = lookup_for(event)
        delivered = question.delivery is not None and question.delivery in self.deliveries
        known = self.parts.get(question.document)
        decision = decide(
            event,
            self.route,
            delivered=delivered,
            applied=None if known is None else AppliedDocument(known),
        )
        if decision.applies:
            assert decision.record is not None
            writes = still_news(decision.record.parts, known or {})
            assert writes is not None, "an applying decision records news"
            self.parts[question.document] = {**(known or {}), **writes}
            if decision.record.delivery is not None:
                self.deliveries.add(decision.record.delivery)
        return decision


BASE = OrderState(
    "o1",
    version=5,
    minute=2,
    lines={"a": Line(1), "b": Line(2)},
)
Case = tuple[list[CanonicalEvent], CanonicalEvent, str, bool, tuple[str, ...]]


def cases() -> dict[str, Case]:
    """name: (history applied, arriving event, outcome, header applies, lines applied)."""
    v6_contact = BASE.evolve(version=6, minute=3, contact="new.buyer@example.com")
    v6_lost_b = BASE.evolve(version=6, minute=3, lines={"a": Line(1), "b": Line(3, Decimal(12))})
    v7_a = v6_lost_b.evolve(
        version=7, minute=4, lines={"a": Line(4, Decimal(7)), "b": Line(3, Decimal(12))}
    )
    labels = BASE.evolve(version=6, minute=3, labels=("urgent",))
    zoneless_new = shipment_document("s1", minute=5, line_minutes=(5,), zoneless=True)
    zoneless_old = shipment_document("s1", minute=4, line_minutes=(4,), zoneless=True)
    issued = shipment_document("s2", minute=1, line_minutes=(1, 1))
    approved = shipment_document("s2", minute=2, line_minutes=(1, 1), status="Approved")
    rejected = shipment_document(
        "s2", minute=2, line_minutes=(1, 1), status="Rejected", reason="wrong"
    )
    departed = shipment_document("s2", minute=3, line_minutes=(1, 1), atd="2026-02-02")
    webhook_copy = apicbase_order(
        "a1", price="26.10", ordered_on="2026-02-01T11:30:00.123456+01:00"
    )
    api_copy = apicbase_order("a1", price="26.1", ordered_on="2026-02-01T10:30:00.123Z")
    replaced = apicbase_order(
        "a1", price="26.10", quantity=4, ordered_on="2026-02-01T11:45:00+01:00"
    )
    proposal = BASE.evolve(
        version=6,
        minute=3,
        lines={
            "a": Line(3, status="InProgress", in_progress="OpenSupplierProposal"),
            "b": Line(3, Decimal(11)),
        },
    )
    return {
        "the first event applies everything": (
            [],
            BASE.polled(),
            "apply",
            True,
            ("a", "b"),
        ),
        "the same state by poll after webhook is a duplicate": (
            [BASE.webhook("OrderLinesConfirmedBySupplier", lines=("a", "b"))],
            BASE.polled(),
            "duplicate",
            False,
            (),
        ),
        "a webhook retry (same message) is a duplicate": (
            [BASE.webhook("OrderLinesConfirmedBySupplier", lines=("a",), message_id="m5")],
            BASE.webhook("OrderLinesConfirmedBySupplier", lines=("a",), message_id="m5"),
            "duplicate",
            False,
            (),
        ),
        "1: a newer version changing only the header applies the header": (
            [BASE.polled()],
            v6_contact.polled(),
            "apply",
            True,
            (),
        ),
        "1: a newer version changing only raw fields (labels) applies the header": (
            [BASE.polled()],
            labels.polled(),
            "apply",
            True,
            (),
        ),
        "8: a webhook without lines is a header-only change": (
            [BASE.polled()],
            v6_contact.webhook("OrderContactReassignedByBuyer", without_lines_key=True),
            "apply",
            True,
            (),
        ),
        "2: a resend at the current version brings a line whose change was lost": (
            [BASE.polled(), v6_lost_b.webhook("OrderLinesUpdatedByBuyer", lines=())],
            v6_lost_b.webhook("OrderResentByBuyer", lines=("a", "b")),
            "apply",
            False,
            ("b",),
        ),
        "2: two events at one version with different lines both apply": (
            [BASE.polled(), v6_lost_b.webhook("OrderLinesUpdatedByBuyer", lines=("a",))],
            v6_lost_b.webhook("OrderLinesDeliveryHistorySetByBuyer", lines=("b",)),
            "apply",
            False,
            ("b",),
        ),
        "2: a resend of what the ERP has is a duplicate": (
            [BASE.polled()],
            BASE.webhook("OrderResentByBuyer", lines=("a", "b")),
            "duplicate",
            False,
            (),
        ),
        "3: a polled newer version carrying an old messageId applies": (
            [BASE.webhook("OrderLinesUpdatedByBuyer", lines=("a", "b"), message_id="m-old")],
            v6_lost_b.evolve(message_id="m-old").polled(),
            "apply",
            True,
            ("b",),
        ),
        "an older whole document never rolls back what a newer delta set": (
            [BASE.polled(), v7_a.webhook("OrderLinesUpdatedBySupplier", lines=("a",))],
            v6_lost_b.polled(),
            "apply",
            False,
            ("b",),
        ),
        "webhooks overtaking each other: the late v6 brings its line, not its header": (
            [BASE.polled(), v7_a.webhook("OrderLinesUpdatedBySupplier", lines=("a",))],
            v6_lost_b.webhook("OrderLinesUpdatedByBuyer", lines=("b",)),
            "apply",
            False,
            ("b",),
        ),
        "an older state of every part is stale": (
            [v6_lost_b.polled()],
            BASE.polled(),
            "stale",
            False,
            (),
        ),
        "7: a zone-less older shipment state arriving late is stale": (
            [shipment_event(zoneless_new)],
            shipment_event(zoneless_old),
            "stale",
            False,
            (),
        ),
        "4: a buyer approval re-stamps no line but applies the header": (
            [shipment_event(issued, "ShipmentIssuedBySupplier")],
            shipment_event(approved, "ShipmentApprovedByBuyer"),
            "apply",
            True,
            (),
        ),
        "4: a rejection with a reason applies the header": (
            [shipment_event(issued, "ShipmentIssuedBySupplier")],
            shipment_event(rejected, "ShipmentRejectedByBuyer"),
            "apply",
            True,
            (),
        ),
        "4: a header update of the departure (ATD) applies the header": (
            [shipment_event(issued), shipment_event(approved)],
            shipment_event(departed, "ShipmentHeaderUpdatedBySupplier"),
            "apply",
            True,
            (),
        ),
        "5: the API copy of an Apicbase order formatted otherwise is a duplicate": (
            [apicbase_event(webhook_copy)],
            apicbase_event(api_copy, "api"),
            "duplicate",
            False,
            (),
        ),
        "5: the webhook copy after the API copy is a duplicate": (
            [apicbase_event(api_copy, "api")],
            apicbase_event(webhook_copy),
            "duplicate",
            False,
            (),
        ),
        "5: a re-placed Apicbase order (same id) updates the one ERP order": (
            [apicbase_event(webhook_copy)],
            apicbase_event(replaced),
            "apply",
            True,
            ("1",),
        ),
        "6: a mixed echo event applies only its lines that are not echoes": (
            [BASE.polled(**SUPPLIER)],
            proposal.webhook("OrderChangesProposedBySupplier", lines=("a", "b"), **SUPPLIER),
            "apply",
            True,
            ("b",),
        ),
    }


@pytest.mark.parametrize(("name", "case"), list(cases().items()), ids=list(cases()))
def test_what_the_erp_gets(name: str, case: Case) -> None:
    history, arriving, outcome, header, lines = case
    ledger = Ledger()
    for event in history:
        assert ledger.offer(event).applies, f"history event {event.event_name} should apply"
    decision = ledger.offer(arriving)
    assert (decision.outcome, decision.header, decision.lines) == (outcome, header, lines), (
        decision.reason
    )
    if decision.applies:
        assert decision.record is not None and decision.change
        if header:
            assert HEADER in decision.record.parts
        assert set(lines) <= set(decision.record.parts)
    else:
        assert decision.record is None and decision.reason


def test_an_echo_event_with_nothing_else_new_is_an_echo_and_a_route_may_keep_echoes() -> None:
    base = BASE.evolve(lines={"a": Line(1)})
    proposal = base.evolve(
        version=6,
        minute=3,
        lines={"a": Line(3, status="InProgress", in_progress="OpenSupplierProposal")},
    )
    arriving = proposal.webhook("OrderChangesProposedBySupplier", lines=("a",), **SUPPLIER)
    ledger = Ledger()
    ledger.offer(base.polled(**SUPPLIER))
    first = ledger.offer(arriving)
    assert (first.outcome, first.header, first.lines) == ("apply", True, ()), "header only"
    again = ledger.offer(proposal.polled(**SUPPLIER))  # the same state, polled
    assert (again.outcome, again.lines) == ("echo", ()), again.reason
    keeping = Ledger(route=KEEP_ECHOES)
    keeping.offer(base.polled(**SUPPLIER))
    assert keeping.offer(arriving).lines == ("a",)


def test_the_same_change_has_the_same_change_key_whichever_event_carries_it() -> None:
    by_webhook = Ledger().offer(BASE.webhook("OrderIssuedByBuyer", lines=("a", "b")))
    by_poll = Ledger().offer(BASE.polled())
    assert by_webhook.change == by_poll.change
    assert Ledger().offer(BASE.evolve(version=6).polled()).change != by_poll.change


def test_parts_recorded_by_the_previous_release_count_as_known_unless_newer() -> None:
    line_a = BASE.polled().order.lines[0]  # type: ignore[union-attr]
    assert line_a.last_updated_at is not None
    legacy = {
        HEADER: PartState(5, None, None),
        "a": PartState(None, line_a.last_updated_at["utc"], None),
    }
    same = decide(BASE.polled(), ROUTE, delivered=False, applied=AppliedDocument(legacy))
    assert (same.header, same.lines) == (False, ("b",))
    newer = decide(
        BASE.evolve(version=6, minute=9, lines={"a": Line(9)}).polled(),
        ROUTE,
        delivered=False,
        applied=AppliedDocument(legacy),
    )
    assert (newer.header, newer.lines) == (True, ("a",))


def _documents(name: str, minute: int) -> CanonicalEvent:
    body = {
        "eventName": "OrderDocumentsAttachedBySupplier",
        "orderDocumentsEvent": {
            "orderId": "o1",
            "version": 6,
            "lines": [
                {
                    "id": "a",
                    "buyerLine": {"position": "A"},
                    "supplierLine": {"documents": [{"name": name, "objectId": f"obj-{name}"}]},
                }
            ],
            "lastUpdatedAt": f"2026-02-01T10:0{minute}:00.000Z",
        },
        "meta": {"messageId": f"docs-{name}"},
    }
    return tradecloud.normalize_order_webhook(body, received_at=BASE.polled().received_at)


def test_order_documents_events_overtaking_each_other_each_bring_their_documents() -> None:
    ledger = Ledger()
    second = ledger.offer(_documents("second.pdf", 3))
    first = ledger.offer(_documents("first.pdf", 2))  # attached earlier, arrives later
    assert (second.outcome, second.header, len(second.lines)) == ("apply", True, 1)
    assert (first.outcome, first.header, len(first.lines)) == ("apply", False, 1)
    assert ledger.offer(_documents("first.pdf", 2)).outcome == "duplicate"


def test_an_older_apicbase_copy_never_rolls_back_a_re_placed_order() -> None:
    ledger = Ledger()
    replaced = apicbase_order("a1", quantity=2, ordered_on="2026-02-01T10:00:02Z")
    first = apicbase_order("a1", quantity=1, ordered_on="2026-02-01T10:00:01Z")
    assert ledger.offer(apicbase_event(replaced)).applies
    late = ledger.offer(apicbase_event(first, "api"))
    assert late.outcome == "stale", late.reason


def test_release_1_documents_take_changes_again_and_keep_what_they_had() -> None:
    # Release 1 kept neither version nor stamp for a webhook-only document …
    bare = AppliedDocument({HEADER: PartState(None, None, None)})
    news = decide(BASE.polled(), ROUTE, delivered=False, applied=bare)
    assert (news.header, news.lines) == (True, ("a", "b"))
    # … and no line it could not stamp (Apicbase packages): applied with the order.
    webhook = apicbase_event(apicbase_order("a1"))
    assert webhook.last_updated_at is not None
    stamped = AppliedDocument({HEADER: PartState(None, webhook.last_updated_at["utc"], None)})
    copy = decide(
        apicbase_event(apicbase_order("a1", price="26.1"), "api"),
        ROUTE,
        delivered=False,
        applied=stamped,
    )
    assert copy.outcome in ("duplicate", "stale") and copy.lines == ()


def test_repeated_shipment_line_keys_keep_every_line() -> None:
    document = shipment_document("s9", minute=1, line_minutes=(1, 1))
    for line in document["lines"]:  # one PO line over two carriers, no advice positions
        del line["supplierLine"]["despatchAdviceLinePosition"]
    decision = Ledger().offer(shipment_event(document))
    assert decision.lines == ("PO-1/1/1/-", "PO-1/2/1/-")
    twin = shipment_document("s9", minute=1, line_minutes=(1, 1))
    for line in twin["lines"]:
        line["purchaseOrderLinePosition"] = "1"
        del line["supplierLine"]["despatchAdviceLinePosition"]
    assert Ledger().offer(shipment_event(twin)).lines == ("PO-1/1/1/-", "PO-1/1/1/-#2")


def test_the_route_filter_comes_first() -> None:
    route = ROUTE.model_copy(
        update={"filter": ROUTE.filter.model_copy(update={"kinds": ("shipment",)})}
    )
    assert decide(BASE.polled(), route, delivered=False, applied=None).outcome == "filtered"
    route = ROUTE.model_copy(
        update={"filter": ROUTE.filter.model_copy(update={"line_process_statuses": ("Issued",)})}
    )
    assert decide(BASE.polled(), route, delivered=False, applied=None).outcome == "filtered"


def test_only_a_pushed_webhook_has_a_delivery_key() -> None:
    assert lookup_for(BASE.webhook("OrderIssuedByBuyer", message_id="m9")).delivery == (
        "tradecloud:order:m9"
    )
    assert lookup_for(BASE.polled()).delivery is None, "a poll carries the last message's id"
    assert lookup_for(BASE.polled()).document == "tradecloud:order:o1"


# ------------------------------------------------------------------ failures


Expect = Callable[[Retry | DeadLetter], bool]
HEADERS = {"document_id": "o1"}


@pytest.mark.parametrize(
    ("failure", "headers", "expected"),
    [
        (
            RetryableError("ERP busy"),
            HEADERS,
            lambda d: (
                isinstance(d, Retry)
                and d.queue == "orderbridge.route.r.retry-5s"
                and d.headers[ATTEMPT] == 1
            ),
        ),
        (
            RetryableError("ERP busy"),
            {**HEADERS, ATTEMPT: 1},
            lambda d: (
                isinstance(d, Retry)
                and d.queue == "orderbridge.route.r.retry-30s"
                and d.headers[ATTEMPT] == 2
            ),
        ),
        (
            RetryableError("ERP busy"),
            {**HEADERS, ATTEMPT: 2},
            lambda d: (
                isinstance(d, DeadLetter)
                and d.reason == "retries_exhausted"
                and d.headers[ATTEMPTS] == 3
            ),
        ),
        (
            PermanentError("unknown article"),
            HEADERS,
            lambda d: (
                isinstance(d, DeadLetter)
                and d.reason == "permanent"
                and "unknown article" in d.headers["x-orderbridge-error"]
            ),
        ),
        (
            ZeroDivisionError(),
            {**HEADERS, ATTEMPT: "garbage"},
            lambda d: isinstance(d, Retry) and d.headers[ATTEMPT] == 1,
        ),
    ],
    ids=["first retry", "second retry", "exhausted", "permanent", "unexpected"],
)
def test_where_a_failed_message_goes(
    failure: BaseException, headers: dict[str, object], expected: Expect
) -> None:
    disposition = after_failure(
        failure, route=ROUTE, headers=headers, routing_key="tradecloud.order.x.y", now="t"
    )
    assert expected(disposition), disposition
    assert disposition.headers[ROUTING_KEY] == "tradecloud.order.x.y"
    assert disposition.headers["document_id"] == "o1", "the hash header travels along"


def test_a_replay_starts_afresh() -> None:
    dead = after_failure(
        PermanentError("x"), route=ROUTE, headers=HEADERS, routing_key="k", now="t"
    )
    replayed = replay_headers(dead.headers)
    assert REASON not in replayed and ATTEMPT not in replayed and ROUTING_KEY not in replayed
    assert replayed["document_id"] == "o1" and replayed["x-orderbridge-replayed"] is True


def test_rounds_never_hold_two_events_of_one_document_and_keep_their_order() -> None:
    batch = [(d, i) for i, d in enumerate("aabacbba")]
    found = rounds(batch, lambda m: m[0])
    for round_ in found:
        documents = [d for d, _ in round_]
        assert len(documents) == len(set(documents))
    assert [i for r in found for d, i in r if d == "a"] == [0, 1, 3, 7]
    assert len(found) == 4
