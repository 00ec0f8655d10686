"""The simulated Tradecloud order world: pure, seeded, deterministic.

One buyer and one supplier company trade orders through their lifecycle
(api-facts §3): issue, accept / reject, supplier proposal → approve / reject,
reopen requests from either side, reconfirmation, cancel, complete, produced /
ready to ship / shipped (with a shipment and despatch advice) / delivered,
document attachments. Every change

* bumps the order ``version`` (sometimes by more than one, as Tradecloud's
  unsubscribed events and other lines do),
* stamps the touched lines and the order with the world clock in
  milliseconds (several orders can share one millisecond),
* produces one webhook message: a new ``meta.messageId``, the flow's
  ``traceId``, and only the touched lines (polls return the whole order).

Documents are rendered as Tradecloud sends them: ``orderId`` in webhook events,
``id`` in polled and fetched orders, exact decimals (written with
``dumps_exact``), delivery-schedule and single-delivery flavours.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from shared.schema.codec import dumps_exact

BUYER_COMPANY: Final = "0b0b0b0b-1111-4222-8333-444455556666"
SUPPLIER_COMPANY: Final = "5a5a5a5a-aaaa-4bbb-8ccc-ddddeeeeffff"
EPOCH: Final = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)

ITEMS: Final = (
    ("HB-M12-80", "Hex bolt M12x80", "PCE", Decimal("0.4125")),
    ("BR-6204", "Ball bearing 6204-2RS", "PCE", Decimal("3.18")),
    ("GS-40", "Spur gear z40 module 2", "PCE", Decimal("41.10")),
    ("SH-08-500", "Shaft ø8 × 500 mm", "PCE", Decimal("12.90")),
    ("PL-ALU-3", "Aluminium plate 3 mm", "M2", Decimal("58.625")),
    ("CB-YY-3G15", "Control cable YY 3G1,5", "M", Decimal("1.0790")),
    ("OR-NBR-20", "O-ring NBR 20×2", "PCE", Decimal("0.0875")),
    ("HS-ST-200", "Hydraulic hose steel braided", "M", Decimal("18.45")),
)

MetaPlacement = Literal["top", "inside", "both"]

Step = Literal[
    "accept",
    "reject",
    "propose",
    "approve_proposal",
    "reject_proposal",
    "buyer_reopen",
    "approve_buyer_reopen",
    "reject_buyer_reopen",
    "supplier_reopen",
    "approve_supplier_reopen",
    "reject_supplier_reopen",
    "request_reconfirmation",
    "reconfirm",
    "cancel",
    "complete",
    "produce",
    "ready",
    "ship",
    "deliver",
    "approve_shipment",
    "attach_document",
    "update_by_buyer",
]


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch → Tradecloud's ``YYYY-MM-DDThh:mm:ss.SSSZ``."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ms(text: str) -> int:
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000 + 0.5)


@dataclass
class Request:
    """An open proposal or reopen request on a line."""

    by: Literal["buyer", "supplier"]
    kind: Literal["proposal", "reopen", "reconfirmation"]
    quantity: Decimal
    date: str
    price: Decimal


@dataclass
class Line:
    id: str
    position: str
    item: tuple[str, str, str, Decimal]
    quantity: Decimal
    date: str
    price: Decimal
    process: str = "Issued"
    in_progress: str | None = None
    logistics: str = "Open"
    confirmed: bool = False
    request: Request | None = None
    shipped: Decimal = Decimal(0)
    updated_ms: int = 0
    documents: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Order:
    id: str
    number: str
    lines: list[Line]
    version: int = 1
    updated_ms: int = 0
    trace_id: str = ""
    message_id: str = ""
    created: str = ""
    single_delivery: bool = False
    documents: list[dict[str, Any]] = field(default_factory=list)

    @property
    def process_status(self) -> str:
        return aggregate_process([line.process for line in self.lines])

    @property
    def logistics_status(self) -> str:
        return aggregate_logistics([line.logistics for line in self.lines])


@dataclass
class Shipment:
    id: str
    number: str
    order_id: str
    lines: list[tuple[Line, Decimal]]
    updated_ms: int = 0
    status: str = "Issued"
    message_id: str = ""
    trace_id: str = ""


@dataclass(frozen=True)
class Change:
    """One thing that happened: what a webhook would tell and what a poll would show."""

    kind: Literal["order", "order_documents", "shipment"]
    event_name: str
    document_id: str
    line_ids: tuple[str, ...]
    message_id: str
    updated_ms: int


def aggregate_process(statuses: Sequence[str]) -> str:
    """Order-level process status (api-facts §3.3): Confirmed only when every line is."""
    active = [s for s in statuses if s not in ("Cancelled", "Completed")] or list(statuses)
    if all(s == "Cancelled" for s in statuses):
        return "Cancelled"
    if all(s in ("Completed", "Cancelled") for s in statuses):
        return "Completed"
    if all(s == "Rejected" for s in active):
        return "Rejected"
    if all(s == "Confirmed" for s in active):
        return "Confirmed"
    if all(s == "Issued" for s in active):
        return "Issued"
    return "InProgress"


def aggregate_logistics(statuses: Sequence[str]) -> str:
    order = ("Open", "Produced", "ReadyToShip", "Shipped", "Delivered")
    live = [s for s in statuses if s != "Cancelled"]
    if not live:
        return "Cancelled"
    return min(live, key=order.index)


def _confirmed(line: Line, *logistics: str) -> bool:
    return line.process == "Confirmed" and (not logistics or line.logistics in logistics)


def _open_request(kind: str, by: str | None = None) -> Callable[[Line], bool]:
    def rule(line: Line) -> bool:
        request = line.request
        return request is not None and request.kind == kind and by in (None, request.by)

    return rule


RULES: Final[dict[Step, tuple[int, Callable[[Line], bool]]]] = {
    # step: (weight when drawn at random, which lines it applies to)
    "accept": (3, lambda ln: ln.process == "Issued"),
    "propose": (1, lambda ln: ln.process == "Issued"),
    "reject": (1, lambda ln: ln.process == "Issued"),
    "update_by_buyer": (1, lambda ln: ln.process == "Issued"),
    "approve_proposal": (2, _open_request("proposal")),
    "reject_proposal": (1, _open_request("proposal")),
    "buyer_reopen": (1, lambda ln: _confirmed(ln, "Open")),
    "approve_buyer_reopen": (1, _open_request("reopen", "buyer")),
    "reject_buyer_reopen": (1, _open_request("reopen", "buyer")),
    "supplier_reopen": (1, lambda ln: _confirmed(ln, "Open")),
    "approve_supplier_reopen": (1, _open_request("reopen", "supplier")),
    "reject_supplier_reopen": (1, _open_request("reopen", "supplier")),
    "request_reconfirmation": (1, lambda ln: _confirmed(ln, "Open")),
    "reconfirm": (1, _open_request("reconfirmation")),
    "attach_document": (1, _confirmed),
    "produce": (2, lambda ln: _confirmed(ln, "Open")),
    "ready": (2, lambda ln: _confirmed(ln, "Produced")),
    "ship": (2, lambda ln: _confirmed(ln, "Produced", "ReadyToShip")),
    "deliver": (2, lambda ln: _confirmed(ln, "Shipped")),
    "complete": (1, lambda ln: _confirmed(ln, "Delivered")),
    "cancel": (
        1,
        lambda ln: (
            ln.process in ("Issued", "Confirmed", "InProgress")
            and ln.logistics in ("Open", "Produced")
        ),
    ),
}
"""Line-level steps; ``approve_shipment`` (shipment-level) is decided apart."""


class World:
    """All orders and shipments, indexed by last update for polling."""

    def __init__(self, seed: int = 1, clock: Callable[[], int] | None = None) -> None:
        self.rng = random.Random(seed)
        self._uuid_rng = random.Random(seed * 7919 + 1)
        self.orders: dict[str, Order] = {}
        self.shipments: dict[str, Shipment] = {}
        self._order_index: list[tuple[int, str]] = []
        self._shipment_index: list[tuple[int, str]] = []
        self._shipments_of: dict[str, list[str]] = {}
        self._clock = clock
        self._now = int(EPOCH.timestamp() * 1000)
        self._gap = (1, 40)
        self._hold = False
        self._serial = 0
        self.changes: list[Change] = []
        self._rendered: dict[tuple[str, bool], bytes] = {}
        self.tie_share = 0.0
        """Share of later changes that land in the same millisecond as the one before."""

    # ------------------------------------------------------------ time and ids

    def use_clock(self, clock: Callable[[], int] | None) -> None:
        """Stamp what happens from now on with ``clock`` (ms; never earlier than the past)."""
        self._clock = clock

    def now_ms(self, tie: bool = False) -> int:
        """The next timestamp: strictly later than the last one unless ``tie`` (or held)."""
        if tie or self._hold or (self.tie_share and self.rng.random() < self.tie_share):
            return self._now
        if self._clock is not None:
            self._now = max(self._now + 1, self._clock())
        else:
            self._now += self.rng.randint(*self._gap)
        return self._now

    def uuid(self) -> str:
        return str(uuid.UUID(int=self._uuid_rng.getrandbits(128), version=4))

    # ------------------------------------------------------------ generation

    def generate(
        self, count: int, *, page: int = 100, span: timedelta | None = None
    ) -> list[Change]:
        """Issue ``count`` orders and move most of them along their lifecycle.

        Polled from the start, the world then holds a run of five orders
        sharing one millisecond across **every** page boundary (offsets
        ``page``, ``2·page``, …; three orders on one page, two on the next), so
        a poller that advances its cursor to the last order of a full page
        skips siblings, and one that pages under the same cursor does not
        (api-facts §7.2). ``span`` spreads the history over that much time
        (default: a few milliseconds to 40 ms between changes).

        The timestamps an order ends with are its final touch's, so the plan
        (how many steps each order takes) is drawn first: that fixes every
        order's final position in poll order, and the clock is held still
        from one member of a run to the next.
        """
        plan = [self.rng.choice((0, 0, 1, 1, 2, 3)) for _ in range(count)]
        if span is not None:
            mean = max(int(span.total_seconds() * 1000) // max(int(count * 2.2), 1), 1)
            self._gap = (1, 2 * mean - 1 if mean > 1 else 1)
        zeros = plan.count(0)
        final: list[int] = []  # final poll position of each order, by issue order
        seen_zero = seen_moving = 0
        for steps in plan:
            if steps == 0:
                final.append(seen_zero)
                seen_zero += 1
            else:
                final.append(zeros + seen_moving)
                seen_moving += 1
        # While issuing, the next final touch is the next unmoving order's issue, or
        # (after the last one) the first moving order's last step.
        next_final = [zeros] * count
        upcoming = zeros
        for i in range(count - 1, -1, -1):
            if plan[i] == 0:
                upcoming = final[i]
            next_final[i] = upcoming

        def tied(position: int) -> bool:
            return position >= page - 2 and position % page in (page - 2, page - 1, 0, 1)

        changes: list[Change] = []
        try:
            for i in range(count):
                self._hold = tied(next_final[i])
                changes.append(self.issue_order())
            order_ids = list(self.orders)[-count:] if count else []
            for i, order_id in enumerate(order_ids):
                if plan[i] == 0:
                    continue
                self._hold = tied(final[i])
                for _ in range(plan[i]):
                    before = len(self.changes)
                    if self.advance(order_id) is None:
                        break
                    changes.extend(self.changes[before:])
        finally:
            self._hold = False
            self._gap = (1, 40)
        return changes

    def issue_order(
        self, *, lines: int | None = None, tie: bool = False, single_delivery: bool = False
    ) -> Change:
        self._serial += 1
        order_id = self.uuid()
        count = lines if lines is not None else self.rng.choice((1, 1, 2, 3, 4, 6))
        start = EPOCH.date() + timedelta(days=self.rng.randint(14, 90))
        new_lines = []
        for i in range(count):
            item = self.rng.choice(ITEMS)
            new_lines.append(
                Line(
                    id=self.uuid(),
                    position=f"{(i + 1) * 10:04d}",
                    item=item,
                    quantity=Decimal(self.rng.choice((1, 5, 12, 40, 100, 250, 1000)))
                    * (Decimal("1.5") if item[2] == "M" else 1),
                    date=(start + timedelta(days=7 * i)).isoformat(),
                    price=item[3],
                )
            )
        order = Order(
            id=order_id,
            number=f"45{self._serial:08d}",
            lines=new_lines,
            trace_id=self.uuid(),
            single_delivery=single_delivery,
        )
        self.orders[order_id] = order
        return self._touch(order, new_lines, "OrderIssuedByBuyer", tie=tie)

    # ------------------------------------------------------------ lifecycle

    def possible_steps(self, order: Order) -> list[Step]:
        """Steps that apply to at least one line now, repeated by their weight."""
        steps = [
            step
            for step, (weight, rule) in RULES.items()
            if any(rule(line) for line in order.lines)
            for _ in range(weight)
        ]
        if any(self.shipments[s].status == "Issued" for s in self._shipments_of.get(order.id, ())):
            steps.append("approve_shipment")
        return steps

    def advance(self, order_id: str, step: Step | None = None) -> Change | None:
        """Apply one lifecycle step (a random possible one when ``step`` is None)."""
        order = self.orders[order_id]
        choices = self.possible_steps(order)
        if step is None:
            if not choices:
                return None
            step = self.rng.choice(choices)
        elif step not in choices:
            raise ValueError(f"step {step!r} is not possible for order {order_id} now")
        change: Change = getattr(self, f"_step_{step}")(order)
        return change

    def _lines(self, order: Order, step: Step, *, at_most: int | None = None) -> list[Line]:
        """A random non-empty selection of the lines ``step`` applies to."""
        candidates = [line for line in order.lines if RULES[step][1](line)]
        if len(candidates) > 1:
            candidates = self.rng.sample(candidates, self.rng.randint(1, len(candidates)))
        return candidates[:at_most] if at_most is not None else candidates

    def _step_accept(self, order: Order) -> Change:
        lines = self._lines(order, "accept")
        for line in lines:
            line.process, line.in_progress, line.confirmed = "Confirmed", None, True
        return self._touch(order, lines, "OrderLinesAcceptedBySupplier")

    def _step_reject(self, order: Order) -> Change:
        lines = self._lines(order, "reject", at_most=1)
        for line in lines:
            line.process, line.in_progress = "Rejected", None
        return self._touch(order, lines, "OrderLinesRejectedBySupplier")

    def _step_update_by_buyer(self, order: Order) -> Change:
        lines = self._lines(order, "update_by_buyer", at_most=1)
        for line in lines:
            line.quantity += Decimal(self.rng.choice((1, 5, 10)))
        return self._touch(order, lines, "OrderLinesUpdatedByBuyer")

    def _open(
        self,
        lines: list[Line],
        by: Literal["buyer", "supplier"],
        kind: Literal["proposal", "reopen", "reconfirmation"],
        status: str,
    ) -> None:
        """Open a request: the line goes InProgress; plain schedules and prices stay (§4)."""
        for line in lines:
            later = date.fromisoformat(line.date) + timedelta(days=self.rng.choice((3, 7, 14)))
            factor = Decimal(self.rng.choice(("1.00", "1.05", "0.97")))
            line.request = Request(
                by,
                kind,
                line.quantity,
                later.isoformat() if kind != "reconfirmation" else line.date,
                (line.price * factor).quantize(line.price)
                if kind != "reconfirmation"
                else line.price,
            )
            line.process, line.in_progress = "InProgress", status

    def _close(self, line: Line, *, apply: bool) -> None:
        """Close the line's request; ``apply`` takes its values (approved proposal or reopen)."""
        if apply and line.request is not None:
            line.date, line.price, line.quantity = (
                line.request.date,
                line.request.price,
                line.request.quantity,
            )
        line.request = None
        line.process, line.in_progress, line.confirmed = "Confirmed", None, True

    def _step_propose(self, order: Order) -> Change:
        lines = self._lines(order, "propose")
        self._open(lines, "supplier", "proposal", "OpenSupplierProposal")
        return self._touch(order, lines, "OrderChangesProposedBySupplier")

    def _step_approve_proposal(self, order: Order) -> Change:
        lines = self._lines(order, "approve_proposal")
        for line in lines:
            self._close(line, apply=True)
        return self._touch(order, lines, "OrderChangesProposalApprovedByBuyer")

    def _step_reject_proposal(self, order: Order) -> Change:
        """The buyer rejects: the line stays InProgress until the supplier answers again."""
        lines = self._lines(order, "reject_proposal")
        for line in lines:
            line.request = None
            line.process, line.in_progress = "InProgress", "RejectedSupplierProposal"
        return self._touch(order, lines, "OrderChangesProposalRejectedByBuyer")

    def _step_buyer_reopen(self, order: Order) -> Change:
        lines = self._lines(order, "buyer_reopen", at_most=1)
        self._open(lines, "buyer", "reopen", "OpenBuyerReopenRequest")
        return self._touch(order, lines, "OrderLinesReopenRequestedByBuyer")

    def _step_supplier_reopen(self, order: Order) -> Change:
        lines = self._lines(order, "supplier_reopen", at_most=1)
        self._open(lines, "supplier", "reopen", "OpenSupplierReopenRequest")
        return self._touch(order, lines, "OrderLinesReopenRequestedBySupplier")

    def _answer(self, order: Order, step: Step, *, apply: bool, event_name: str) -> Change:
        lines = self._lines(order, step)
        for line in lines:
            self._close(line, apply=apply)
        return self._touch(order, lines, event_name)

    def _step_approve_buyer_reopen(self, order: Order) -> Change:
        return self._answer(
            order,
            "approve_buyer_reopen",
            apply=True,
            event_name="OrderLinesReopenRequestApprovedBySupplier",
        )

    def _step_reject_buyer_reopen(self, order: Order) -> Change:
        return self._answer(
            order,
            "reject_buyer_reopen",
            apply=False,
            event_name="OrderLinesReopenRequestRejectedBySupplier",
        )

    def _step_approve_supplier_reopen(self, order: Order) -> Change:
        return self._answer(
            order,
            "approve_supplier_reopen",
            apply=True,
            event_name="OrderLinesReopenRequestApprovedByBuyer",
        )

    def _step_reject_supplier_reopen(self, order: Order) -> Change:
        return self._answer(
            order,
            "reject_supplier_reopen",
            apply=False,
            event_name="OrderLinesReopenRequestRejectedByBuyer",
        )

    def _step_request_reconfirmation(self, order: Order) -> Change:
        lines = self._lines(order, "request_reconfirmation", at_most=1)
        self._open(lines, "buyer", "reconfirmation", "OpenBuyerReconfirmationRequest")
        return self._touch(order, lines, "OrderLinesReconfirmationRequestedByBuyer")

    def _step_reconfirm(self, order: Order) -> Change:
        return self._answer(
            order, "reconfirm", apply=False, event_name="OrderLinesReconfirmedBySupplier"
        )

    def _step_approve_shipment(self, order: Order) -> Change:
        """The buyer approves an issued shipment (a shipment event; the order is untouched)."""
        shipment_id = next(
            s for s in self._shipments_of[order.id] if self.shipments[s].status == "Issued"
        )
        return self.approve_shipment(shipment_id)

    def _step_cancel(self, order: Order) -> Change:
        lines = self._lines(order, "cancel", at_most=1)
        for line in lines:
            line.request = None
            line.process, line.in_progress, line.logistics = "Cancelled", None, "Cancelled"
        return self._touch(order, lines, "OrderLinesCancelledByBuyer")

    def _step_complete(self, order: Order) -> Change:
        lines = self._lines(order, "complete")
        for line in lines:
            line.process = "Completed"
        return self._touch(order, lines, "OrderLinesCompletedByBuyer")

    def _logistics(self, order: Order, step: Step, after: str, event_name: str) -> Change:
        lines = self._lines(order, step)
        for line in lines:
            line.logistics = after
        return self._touch(order, lines, event_name)

    def _step_produce(self, order: Order) -> Change:
        return self._logistics(
            order, "produce", "Produced", "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier"
        )

    def _step_ready(self, order: Order) -> Change:
        return self._logistics(
            order, "ready", "ReadyToShip", "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier"
        )

    def _step_deliver(self, order: Order) -> Change:
        return self._logistics(order, "deliver", "Delivered", "OrderLinesMarkedAsDeliveredByBuyer")

    def _step_ship(self, order: Order) -> Change:
        """Ship lines: the order moves to Shipped and a shipment is issued."""
        lines = self._lines(order, "ship")
        for line in lines:
            line.logistics, line.shipped = "Shipped", line.quantity
        change = self._touch(order, lines, "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier")
        self._serial += 1
        shipment = Shipment(
            id=f"{SUPPLIER_COMPANY}-SH{self._serial:08d}",
            number=f"SH{self._serial:08d}",
            order_id=order.id,
            lines=[(line, line.quantity) for line in lines],
            trace_id=self.uuid(),
        )
        self.shipments[shipment.id] = shipment
        self._shipments_of.setdefault(order.id, []).append(shipment.id)
        self._touch_shipment(shipment, "ShipmentIssuedBySupplier", tie=True)
        return change

    def _step_attach_document(self, order: Order) -> Change:
        (line,) = self._lines(order, "attach_document", at_most=1)
        document = {
            "code": f"DOC-{self._serial:06d}",
            "revision": "1",
            "name": f"Material certificate {line.position}.pdf",
            "objectId": self.uuid(),
            "type": "Certificate",
            "description": "3.1 material certificate",
        }
        line.documents.append(document)
        return self._touch(
            order, [line], "OrderDocumentsAttachedBySupplier", kind="order_documents"
        )

    # ------------------------------------------------------------ bookkeeping

    def _touch(
        self,
        order: Order,
        lines: Sequence[Line],
        event_name: str,
        *,
        tie: bool = False,
        kind: Literal["order", "order_documents"] = "order",
    ) -> Change:
        previous = (order.updated_ms, order.id)
        stamp = self.now_ms(tie=tie)
        for line in lines:
            line.updated_ms = stamp
        if previous[0]:
            del self._order_index[bisect.bisect_left(self._order_index, previous)]
        order.updated_ms = stamp
        bisect.insort(self._order_index, (stamp, order.id))
        if previous[0] == 0:
            order.version, order.created = 1, iso_ms(stamp)
        else:  # versions skip: unsubscribed events and other lines bump them too
            order.version += self.rng.choice((1, 1, 1, 2, 3))
        order.message_id = self.uuid()
        self._rendered.pop((order.id, False), None)
        self._rendered.pop((order.id, True), None)
        change = Change(
            kind, event_name, order.id, tuple(line.id for line in lines), order.message_id, stamp
        )
        self.changes.append(change)
        return change

    def _touch_shipment(self, shipment: Shipment, event_name: str, *, tie: bool = False) -> Change:
        previous = (shipment.updated_ms, shipment.id)
        stamp = self.now_ms(tie=tie)
        if previous[0]:
            del self._shipment_index[bisect.bisect_left(self._shipment_index, previous)]
        shipment.updated_ms = stamp
        bisect.insort(self._shipment_index, (stamp, shipment.id))
        shipment.message_id = self.uuid()
        self._rendered.pop((shipment.id, False), None)
        change = Change(
            "shipment",
            event_name,
            shipment.id,
            tuple(line.id for line, _ in shipment.lines),
            shipment.message_id,
            stamp,
        )
        self.changes.append(change)
        return change

    def approve_shipment(self, shipment_id: str) -> Change:
        shipment = self.shipments[shipment_id]
        shipment.status = "Approved"
        return self._touch_shipment(shipment, "ShipmentApprovedByBuyer")

    # ------------------------------------------------------------ queries

    def orders_after(self, since_ms: int) -> Iterator[Order]:
        """Orders updated strictly after ``since_ms``, oldest first (ties by id)."""
        start = bisect.bisect_right(self._order_index, (since_ms, "\uffff"))
        for _, order_id in self._order_index[start:]:
            yield self.orders[order_id]

    def orders_page(self, since_ms: int, offset: int, limit: int) -> tuple[list[Order], int, int]:
        """One unfiltered poll page from the index: (orders, total, newest stamp or -1)."""
        start = bisect.bisect_right(self._order_index, (since_ms, "\uffff"))
        total = len(self._order_index) - start
        window = self._order_index[start + offset : start + offset + limit]
        newest = self._order_index[-1][0] if total else -1
        return [self.orders[order_id] for _, order_id in window], total, newest

    def shipments_after(self, since_ms: int) -> Iterator[Shipment]:
        start = bisect.bisect_right(self._shipment_index, (since_ms, "\uffff"))
        for _, shipment_id in self._shipment_index[start:]:
            yield self.shipments[shipment_id]

    # ------------------------------------------------------------ rendering

    def order_json(self, order: Order, *, single_delivery: bool = False) -> bytes:
        """The whole current order as polled or fetched (``id``, every line), cached."""
        key = (order.id, single_delivery)
        cached = self._rendered.get(key)
        if cached is None:
            cached = dumps_exact(self.order_document(order, single_delivery=single_delivery))
            self._rendered[key] = cached
        return cached

    def order_document(
        self,
        order: Order,
        *,
        single_delivery: bool = False,
        lines: Sequence[Line] | None = None,
        webhook: bool = False,
    ) -> dict[str, Any]:
        document: dict[str, Any] = {
            "orderId" if webhook else "id": order.id,
            "buyerOrder": {
                "companyId": BUYER_COMPANY,
                "purchaseOrderNumber": order.number,
                "supplierAccountNumber": "SUP-0815",
                "orderType": "Purchase",
                "contact": {"email": "purchasing@buyer.example"},
                "documents": [],
            },
            "supplierOrder": {
                "companyId": SUPPLIER_COMPANY,
                "buyerAccountNumber": "CUST-4711",
                "contact": {"email": "sales@supplier.example"},
                "documents": [],
            },
            "indicators": {"deliveryOverdue": False},
            "status": {
                "processStatus": order.process_status,
                "logisticsStatus": order.logistics_status,
            },
            "version": order.version,
            "lines": [
                self._line_document(line, single_delivery)
                for line in (order.lines if lines is None else lines)
            ],
            "meta": self.meta(order.message_id, order.trace_id, order.updated_ms),
            "lastUpdatedAt": iso_ms(order.updated_ms),
        }
        return document

    def meta(
        self, message_id: str, trace_id: str, created_ms: int, company: str = BUYER_COMPANY
    ) -> dict[str, Any]:
        """The message meta (api-facts §3.1): ids, who started the flow, when it was created.

        An order's flow starts with the buyer issuing it; a shipment's with the supplier.
        """
        return {
            "messageId": message_id,
            "source": {"traceId": trace_id, "userId": None, "companyId": company},
            "createdDateTime": iso_ms(created_ms),
        }

    def _line_document(self, line: Line, single_delivery: bool) -> dict[str, Any]:
        number, name, unit, _ = line.item
        schedule_status = {"Cancelled": "Open"}.get(line.logistics, line.logistics)
        plain_entry = {
            "position": "1",
            "date": line.date,
            "quantity": line.quantity,
            "status": schedule_status,
        }
        prices = _prices(line.price, unit)
        # A reconfirmation request asks for no new values: only the status shows it.
        requested = line.request if line.request and line.request.kind != "reconfirmation" else None
        incl_entry = dict(plain_entry)
        incl_prices = prices
        if requested is not None:
            incl_entry.update(date=requested.date, quantity=requested.quantity)
            incl_prices = _prices(requested.price, unit)
        document: dict[str, Any] = {
            "id": line.id,
            "lineType": "Item",
            "buyerLine": {
                "position": line.position,
                "description": name,
                "item": {
                    "number": number,
                    "name": name,
                    "purchaseUnitOfMeasureIso": unit,
                    "supplierItemNumber": f"S-{number}",
                },
                "documents": [],
            },
            "supplierLine": {
                "salesOrderNumber": "SO-" + line.position,
                "salesOrderPosition": line.position.lstrip("0"),
                "documents": line.documents,
            },
            "indicators": {"deliveryOverdue": False},
            "status": {
                "processStatus": line.process,
                "logisticsStatus": line.logistics,
                **({"inProgressStatus": line.in_progress} if line.in_progress else {}),
            },
            "lastUpdatedAt": iso_ms(line.updated_ms),
        }
        if requested is not None:
            key = "proposal" if requested.kind == "proposal" else "reopenRequest"
            side = "supplierLine" if requested.by == "supplier" else "buyerLine"
            document[side]["requests"] = {
                key: {
                    "deliverySchedule": [
                        {"position": "1", "date": requested.date, "quantity": requested.quantity}
                    ],
                    "prices": incl_prices,
                    "reason": "Planning changed",
                    "status": "Open",
                }
            }
        if line.confirmed:
            document["confirmedLine"] = {"deliverySchedule": [plain_entry], "prices": prices}
        if single_delivery:
            document["statusLine"] = {
                "scheduledDelivery": {k: v for k, v in plain_entry.items() if k != "position"},
                "scheduledDeliveryInclRequests": {
                    k: v for k, v in incl_entry.items() if k != "position"
                },
                "prices": prices,
                "pricesInclRequests": incl_prices,
            }
        else:
            document["deliverySchedule"] = [plain_entry]
            document["deliveryScheduleIncludingRequests"] = [incl_entry]
            document["prices"] = prices
            document["pricesIncludingRequests"] = incl_prices
        return document

    def webhook_body(
        self,
        change: Change,
        *,
        single_delivery: bool = False,
        meta: MetaPlacement = "top",
        legacy: bool = False,
    ) -> dict[str, Any]:
        """The POST body Tradecloud sends for ``change`` (touched lines only).

        ``meta`` puts the message meta beside ``eventName`` (the docs), inside the
        event (what Tradecloud's own BC connector reads) or both (api-facts §1.1);
        ``legacy`` names a single-delivery event ``simpleOrderEvent`` (before 2024-04).
        """
        if change.kind == "shipment":
            shipment = self.shipments[change.document_id]
            return {
                "eventName": change.event_name,
                "shipment": self.shipment_document(shipment),
                "meta": self.meta(
                    change.message_id, shipment.trace_id, change.updated_ms, SUPPLIER_COMPANY
                ),
            }
        order = self.orders[change.document_id]
        lines = [line for line in order.lines if line.id in change.line_ids]
        if change.kind == "order_documents":
            event = {
                "orderId": order.id,
                "version": order.version,
                "buyerOrder": {"companyId": BUYER_COMPANY, "purchaseOrderNumber": order.number},
                "supplierOrder": {"companyId": SUPPLIER_COMPANY},
                "lines": [
                    {
                        "id": line.id,
                        "buyerLine": {"position": line.position},
                        "supplierLine": {"documents": line.documents[-1:]},
                    }
                    for line in lines
                ],
                "status": {
                    "processStatus": order.process_status,
                    "logisticsStatus": order.logistics_status,
                },
                "lastUpdatedAt": iso_ms(order.updated_ms),
            }
            field_name = "orderDocumentsEvent"
        else:
            event = self.order_document(
                order, single_delivery=single_delivery, lines=lines, webhook=True
            )
            event.pop("meta")
            field_name = "orderEvent"
            if single_delivery:
                field_name = "simpleOrderEvent" if legacy else "singleDeliveryOrderEvent"
        message_meta = self.meta(change.message_id, order.trace_id, change.updated_ms)
        body: dict[str, Any] = {"eventName": change.event_name, field_name: event}
        if meta in ("inside", "both"):
            event["meta"] = message_meta
        if meta in ("top", "both"):
            body["meta"] = message_meta
        return body

    def shipment_json(self, shipment: Shipment) -> bytes:
        key = (shipment.id, False)
        cached = self._rendered.get(key)
        if cached is None:
            cached = dumps_exact(self.shipment_document(shipment))
            self._rendered[key] = cached
        return cached

    def shipment_document(self, shipment: Shipment) -> dict[str, Any]:
        order = self.orders[shipment.order_id]
        stamp = iso_ms(shipment.updated_ms)
        return {
            "id": shipment.id,
            "identifiers": {"trackingNumber": f"TRK-{shipment.number}"},
            "transportMode": "Road transport",
            "supplierShipment": {
                "companyId": SUPPLIER_COMPANY,
                "buyerAccountNumber": "CUST-4711",
                "shipmentNumber": shipment.number,
                "invoiceNumbers": [],
                "documents": [],
                "contacts": [],
            },
            "buyerShipment": {
                "companyId": BUYER_COMPANY,
                "supplierAccountNumber": "SUP-0815",
                "documents": [],
                "contacts": [],
            },
            "loadCarriers": [],
            "lines": [
                {
                    "purchaseOrderNumber": order.number,
                    "purchaseOrderLinePosition": line.position,
                    "deliverySchedulePosition": "1",
                    "item": {
                        "buyerItemNumber": line.item[0],
                        "buyerItemName": line.item[1],
                        "purchaseUnitOfMeasureIso": line.item[2],
                    },
                    "supplierLine": {
                        "despatchAdviceNumber": "DA-" + shipment.number,
                        "despatchAdviceLinePosition": str(i + 1),
                        "despatchQuantity": quantity,
                        "backorderQuantity": 0,
                    },
                    "meta": {"lastUpdatedAt": stamp},
                }
                for i, (line, quantity) in enumerate(shipment.lines)
            ],
            "status": {"processStatus": shipment.status},
            "meta": {"lastUpdatedAt": stamp},
        }


def _prices(price: Decimal, unit: str) -> dict[str, Any]:
    return {
        "grossPrice": {"priceInTransactionCurrency": {"value": price, "currencyIso": "EUR"}},
        "discountPercentage": 0,
        "netPrice": {
            "priceInTransactionCurrency": {"value": price, "currencyIso": "EUR"},
            "priceInBaseCurrency": {"value": price, "currencyIso": "EUR"},
        },
        "priceUnitOfMeasureIso": unit,
        "priceUnitQuantity": 1,
    }
