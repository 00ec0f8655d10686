"""The simulated Tradecloud order world: pure, seeded, deterministic.

One buyer and one supplier company trade orders through their lifecycle
(api-facts §3): issue, accept / reject, supplier proposal → approve / reject,
reopen requests from either side, reconfirmation, cancel, complete, produced /
ready to ship / shipped (with a shipment and despatch advice) / delivered,
document attachments. By default every change

* bumps the order ``version`` (sometimes by more than one, as Tradecloud's
  unsubscribed events and other lines do),
* stamps the touched lines and the order with the world clock in
  milliseconds (several orders can share one millisecond),
* produces one webhook message: a new ``meta.messageId``, the flow's
  ``traceId``, and only the touched lines (polls return the whole order).

Those are convenient habits, not promises. **Documented mode**
(``World(seed, documented=True)``) does what the documentation allows and the
default world never does, so tests can prove exactly-once against the real
platform rather than against our own assumptions:

* header-only changes (contact reassigned, custom labels) bump the version
  and the order's ``lastUpdatedAt`` but no line's, and their events carry no
  lines: ``"lines": []`` or no ``lines`` key at all (§1.1: an event carries
  only the lines it touched);
* several messages share one version: resends (``OrderResentByBuyer``),
  order-documents events (which do not bump the version) and one command that
  yields two events for different lines;
* changes the integration is not subscribed to (``OrderLinesItemDetailsChanged``,
  the order-level ``deliveryOverdue`` indicator, or any step on demand) move
  the version and the stamps but send nothing, so the polled order's
  ``meta.messageId`` stays the previous message's;
* document ``lastUpdatedAt`` stamps of a share of orders and shipments are
  zone-less local times, the docs' own example form (§7.1), read as UTC;
* shipment approvals, rejections and header updates move the shipment's
  ``meta.lastUpdatedAt`` and leave the lines' own stamps alone (§1.1:
  changed lines are those stamped like the shipment);
* orders can be deleted (``GET /v2/order/{id}`` then answers 404).

Steps drawn at random include these situations for a share
(``documented_share``) of the draws; each is also a named step or method
for tests that want exactly one of them.

Documents are rendered as Tradecloud sends them: ``orderId`` in webhook events,
``id`` in polled and fetched orders, exact decimals (written with
``dumps_exact``), delivery-schedule and single-delivery flavours.

They carry everything a real order response does (api-facts §3, seed 003),
with values from ``content.py`` drawn from a generator of their own, so the
lifecycle a seed draws does not depend on them:

* requests per line and side (``supplierLine.requests.proposal`` and
  ``.reopenRequest``, ``buyerLine.requests.reopenRequest``) with their
  schedule, prices, charge lines, a reason and a status; answered requests
  stay readable on a share of lines (``Approved``, ``Rejected``, ``Closed`` when
  the line is cancelled), until another request takes their place. The first
  supplier proposal of every world, and a share of later ones, asks for a price
  in CNY with 18 decimals and leaves ``pricesIncludingRequests`` off its line
  (the issue's reproduction case; ``StepOptions.request`` asks for any other);
* ``confirmedLine`` (schedule, prices, charge lines) once a line is confirmed;
  the buyer's issued values stay in ``buyerLine`` beside the current ones;
* prices in a transaction and sometimes a base currency, with discounts and
  price units of 1 or 100; charge lines (UNCL7161) on the buyer line, in
  requests and on the agreed line; Service and Charge lines on a share of orders
  (``lineType``, ``chargeReasonCode``, no delivery expected: never shipped, the
  buyer marks them delivered);
* custom fields and texts (``properties``, ``notes``, ``labels``,
  ``customLabels``) on both sides of order and line, the supplier's from its
  first answer; documents on both sides at order and line level;
* item details, contract terms, project and production numbers, line
  indicators, ``eventDates`` (keys of our choosing, the docs name none),
  ``transportMode``, ETD and ETA once the supplier plans the transport;
* supplier splits: a confirmed new line with an empty ``buyerLine.position``
  and ``originalPosition`` until the buyer assigns a position
  (``split``, ``assign_position``); it ships only once it has one;
* shipments with parties, contacts, invoice numbers, purchase-order terms,
  departure and destinations (ETD, ETA window, ATD and ATA as they happen),
  ``despatchAdviceErpIssueDateTime``, and for a share load carriers,
  ``supplierErpMeta`` and a backorder.

Values are shared where they are equal (prices, charge lines, items and texts
render once and are interned), which keeps a 20k-order world's memory and its
first rendering affordable; nothing may mutate a rendered document.
"""

from __future__ import annotations

import bisect
import random
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal
from functools import lru_cache
from typing import Any, Final, Literal

from services.simulators.tradecloud import content
from services.simulators.tradecloud.content import (
    Charge,
    Pricing,
    Request,
    RequestSpec,
    RequestStatus,
    ShipmentContent,
)
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
    ("BP-LI-48", "Lithium battery pack 48 V", "PCE", Decimal("389.00")),
)

_ITEM_DOCUMENTS: dict[tuple[str, str], dict[str, Any]] = {}
"""``buyerLine.item`` by (number, revision): one shared object per item, never mutated."""

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
    "split",
    "assign_position",
    # documented mode: what the platform may do beyond the default world's habits
    "reassign_contact",
    "update_labels",
    "update_indicators",
    "change_item_details",
    "attach_order_document",
    "line_and_logistics_update",
    "resend",
    "reject_shipment",
    "update_shipment_header",
    "reissue_shipment",
]

Party = Literal["buyer", "supplier"]
HeaderLines = Literal["empty", "omit"]

REPRODUCTION: Final = RequestSpec(
    reason="capacity", currency="CNY", decimals=18, prices_including_requests=False
)
"""The issue's reproduction case: a proposal in yuan with 18 decimals and no
``pricesIncludingRequests`` on its line (every world's first supplier proposal)."""

UNSUBSCRIBED_EVENTS: Final = frozenset({"OrderLinesItemDetailsChanged", "OrderIndicatorsUpdated"})
"""Events the documented world's integration is not subscribed to (nothing is pushed).

``OrderIndicatorsUpdated`` is the simulator's own name for Tradecloud
recomputing the order-level ``indicators.deliveryOverdue``: no documented
event announces it, so no integration can subscribe to it.
"""


@lru_cache(maxsize=4096)
def _day(days: int) -> str:
    return (date(1970, 1, 1) + timedelta(days=days)).isoformat()


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch → Tradecloud's ``YYYY-MM-DDThh:mm:ss.SSSZ``.

    Integer arithmetic and a cached date: documents carry many stamps
    (``eventDates``), and this is most of what rendering them costs.
    """
    days, rest = divmod(ms, 86_400_000)
    seconds, millis = divmod(rest, 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{_day(days)}T{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def iso_local(ms: int) -> str:
    """The same instant as zone-less UTC wall-clock time, ``2026-01-05T08:00:00.123``.

    The form of the docs' own ``lastUpdatedAt`` examples (api-facts §7.1); we
    read a zone-less Tradecloud stamp as UTC.
    """
    return iso_ms(ms)[:-1]


def parse_ms(text: str) -> int:
    """An ISO date-time → milliseconds; a zone-less one is read as UTC."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000 + 0.5)


@dataclass(slots=True)
class Line:
    """One order line: its lifecycle state and what it renders besides.

    ``quantity``, ``date``, ``price`` and ``charges`` are the current Issued or
    Confirmed values (``deliverySchedule``, ``prices``, ``confirmedLine``); the
    ``buyer_*`` values are what the buyer issued (``buyerLine``), which a
    supplier's proposal or reopen request does not change.
    """

    id: str
    position: str
    item: tuple[str, str, str, Decimal]
    quantity: Decimal
    date: str
    price: Pricing
    process: str = "Issued"
    in_progress: str | None = None
    logistics: str = "Open"
    confirmed: bool = False
    request: Request | None = None
    """The open request (at most one per line), rendered with status ``Open``."""
    answered: dict[tuple[str, str], Request] = field(default_factory=dict)
    """Answered requests still shown, by their (side, key), with their final status."""
    keep_answered: bool = False
    """Whether this line keeps answered requests visible (a share of lines does)."""
    shipped: Decimal = Decimal(0)
    updated_ms: int = 0
    documents: list[dict[str, Any]] = field(default_factory=list)
    buyer_documents: list[dict[str, Any]] = field(default_factory=list)
    item_details: dict[str, Any] | None = None
    """``mergedItemDetails``: the buyer's, merged with the supplier's corrections."""
    supplier_description: str | None = None
    """``supplierLine.description``, once the supplier updated the line (rendered when set)."""
    line_type: str = "Item"
    charge_reason: str | None = None
    """``chargeReasonCode`` (UNCL7161) of a Service or Charge line."""
    charges: tuple[Charge, ...] = ()
    """The current charge lines (issued, or agreed: ``confirmedLine.chargeLines``)."""
    buyer_quantity: Decimal | None = None
    buyer_date: str | None = None
    buyer_price: Pricing | None = None
    buyer_charges: tuple[Charge, ...] = ()
    item_document: dict[str, Any] = field(default_factory=dict)
    """``buyerLine.item``, fixed at issue."""
    buyer_extra: dict[str, Any] = field(default_factory=dict)
    """The buyer's static line fields: terms, project and production numbers, texts."""
    supplier_extra: dict[str, Any] | None = None
    """The supplier's line texts, drawn when the supplier first answers the line."""
    sales_order: tuple[str, str] = ("", "")
    """``supplierLine.salesOrderNumber`` and ``salesOrderPosition``."""
    transport_mode: str | None = None
    etd: str | None = None
    eta: str | None = None
    original_position: str | None = None
    """``buyerLine.originalPosition`` of a line the supplier split off."""
    overdue: bool = False
    """``indicators.deliveryOverdue``, brought up to date whenever the line is touched."""
    event_ms: dict[str, int] = field(default_factory=dict)
    """``eventDates`` (their keys are undocumented; ours name what happened)."""
    seen: tuple[str, str] = ("Issued", "Open")
    """(process, logistics) when ``eventDates`` were last brought up to date."""

    @property
    def no_delivery(self) -> bool:
        """Service and charge lines expect no delivery (``indicators.noDeliveryExpected``)."""
        return self.line_type != "Item"


@dataclass(slots=True)
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
    message_ms: int = 0
    """When the message in ``meta`` was created: the last change *sent* to the integration."""
    zoneless: bool = False
    """Render this order's ``lastUpdatedAt`` stamps without a zone (documented mode)."""
    buyer_contact: dict[str, Any] | None = None
    supplier_contact: dict[str, Any] | None = None
    buyer_labels: list[str] | None = None
    """``buyerOrder.customLabels`` (labels added in the portal, not sent by the ERP)."""
    supplier_labels: list[str] | None = None
    """``supplierOrder.customLabels``."""
    delivery_overdue: bool = False
    buyer_documents: list[dict[str, Any]] = field(default_factory=list)
    supplier_documents: list[dict[str, Any]] = field(default_factory=list)
    buyer_extra: dict[str, Any] = field(default_factory=dict)
    """The buyer's static order fields: description, terms, destination, texts."""
    supplier_extra: dict[str, Any] | None = None
    """The supplier's order texts, drawn when the supplier first answers."""
    terms: dict[str, Any] = field(default_factory=dict)
    event_ms: dict[str, int] = field(default_factory=dict)
    seen: tuple[str, str] = ("Issued", "Open")

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
    line_stamps: list[int] = field(default_factory=list)
    """Each line's own ``meta.lastUpdatedAt`` (rendered as such in documented mode)."""
    reason: str | None = None
    """``status.processStatusReason`` (a rejection's free text)."""
    locations: dict[str, Any] | None = None
    erp_meta: dict[str, Any] | None = None
    """``meta.supplierErpMeta``."""
    zoneless: bool = False
    revision: int = 0
    content: ShipmentContent | None = None
    """Parties, contacts, identifiers, terms, load carriers: drawn when issued."""
    ordered: list[Decimal] = field(default_factory=list)
    """Each line's ordered quantity when shipped (its backorder is the rest)."""
    backorder_date: str | None = None


@dataclass(frozen=True)
class Change:
    """One thing that happened: what a webhook would tell and what a poll would show."""

    kind: Literal["order", "order_documents", "shipment"]
    event_name: str
    document_id: str
    line_ids: tuple[str, ...]
    message_id: str
    updated_ms: int
    version: int | None = None
    """The order's version after the change (None for shipments)."""
    subscribed: bool = True
    """False: the integration is not subscribed to this event, so nothing is pushed."""
    lines_key: bool = True
    """False: the webhook event has no ``lines`` key at all (header-only changes)."""
    get_only: bool = False
    """Only a legacy GET webhook announces it (an order deletion has no POST event)."""


@dataclass(frozen=True)
class StepOptions:
    """How a documented step is carried out; ``None`` leaves the choice to the seed."""

    subscribed: bool | None = None
    """False: the integration is not subscribed to the step's event(s)."""
    by: Party | None = None
    """Who acts, for steps either party can take (contacts, labels, documents)."""
    lines: HeaderLines | None = None
    """A header-only event's lines: ``"empty"`` (``[]``) or ``"omit"`` (no key)."""
    request: RequestSpec | None = None
    """A request's content (``propose``, ``buyer_reopen``, ``supplier_reopen``)."""


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


PROCESS_DATES: Final = {
    "Confirmed": "lastConfirmedAt",
    "Rejected": "rejectedAt",
    "Cancelled": "cancelledAt",
    "Completed": "completedAt",
}
LOGISTICS_DATES: Final = {"Shipped": "shippedAt", "Delivered": "deliveredAt"}


def _note_event_dates(
    dates: dict[str, int], seen: tuple[str, str], process: str, logistics: str, stamp: int
) -> tuple[str, str]:
    """Bring ``eventDates`` up to date with a status change; returns the statuses now seen.

    The docs leave the keys of ``eventDates`` undocumented ("some key event
    date/times"): ours are ``issuedAt``, ``firstConfirmedAt``,
    ``lastConfirmedAt``, ``rejectedAt``, ``cancelledAt``, ``completedAt``,
    ``shippedAt`` and ``deliveredAt``, each the stamp of the change that made it.
    """
    dates.setdefault("issuedAt", stamp)
    if process != seen[0]:
        if process == "Confirmed":
            dates.setdefault("firstConfirmedAt", stamp)
        if (key := PROCESS_DATES.get(process)) is not None:
            dates[key] = stamp
    if logistics != seen[1] and (key := LOGISTICS_DATES.get(logistics)) is not None:
        dates[key] = stamp
    return process, logistics


def _confirmed(line: Line, *logistics: str) -> bool:
    return line.process == "Confirmed" and (not logistics or line.logistics in logistics)


def _open_request(kind: str, by: str | None = None) -> Callable[[Line], bool]:
    def rule(line: Line) -> bool:
        request = line.request
        return request is not None and request.kind == kind and by in (None, request.by)

    return rule


def _answerable(line: Line) -> bool:
    """The supplier can answer the line: newly issued, or after its proposal was rejected."""
    return line.process == "Issued" or line.in_progress == "RejectedSupplierProposal"


def _splittable(line: Line) -> bool:
    return (
        line.process == "Issued"
        and not line.no_delivery
        and line.original_position is None
        and line.quantity >= 2
    )


RULES: Final[dict[Step, tuple[int, Callable[[Line], bool]]]] = {
    # step: (weight when drawn at random, which lines it applies to)
    "accept": (3, _answerable),
    "propose": (1, _answerable),
    "reject": (1, _answerable),
    "update_by_buyer": (1, lambda ln: ln.process == "Issued"),
    "split": (1, _splittable),
    "assign_position": (2, lambda ln: ln.position == ""),
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
    # Service and charge lines expect no delivery: never produced or shipped; the
    # buyer marks them delivered once rendered. A split-off line ships once the
    # buyer gave it a position (a shipment line names its order line by position).
    "produce": (2, lambda ln: _confirmed(ln, "Open") and not ln.no_delivery),
    "ready": (2, lambda ln: _confirmed(ln, "Produced")),
    "ship": (2, lambda ln: _confirmed(ln, "Produced", "ReadyToShip") and ln.position != ""),
    "deliver": (
        2,
        lambda ln: _confirmed(ln, "Shipped") or (ln.no_delivery and _confirmed(ln, "Open")),
    ),
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

    def __init__(
        self,
        seed: int = 1,
        clock: Callable[[], int] | None = None,
        *,
        documented: bool = False,
    ) -> None:
        self.seed = seed
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
        self.deleted: dict[str, Order] = {}
        """Orders deleted on the platform: gone from polls and ``GET /v2/order/{id}``."""
        # Documented mode (see the module docstring); all off by default. Its own
        # generator keeps the default world's draws exactly as they were.
        self.documented = False
        self.documented_share = 0.0
        """Share of random steps drawn from the documented situations."""
        self.zoneless_share = 0.0
        """Share of new orders and shipments whose stamps render without a zone."""
        self.own_shipment_line_stamps = False
        """Render each shipment line's own stamp (else every line shows the shipment's)."""
        self.unsubscribed_events: frozenset[str] = frozenset()
        self._doc_rng = random.Random(seed * 104_729 + 7)
        self._doc_serial = 0
        # What documents carry besides the lifecycle (content.py) draws from a
        # generator of its own, so content never changes which steps a seed draws.
        self._content = random.Random(seed * 1_000_003 + 17)
        self._proposals = 0
        self._options = StepOptions()
        if documented:
            self.enable_documented()

    def enable_documented(self, *, share: float = 0.3, zoneless_share: float = 0.5) -> None:
        """Behave as the documentation allows from now on (what exists stays as it is)."""
        self.documented = True
        self.documented_share = share
        self.zoneless_share = zoneless_share
        self.own_shipment_line_stamps = True
        self.unsubscribed_events = UNSUBSCRIBED_EVENTS
        self._rendered.clear()

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
        self,
        *,
        lines: int | None = None,
        tie: bool = False,
        single_delivery: bool = False,
        zoneless: bool | None = None,
    ) -> Change:
        """A new order (``zoneless``: its stamps without a zone; None: the mode decides).

        Without a given line count, a share of orders also carries a Service or
        Charge line (``lineType``, ``chargeReasonCode``) after its item lines.
        """
        self._serial += 1
        order_id = self.uuid()
        count = lines if lines is not None else self.rng.choice((1, 1, 2, 3, 4, 6))
        start = EPOCH.date() + timedelta(days=self.rng.randint(14, 90))
        c = self._content
        terms = c.choice(content.TERMS)
        new_lines = []
        for i in range(count):
            item = self.rng.choice(ITEMS)
            line = Line(
                id=self.uuid(),
                position=f"{(i + 1) * 10:04d}",
                item=item,
                quantity=Decimal(self.rng.choice((1, 5, 12, 40, 100, 250, 1000)))
                * (Decimal("1.5") if item[2] == "M" else 1),
                date=(start + timedelta(days=7 * i)).isoformat(),
                price=content.issue_pricing(c, item[3], item[2]),
            )
            self._dress_line(line, i)
            new_lines.append(line)
        if lines is None and c.random() < 0.15:
            new_lines.append(self._service_line(len(new_lines), start))
        order = Order(
            id=order_id,
            number=f"45{self._serial:08d}",
            lines=new_lines,
            trace_id=self.uuid(),
            single_delivery=single_delivery,
            terms=terms,
        )
        order.buyer_extra = self._buyer_order_extra(order)
        if zoneless is None and self.documented:
            zoneless = self._doc_rng.random() < self.zoneless_share
        order.zoneless = bool(zoneless)
        self.orders[order_id] = order
        return self._touch(order, new_lines, "OrderIssuedByBuyer", tie=tie)

    def _dress_line(self, line: Line, index: int) -> None:
        """What the buyer's ERP sends with an item line besides its values (order.json)."""
        c = self._content
        number, name, unit, _ = line.item
        line.buyer_quantity, line.buyer_date = line.quantity, line.date
        line.buyer_price = line.price
        line.charges = line.buyer_charges = content.charges(
            c, line.price.currency, c.choice((0, 0, 1))
        )
        revision = c.choice(("A", "B", "2020.58", "3"))
        line.item_document = _ITEM_DOCUMENTS.setdefault(
            (number, revision),
            {
                "number": number,
                "revision": revision,
                "name": name,
                "purchaseUnitOfMeasureIso": unit,
                "supplierItemNumber": f"S-{number}",
            },
        )
        line.item_details = content.item_details(c, number, self._serial * 100 + index)
        line.transport_mode = c.choice(content.TRANSPORT_MODES) if c.random() < 0.5 else None
        line.keep_answered = c.random() < 0.65
        line.sales_order = (f"SO{self._serial:07d}", str(index + 1))
        line.buyer_extra = self._buyer_line_extra(index)

    def _service_line(self, index: int, start: date) -> Line:
        """A Service or Charge line: no item number, no delivery expected (api-facts §3.2)."""
        c = self._content
        line_type, reason, name, unit, quantity, price = c.choice(content.SERVICES)
        line = Line(
            id=self.uuid(),
            position=f"{(index + 1) * 10:04d}",
            item=("", name, unit, price),
            quantity=quantity,
            date=start.isoformat(),
            price=content.pricing(price, unit, base=c.random() < 0.5),
            line_type=line_type,
            charge_reason=reason,
        )
        line.buyer_quantity, line.buyer_date = line.quantity, line.date
        line.buyer_price = line.price
        line.item_document = {
            "number": "",
            "name": name,
            "purchaseUnitOfMeasureIso": unit,
            "supplierItemNumber": "",
        }
        line.keep_answered = c.random() < 0.65
        line.sales_order = (f"SO{self._serial:07d}", str(index + 1))
        line.buyer_extra = self._buyer_line_extra(index)
        return line

    def _buyer_line_extra(self, index: int) -> dict[str, Any]:
        c = self._content
        extra: dict[str, Any] = {}
        if c.random() < 0.3:
            extra["terms"] = {
                "contractNumber": f"CT-{2026_000 + self._serial % 97}",
                "contractPosition": f"{index + 1:04d}",
            }
        if c.random() < 0.3:
            extra["projectNumber"] = f"PROJ{12_000 + self._serial % 500}"
        if c.random() < 0.2:
            extra["productionNumber"] = f"PROD{80_000 + self._serial}"
        if c.random() < 0.4:
            extra["properties"] = content.properties(c, content.BUYER_PROPERTIES)
        if c.random() < 0.3:
            extra["notes"] = content.notes(c, content.BUYER_NOTES)
        if c.random() < 0.3:
            extra["labels"] = content.labels(c, content.BUYER_LABELS)
        if c.random() < 0.1:
            extra["customLabels"] = ["checked"]
        return extra

    def _buyer_order_extra(self, order: Order) -> dict[str, Any]:
        c = self._content
        extra: dict[str, Any] = {}
        if c.random() < 0.6:
            extra["description"] = c.choice(
                (
                    f"Replenishment week {2 + self._serial % 50}",
                    "Spare parts for service stock",
                    "Call-off on framework contract",
                    "Project Maasvlakte crane 3",
                )
            )
        extra["terms"] = order.terms
        extra["destination"] = c.choice(content.DESTINATIONS)
        if c.random() < 0.7:
            extra["properties"] = content.properties(c, content.BUYER_PROPERTIES)
        if c.random() < 0.6:
            extra["notes"] = content.notes(c, content.BUYER_NOTES)
        if c.random() < 0.5:
            extra["labels"] = content.labels(c, content.BUYER_LABELS)
        return extra

    def _supplier_answers(self, order: Order, lines: Sequence[Line]) -> None:
        """The supplier's own texts appear with its first answer (order-response.json)."""
        c = self._content
        if order.supplier_extra is None:
            extra: dict[str, Any] = {}
            if c.random() < 0.4:
                extra["description"] = "Order confirmation " + order.lines[0].sales_order[0]
            if c.random() < 0.5:
                extra["properties"] = content.properties(c, content.SUPPLIER_PROPERTIES)
            if c.random() < 0.5:
                extra["notes"] = content.notes(c, content.SUPPLIER_NOTES)
            if c.random() < 0.3:
                extra["labels"] = content.labels(c, content.SUPPLIER_LABELS)
            order.supplier_extra = extra
        for line in lines:
            if line.supplier_extra is None:
                line_extra: dict[str, Any] = {}
                if c.random() < 0.3:
                    line_extra["properties"] = content.properties(c, content.SUPPLIER_PROPERTIES)
                if c.random() < 0.3:
                    line_extra["notes"] = content.notes(c, content.SUPPLIER_NOTES)
                if c.random() < 0.2:
                    line_extra["labels"] = content.labels(c, content.SUPPLIER_LABELS)
                line.supplier_extra = line_extra

    # ------------------------------------------------------------ lifecycle

    def possible_steps(self, order: Order) -> list[Step]:
        """Steps that apply now, repeated by their weight (documented ones in that mode)."""
        steps = self._lifecycle_steps(order)
        if self.documented:
            steps += self.documented_steps(order)
        return steps

    def _lifecycle_steps(self, order: Order) -> list[Step]:
        """The default world's steps that apply to at least one line now, by weight."""
        steps = [
            step
            for step, (weight, rule) in RULES.items()
            if any(rule(line) for line in order.lines)
            for _ in range(weight)
        ]
        if any(self.shipments[s].status == "Issued" for s in self._shipments_of.get(order.id, ())):
            steps.append("approve_shipment")
        return steps

    def documented_steps(self, order: Order, *, drawn: bool = False) -> list[Step]:
        """The documented situations possible for ``order`` now.

        ``drawn``: only those a random draw may pick, which leaves finished
        orders alone (otherwise every order would stay movable forever);
        asked for by name, they apply to any order.
        """
        live = [
            ln for ln in order.lines if ln.process not in ("Cancelled", "Completed", "Rejected")
        ]
        if drawn and not live:
            return []
        steps: list[Step] = [
            "reassign_contact",
            "update_labels",
            "update_indicators",
            "attach_order_document",
            "resend",
            "change_item_details",
        ]
        if self._line_and_logistics_pairs(order):
            steps += ["line_and_logistics_update"] * 2
        shipments = [self.shipments[s] for s in self._shipments_of.get(order.id, ())]
        if any(s.status == "Issued" for s in shipments):
            steps.append("reject_shipment")
        if any(s.status != "Rejected" for s in shipments):
            steps += ["update_shipment_header", "update_shipment_header"]
        if shipments:
            steps.append("reissue_shipment")
        return steps

    def can_move(self, order: Order) -> bool:
        """Whether a random ``advance`` of ``order`` would change something."""
        return bool(
            self._lifecycle_steps(order)
            or (self.documented and self.documented_steps(order, drawn=True))
        )

    def advance(
        self, order_id: str, step: Step | None = None, options: StepOptions | None = None
    ) -> Change | None:
        """Apply one lifecycle step (a random possible one when ``step`` is None).

        In documented mode a ``documented_share`` of random draws picks a
        documented situation. A documented step asked for by name applies in
        any mode; ``options`` says how (who acts, header lines, subscribed).
        """
        order = self.orders[order_id]
        if step is None:
            step = self._draw(order)
            if step is None:
                return None
        elif step not in self._lifecycle_steps(order) and step not in self.documented_steps(order):
            raise ValueError(f"step {step!r} is not possible for order {order_id} now")
        self._options = options or StepOptions()
        try:
            change: Change = getattr(self, f"_step_{step}")(order)
        finally:
            self._options = StepOptions()
        return change

    def _draw(self, order: Order) -> Step | None:
        lifecycle = self._lifecycle_steps(order)
        if not self.documented:  # the default world draws exactly as it always did
            return self.rng.choice(lifecycle) if lifecycle else None
        documented = self.documented_steps(order, drawn=True)
        if documented and (not lifecycle or self.rng.random() < self.documented_share):
            return self.rng.choice(documented)
        return self.rng.choice(lifecycle) if lifecycle else None

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
        self._supplier_answers(order, lines)
        return self._touch(order, lines, "OrderLinesAcceptedBySupplier")

    def _step_reject(self, order: Order) -> Change:
        lines = self._lines(order, "reject", at_most=1)
        for line in lines:
            line.process, line.in_progress = "Rejected", None
        self._supplier_answers(order, lines)
        return self._touch(order, lines, "OrderLinesRejectedBySupplier")

    def _step_update_by_buyer(self, order: Order) -> Change:
        lines = self._lines(order, "update_by_buyer", at_most=1)
        for line in lines:
            line.quantity += Decimal(self.rng.choice((1, 5, 10)))
            line.buyer_quantity = line.quantity
        return self._touch(order, lines, "OrderLinesUpdatedByBuyer")

    def _step_split(self, order: Order) -> Change:
        """The supplier confirms a line in two deliveries: the second becomes a new line.

        Tradecloud represents the split-off line with an empty ``buyerLine.position``
        and ``originalPosition`` naming the line it came from, until the buyer's ERP
        assigns it a position (``assign_position``). The new line is confirmed, as
        the supplier's different values are when the buyer confirms automatically.
        """
        (line,) = self._lines(order, "split", at_most=1)
        share = Decimal(self._content.choice(("0.5", "0.6", "0.75")))
        first = (line.quantity * share).quantize(Decimal(1), rounding=ROUND_DOWN)
        first = min(max(first, Decimal(1)), line.quantity - 1)
        later = date.fromisoformat(line.date) + timedelta(days=self._content.choice((14, 21, 28)))
        split = replace(
            line,
            id=self.uuid(),
            position="",
            original_position=line.position,
            quantity=line.quantity - first,
            date=later.isoformat(),
            buyer_quantity=line.quantity - first,
            buyer_date=later.isoformat(),
            documents=[],
            buyer_documents=[],
            answered={},
            event_ms={},
            sales_order=(line.sales_order[0], f"{line.sales_order[1]}.1"),
        )
        line.quantity = first
        for moved in (line, split):
            moved.process, moved.in_progress, moved.confirmed = "Confirmed", None, True
        order.lines.insert(order.lines.index(line) + 1, split)
        self._supplier_answers(order, [line, split])
        return self._touch(order, [line, split], "OrderLinesConfirmedBySupplier")

    def _step_assign_position(self, order: Order) -> Change:
        """The buyer's ERP gives a split-off line its own position (``originalPosition`` stays)."""
        (line,) = self._lines(order, "assign_position", at_most=1)
        taken = [int(ln.position) for ln in order.lines if ln.position.isdigit()]
        line.position = f"{max(taken, default=0) + 10:04d}"
        return self._touch(order, [line], "OrderLinesUpdatedByBuyer")

    def _requested(self, order: Order, step: Step, *, at_most: int | None = None) -> list[Line]:
        """The lines a request step asks for: the spec's line, else the usual choice.

        With a request spec but no line, only the first line the step applies
        to: a test asking for one proposal gets exactly one.
        """
        spec = self._options.request
        if spec is None:
            return self._lines(order, step, at_most=at_most)
        candidates = [line for line in order.lines if RULES[step][1](line)]
        if spec.line is not None:
            candidates = [ln for ln in candidates if spec.line in (ln.position, ln.id)]
            if not candidates:
                raise ValueError(f"line {spec.line!r} of order {order.id} cannot {step} now")
        return candidates[:1]

    def _open(
        self,
        order: Order,
        lines: list[Line],
        by: Literal["buyer", "supplier"],
        kind: Literal["proposal", "reopen", "reconfirmation"],
        status: str,
    ) -> None:
        """Open a request: the line goes InProgress; plain schedules and prices stay (§4).

        A request asks for a later date, a moved price (sometimes in another
        currency, a yuan price with 18 decimals), sometimes another quantity and
        other charge lines, with a reason. The world's first supplier proposal,
        and a share of later ones, is the issue's reproduction case: a price in
        CNY with 18 decimals and no ``pricesIncludingRequests`` on the line.
        """
        for line in lines:
            # The lifecycle generator draws as it always did; content draws apart.
            days = self.rng.choice((3, 7, 14))
            factor = Decimal(self.rng.choice(("1.00", "1.05", "0.97")))
            if kind == "reconfirmation":
                request = Request(by, kind, line.quantity, line.date, line.price)
            else:
                spec = self._options.request
                if spec is None and kind == "proposal":
                    self._proposals += 1
                    if self._proposals == 1:  # another date, quantity and price in yuan
                        less = (line.quantity * Decimal("0.8")).quantize(Decimal(1), ROUND_DOWN)
                        spec = replace(
                            REPRODUCTION,
                            quantity=less if 0 < less < line.quantity else line.quantity + 1,
                        )
                request = self._new_request(line, by, kind, spec, days, factor)
            line.request = request
            line.process, line.in_progress = "InProgress", status
        if by == "supplier":
            self._supplier_answers(order, lines)

    def _new_request(
        self,
        line: Line,
        by: Literal["buyer", "supplier"],
        kind: Literal["proposal", "reopen"],
        spec: RequestSpec | None,
        days: int,
        factor: Decimal,
    ) -> Request:
        c = self._content
        given = spec or RequestSpec()
        if given.date is not None:
            when = given.date
        else:
            shift = given.days if given.days is not None else days
            when = (date.fromisoformat(line.date) + timedelta(days=shift)).isoformat()
        quantity = given.quantity
        if quantity is None:
            quantity = line.quantity
            if spec is None and kind == "proposal" and c.random() < 0.3:
                box = Decimal(10) if quantity >= 10 else Decimal(1)  # a tenth more, full boxes
                more = (quantity * Decimal("1.1") / box).to_integral_value(rounding=ROUND_CEILING)
                quantity = more * box
        price = content.requested_pricing(c, line.price, spec, factor)
        if given.charge_lines is not None:
            charges = content.charges(c, price.currency, given.charge_lines)
        elif spec is None and c.random() < 0.3:
            charges = content.charges(c, price.currency, 1)
        else:
            charges = line.charges
        # The reproduction case: a yuan price and no pricesIncludingRequests on the line.
        hide = given.prices_including_requests is False or (
            spec is None and price.currency == "CNY"
        )
        return Request(
            by,
            kind,
            quantity,
            when,
            price,
            reason=given.reason if given.reason is not None else content.reason(c, by, kind),
            charges=charges,
            hide_including_prices=hide,
        )

    def _close(self, line: Line, *, apply: bool, status: RequestStatus | None = None) -> None:
        """Answer the line's request; ``apply`` takes its values (approved proposal or reopen).

        The answered request stays readable with ``status`` on lines that keep
        them (a share), until another request takes its place.
        """
        request = line.request
        if request is not None:
            if apply:
                line.date, line.price, line.quantity = request.date, request.price, request.quantity
                line.charges = request.charges
                if request.by == "buyer":  # the buyer's own order line changed
                    line.buyer_date, line.buyer_quantity = request.date, request.quantity
                    line.buyer_price, line.buyer_charges = request.price, request.charges
            self._keep_answered(line, request, status or ("Approved" if apply else "Rejected"))
        line.request = None
        line.process, line.in_progress, line.confirmed = "Confirmed", None, True

    @staticmethod
    def _keep_answered(line: Line, request: Request, status: RequestStatus) -> None:
        if request.kind == "reconfirmation":
            return
        if line.keep_answered:
            line.answered[request.slot] = replace(request, status=status)
        else:
            line.answered.pop(request.slot, None)

    def _step_propose(self, order: Order) -> Change:
        lines = self._requested(order, "propose")
        self._open(order, lines, "supplier", "proposal", "OpenSupplierProposal")
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
            if line.request is not None:
                self._keep_answered(line, line.request, "Rejected")
            line.request = None
            line.process, line.in_progress = "InProgress", "RejectedSupplierProposal"
        return self._touch(order, lines, "OrderChangesProposalRejectedByBuyer")

    def _step_buyer_reopen(self, order: Order) -> Change:
        lines = self._requested(order, "buyer_reopen", at_most=1)
        self._open(order, lines, "buyer", "reopen", "OpenBuyerReopenRequest")
        return self._touch(order, lines, "OrderLinesReopenRequestedByBuyer")

    def _step_supplier_reopen(self, order: Order) -> Change:
        lines = self._requested(order, "supplier_reopen", at_most=1)
        self._open(order, lines, "supplier", "reopen", "OpenSupplierReopenRequest")
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
        self._open(order, lines, "buyer", "reconfirmation", "OpenBuyerReconfirmationRequest")
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
        """The buyer cancels; an open request on the line is closed (no longer relevant)."""
        lines = self._lines(order, "cancel", at_most=1)
        for line in lines:
            if line.request is not None:
                self._keep_answered(line, line.request, "Closed")
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
            if after == "ReadyToShip":  # the supplier plans the transport: ETD and ETA
                line.eta = line.date
                line.etd = (date.fromisoformat(line.date) - timedelta(days=2)).isoformat()
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
        """The buyer marks lines delivered; a shipment whose lines all arrived gets its ATA."""
        change = self._logistics(
            order, "deliver", "Delivered", "OrderLinesMarkedAsDeliveredByBuyer"
        )
        for shipment_id in self._shipments_of.get(order.id, ()):
            shipment = self.shipments[shipment_id]
            if (
                shipment.status != "Rejected"
                and shipment.locations is not None
                and "ataDate" not in shipment.locations["destinations"][-1]
                and all(line.logistics == "Delivered" for line, _ in shipment.lines)
            ):
                self._arrived(shipment)
        return change

    def _arrived(self, shipment: Shipment) -> Change:
        """``ShipmentHeaderUpdatedBySupplier`` with the actual departure and arrival dates."""
        assert shipment.locations is not None
        today = datetime.fromtimestamp(self._now / 1000, UTC).date().isoformat()
        departure = shipment.locations["departure"]
        departure.setdefault("atdDate", departure.get("etdDate", today))
        for stop in shipment.locations["destinations"]:
            stop["ataDate"] = today
            if stop is not shipment.locations["destinations"][-1]:
                stop["atdDate"] = today
        return self._touch_shipment(shipment, "ShipmentHeaderUpdatedBySupplier", restamp=())

    def _step_ship(self, order: Order) -> Change:
        """Ship lines: the order moves to Shipped and a shipment is issued.

        The shipment carries what a despatch advice does (despatch-advice.json):
        parties, contacts, invoice numbers, purchase-order terms, departure and
        destinations with ETD and an ETA window, for a share load carriers and
        ``supplierErpMeta``, and the supplier ERP's zone-less issue time.
        """
        lines = self._lines(order, "ship")
        today = datetime.fromtimestamp(self._now / 1000, UTC).date()
        for line in lines:
            line.logistics, line.shipped = "Shipped", line.quantity
            line.etd = today.isoformat()
        change = self._touch(order, lines, "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier")
        self._serial += 1
        shipment = Shipment(
            id=f"{SUPPLIER_COMPANY}-SH{self._serial:08d}",
            number=f"SH{self._serial:08d}",
            order_id=order.id,
            lines=[(line, line.quantity) for line in lines],
            trace_id=self.uuid(),
            ordered=[line.quantity for line in lines],
        )
        if self.documented:
            shipment.zoneless = self._doc_rng.random() < self.zoneless_share
        c = self._content
        local = datetime.fromtimestamp(self._now / 1000 - c.randint(300, 7200), UTC) + timedelta(
            hours=1
        )  # the supplier's ERP writes its own wall-clock time (CET), without a zone
        shipment.content = content.shipment_content(
            c,
            serial=self._serial,
            lines=len(lines),
            transport_mode=next((ln.transport_mode for ln in lines if ln.transport_mode), None),
            terms=order.terms,
            issued_local=local.strftime("%Y-%m-%dT%H:%M:%S"),
            user_ids=(self.uuid(), self.uuid()),
        )
        shipment.locations = content.locations(c, today, shipment.content.transport_mode)
        if c.random() < 0.5:
            shipment.erp_meta = content.erp_meta(c, self._serial, shipment.revision)
        self.shipments[shipment.id] = shipment
        self._shipments_of.setdefault(order.id, []).append(shipment.id)
        self._touch_shipment(shipment, "ShipmentIssuedBySupplier", tie=True)
        return change

    def _step_attach_document(self, order: Order) -> Change:
        (line,) = self._lines(order, "attach_document", at_most=1)
        object_id = self.uuid()
        if not self.documented:
            line.documents.append(self._document(object_id, "certificate", line))
            return self._touch(
                order, [line], "OrderDocumentsAttachedBySupplier", kind="order_documents"
            )
        # Documented: either party attaches, and a documents event keeps the version.
        by = self._by()
        if by == "buyer":
            line.buyer_documents.append(self._document(object_id, "drawing", line))
        else:
            line.documents.append(self._document(object_id, "certificate", line))
        return self._touch(
            order,
            [line],
            f"OrderDocumentsAttachedBy{by.title()}",
            kind="order_documents",
            bump=False,
        )

    def _document(
        self,
        object_id: str,
        kind: Literal["drawing", "certificate", "terms", "confirmation"],
        line: Line | None = None,
        subject: str = "",
    ) -> dict[str, Any]:
        if line is not None:
            subject = line.item[0] or line.item[1]
        return content.document(
            self._content, self._next_doc_serial(), object_id, kind=kind, subject=subject
        )

    # ------------------------------------------------------------ documented situations

    def _by(self) -> Party:
        by = self._options.by
        return by if by is not None else self._doc_rng.choice(("buyer", "supplier"))

    def _header_lines_key(self) -> bool:
        """Whether a header-only event has ``"lines": []`` (True) or no ``lines`` key."""
        if self._options.lines is not None:
            return self._options.lines == "empty"
        return self._doc_rng.random() < 0.5

    def _next_doc_serial(self) -> int:
        self._doc_serial += 1
        return self._doc_serial

    def _step_reassign_contact(self, order: Order) -> Change:
        """Header only: ``buyerOrder.contact`` / ``supplierOrder.contact`` changes."""
        by, n = self._by(), self._next_doc_serial()
        contact = {"userId": self.uuid(), "email": f"{by}.contact{n}@{by}.example"}
        if by == "buyer":
            order.buyer_contact = contact
        else:
            order.supplier_contact = contact
        return self._touch(
            order, [], f"OrderContactReassignedBy{by.title()}", lines_key=self._header_lines_key()
        )

    def _step_update_labels(self, order: Order) -> Change:
        """Header only: the party's custom labels (``buyerOrder.labels``, ``customLabels``)."""
        by, n = self._by(), self._next_doc_serial()
        labels = [f"{by}-label-{n}", self._doc_rng.choice(("urgent", "project-x", "audit"))]
        if by == "buyer":
            order.buyer_labels = labels
        else:
            order.supplier_labels = labels
        return self._touch(
            order,
            [],
            f"OrderCustomLabelsUpdatedBy{by.title()}",
            lines_key=self._header_lines_key(),
        )

    def _step_update_indicators(self, order: Order) -> Change:
        """Header only: Tradecloud flips the order-level ``indicators.deliveryOverdue``.

        No documented event announces it, so by default nothing is pushed.
        """
        order.delivery_overdue = not order.delivery_overdue
        return self._touch(order, [], "OrderIndicatorsUpdated", lines_key=self._header_lines_key())

    def _step_change_item_details(self, order: Order) -> Change:
        """``OrderLinesItemDetailsChanged`` on one line (unsubscribed by default)."""
        live = [
            ln for ln in order.lines if ln.process not in ("Cancelled", "Completed", "Rejected")
        ]
        line = self._doc_rng.choice(live or order.lines)
        line.item_details = content.corrected_details(
            self._content, line.item_details, self._next_doc_serial()
        )
        return self._touch(order, [line], "OrderLinesItemDetailsChanged")

    def _step_attach_order_document(self, order: Order) -> Change:
        """An order-level document (``buyerOrder``/``supplierOrder.documents``): no lines."""
        by = self._by()
        kind: Literal["terms", "confirmation"] = "terms" if by == "buyer" else "confirmation"
        document = self._document(self.uuid(), kind, subject=order.number)
        (order.buyer_documents if by == "buyer" else order.supplier_documents).append(document)
        return self._touch(
            order,
            [],
            f"OrderDocumentsAttachedBy{by.title()}",
            kind="order_documents",
            bump=not self.documented,
            lines_key=self._header_lines_key(),
        )

    def _line_and_logistics_pairs(self, order: Order) -> list[tuple[Line, Line]]:
        """(a line to update, a different confirmed line whose logistics can move)."""
        return [
            (updated, moved)
            for moved in order.lines
            if _confirmed(moved, "Open", "Produced") and not moved.no_delivery
            for updated in order.lines
            if updated is not moved
            and updated.process not in ("Cancelled", "Completed", "Rejected")
        ]

    def _step_line_and_logistics_update(self, order: Order) -> Change:
        """One supplier command, two events at one version and one stamp.

        The supplier updates one line (``OrderLinesUpdatedBySupplier``) and the
        logistics of another (``…DeliveryScheduleLogisticsUpdatedBySupplier``):
        two messages, two message ids, the same ``version`` and ``lastUpdatedAt``.
        """
        pairs = self._line_and_logistics_pairs(order)
        if not pairs:
            raise ValueError(f"order {order.id} has no two lines for one command")
        updated, moved = self._doc_rng.choice(pairs)
        updated.supplier_description = f"Sales text rev. {self._next_doc_serial()}"
        moved.logistics = "Produced" if moved.logistics == "Open" else "ReadyToShip"
        stamp = self.now_ms()
        first = self._touch(order, [updated], "OrderLinesUpdatedBySupplier", stamp=stamp)
        self._touch(
            order,
            [moved],
            "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier",
            stamp=stamp,
            bump=False,
        )
        return first

    def _step_resend(self, order: Order) -> Change:
        return self.resend(order.id)

    def resend(self, order_id: str, *, by: Party = "buyer") -> Change:
        """ "Resend" in the portal: the whole order again, at its current version.

        Nothing changes, so the order keeps its stamps and its ``meta``; the
        message is new (its own ``messageId``).
        """
        order = self.orders[order_id]
        change = Change(
            "order",
            f"OrderResentBy{by.title()}",
            order.id,
            tuple(line.id for line in order.lines),
            self.uuid(),
            order.updated_ms,
            version=order.version,
        )
        self.changes.append(change)
        return change

    def _order_shipment(self, order: Order, allowed: Callable[[Shipment], bool]) -> str:
        candidates = [s for s in self._shipments_of.get(order.id, ()) if allowed(self.shipments[s])]
        if not candidates:
            raise ValueError(f"order {order.id} has no such shipment")
        return self._doc_rng.choice(candidates)

    def _step_reject_shipment(self, order: Order) -> Change:
        return self.reject_shipment(self._order_shipment(order, lambda s: s.status == "Issued"))

    def _step_update_shipment_header(self, order: Order) -> Change:
        shipment_id = self._order_shipment(order, lambda s: s.status != "Rejected")
        return self.update_shipment_header(shipment_id)

    def _step_reissue_shipment(self, order: Order) -> Change:
        return self.reissue_shipment(self._order_shipment(order, lambda s: True))

    def delete_order(self, order_id: str) -> Change:
        """The order disappears from the platform: polls skip it, ``GET`` answers 404.

        Only a legacy GET webhook could announce it (``get_only``): a POST
        integration has no documented event for a deletion.
        """
        order = self.orders.pop(order_id)
        del self._order_index[bisect.bisect_left(self._order_index, (order.updated_ms, order.id))]
        self.deleted[order_id] = order
        self._rendered.pop((order.id, False), None)
        self._rendered.pop((order.id, True), None)
        change = Change(
            "order",
            "OrderDeleted",
            order.id,
            (),
            self.uuid(),
            order.updated_ms,
            version=order.version,
            get_only=True,
        )
        self.changes.append(change)
        return change

    def set_zoneless(self, document_id: str, zoneless: bool = True) -> None:
        """Render an order's or a shipment's ``lastUpdatedAt`` stamps with or without a zone."""
        document: Order | Shipment | None = self.orders.get(document_id) or self.shipments.get(
            document_id
        )
        if document is None:
            raise KeyError(document_id)
        document.zoneless = zoneless
        self._rendered.pop((document_id, False), None)
        self._rendered.pop((document_id, True), None)

    # ------------------------------------------------------------ bookkeeping

    def _touch(
        self,
        order: Order,
        lines: Sequence[Line],
        event_name: str,
        *,
        tie: bool = False,
        kind: Literal["order", "order_documents"] = "order",
        stamp: int | None = None,
        bump: bool = True,
        lines_key: bool = True,
    ) -> Change:
        """Record a change of ``order`` touching ``lines`` (none: a header-only change).

        ``stamp``: a stamp already taken (two events of one command);
        ``bump=False`` keeps the version (documents events, the second event
        of one command). An event the integration is not subscribed to moves
        everything but the order's ``meta``: no message was sent.
        """
        previous = (order.updated_ms, order.id)
        if stamp is None:
            stamp = self.now_ms(tie=tie)
        moved = False
        today = _day(stamp // 86_400_000)
        for line in lines:
            line.updated_ms = stamp
            # Overdue: still expected, and its date has passed (by the world's clock).
            line.overdue = (
                line.date < today
                and line.logistics not in ("Delivered", "Cancelled")
                and line.process not in ("Completed", "Cancelled", "Rejected")
            )
            moved |= line.seen != (line.process, line.logistics) or not line.event_ms
            line.seen = _note_event_dates(
                line.event_ms, line.seen, line.process, line.logistics, stamp
            )
        if moved or not order.event_ms:  # only a line's status can move the order's
            order.seen = _note_event_dates(
                order.event_ms, order.seen, order.process_status, order.logistics_status, stamp
            )
        if previous[0]:
            del self._order_index[bisect.bisect_left(self._order_index, previous)]
        order.updated_ms = stamp
        bisect.insort(self._order_index, (stamp, order.id))
        if previous[0] == 0:
            order.version, order.created = 1, iso_ms(stamp)
        elif bump:  # versions skip: unsubscribed events and other lines bump them too
            order.version += self.rng.choice((1, 1, 1, 2, 3))
        subscribed = self._options.subscribed
        if subscribed is None:
            subscribed = event_name not in self.unsubscribed_events
        message_id = self.uuid()
        if subscribed:
            order.message_id, order.message_ms = message_id, stamp
        self._rendered.pop((order.id, False), None)
        self._rendered.pop((order.id, True), None)
        change = Change(
            kind,
            event_name,
            order.id,
            tuple(line.id for line in lines),
            message_id,
            stamp,
            version=order.version,
            subscribed=subscribed,
            lines_key=lines_key,
        )
        self.changes.append(change)
        return change

    def _touch_shipment(
        self,
        shipment: Shipment,
        event_name: str,
        *,
        tie: bool = False,
        restamp: Sequence[int] | None = None,
    ) -> Change:
        """Record a shipment change; ``restamp``: the lines it changed (None: all of them)."""
        previous = (shipment.updated_ms, shipment.id)
        stamp = self.now_ms(tie=tie)
        if previous[0]:
            del self._shipment_index[bisect.bisect_left(self._shipment_index, previous)]
        shipment.updated_ms = stamp
        bisect.insort(self._shipment_index, (stamp, shipment.id))
        if len(shipment.line_stamps) < len(shipment.lines):
            shipment.line_stamps += [stamp] * (len(shipment.lines) - len(shipment.line_stamps))
        changed = range(len(shipment.lines)) if restamp is None else restamp
        for index in changed:
            shipment.line_stamps[index] = stamp
        subscribed = self._options.subscribed
        if subscribed is None:
            subscribed = event_name not in self.unsubscribed_events
        message_id = self.uuid()
        if subscribed:
            shipment.message_id = message_id
        self._rendered.pop((shipment.id, False), None)
        # Without own line stamps every line shows the shipment's: all of them changed.
        lines = shipment.lines
        if self.own_shipment_line_stamps:
            lines = [shipment.lines[i] for i in changed]
        change = Change(
            "shipment",
            event_name,
            shipment.id,
            tuple(line.id for line, _ in lines),
            message_id,
            stamp,
            subscribed=subscribed,
        )
        self.changes.append(change)
        return change

    def approve_shipment(self, shipment_id: str) -> Change:
        """``ShipmentApprovedByBuyer``: a status change; no line is re-stamped."""
        shipment = self.shipments[shipment_id]
        shipment.status = "Approved"
        shipment.reason = None
        return self._touch_shipment(shipment, "ShipmentApprovedByBuyer", restamp=())

    def reject_shipment(self, shipment_id: str, reason: str | None = None) -> Change:
        """``ShipmentRejectedByBuyer`` with ``status.processStatusReason``; no line re-stamped."""
        shipment = self.shipments[shipment_id]
        shipment.status = "Rejected"
        shipment.reason = reason or self._doc_rng.choice(
            ("Quantities do not match the order", "Wrong delivery address", "Missing documents")
        )
        return self._touch_shipment(shipment, "ShipmentRejectedByBuyer", restamp=())

    def update_shipment_header(
        self, shipment_id: str, what: Literal["locations", "erp_meta"] | None = None
    ) -> Change:
        """``ShipmentHeaderUpdatedBySupplier``: new ATD/ETA dates or ``meta.supplierErpMeta``.

        Only the shipment's own ``meta.lastUpdatedAt`` moves; the lines keep theirs.
        """
        shipment = self.shipments[shipment_id]
        shipment.revision += 1
        if what is None:
            what = self._doc_rng.choice(("locations", "erp_meta"))
        if what == "locations":
            day = datetime.fromtimestamp(self._now / 1000, UTC).date() + timedelta(
                days=shipment.revision
            )
            locations = shipment.locations or {"departure": {}, "destinations": [{}]}
            locations["departure"]["atdDate"] = day.isoformat()
            eta = (day + timedelta(days=2)).isoformat()
            locations["destinations"][-1] |= {"etaStartDate": eta, "etaEndDate": eta}
            if shipment.revision >= 2:  # arrived: every stop has its ATA, a port its ATD too
                for stop in locations["destinations"]:
                    stop["ataDate"] = stop.get("etaStartDate", eta)
                    if stop is not locations["destinations"][-1]:
                        stop["atdDate"] = stop["ataDate"]
            shipment.locations = locations
        else:
            shipment.erp_meta = content.erp_meta(
                self._content, int(shipment.number[2:]), shipment.revision
            )
        return self._touch_shipment(shipment, "ShipmentHeaderUpdatedBySupplier", restamp=())

    def reissue_shipment(self, shipment_id: str) -> Change:
        """``ShipmentReissuedBySupplier``: one line's quantity changes; only it is re-stamped."""
        shipment = self.shipments[shipment_id]
        index = self._doc_rng.randrange(len(shipment.lines))
        line, quantity = shipment.lines[index]
        shipment.lines[index] = (line, quantity - 1 if quantity > 1 else quantity + 1)
        shipment.status, shipment.reason = "Issued", None
        if shipment.backorder_date is None:
            later = datetime.fromtimestamp(self._now / 1000, UTC).date() + timedelta(days=14)
            shipment.backorder_date = later.isoformat()
        return self._touch_shipment(shipment, "ShipmentReissuedBySupplier", restamp=(index,))

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
        """The order as Tradecloud renders it (api-facts §3.1), every line or ``lines``.

        The header is the same in a webhook event and a poll; only the lines
        differ (an event carries the lines it touched).
        """
        buyer_order: dict[str, Any] = {
            "companyId": BUYER_COMPANY,
            "purchaseOrderNumber": order.number,
            "supplierAccountNumber": "SUP-0815",
            "orderType": "Purchase",
            **order.buyer_extra,
            "contact": order.buyer_contact or {"email": "purchasing@buyer.example"},
            "documents": order.buyer_documents,
        }
        supplier_order: dict[str, Any] = {
            "companyId": SUPPLIER_COMPANY,
            "buyerAccountNumber": "CUST-4711",
            **(order.supplier_extra or {}),
            "contact": order.supplier_contact or {"email": "sales@supplier.example"},
            "documents": order.supplier_documents,
        }
        if order.buyer_labels is not None:
            buyer_order["customLabels"] = order.buyer_labels
        if order.supplier_labels is not None:
            supplier_order["customLabels"] = order.supplier_labels
        zoneless = order.zoneless
        return {
            "orderId" if webhook else "id": order.id,
            "buyerOrder": buyer_order,
            "supplierOrder": supplier_order,
            "indicators": {"deliveryOverdue": order.delivery_overdue},
            "status": {
                "processStatus": order.process_status,
                "logisticsStatus": order.logistics_status,
            },
            "version": order.version,
            "eventDates": {key: self.stamp(ms, zoneless) for key, ms in order.event_ms.items()},
            "lines": [
                self._line_document(line, single_delivery, zoneless)
                for line in (order.lines if lines is None else lines)
            ],
            "meta": self.meta(order.message_id, order.trace_id, order.message_ms),
            "lastUpdatedAt": self.stamp(order.updated_ms, zoneless),
        }

    @staticmethod
    def stamp(ms: int, zoneless: bool) -> str:
        """A document ``lastUpdatedAt``: ``…SSSZ``, or zone-less UTC wall-clock time."""
        return iso_local(ms) if zoneless else iso_ms(ms)

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

    def _line_document(
        self, line: Line, single_delivery: bool, zoneless: bool = False
    ) -> dict[str, Any]:
        """One order line in either flavour (api-facts §3.2, seed 003).

        Delivery-schedule flavour: every schedule is a list of entries with a
        ``position``. Single delivery: one ``scheduledDelivery`` per line, in
        ``statusLine`` (documented) and, where the docs name no single-delivery
        form, in the buyer line, the requests and the confirmed line too (the
        shape of the SDK's single-delivery order). Only line-level schedules
        carry ``status``, ``etd`` and ``eta``; ``transportMode`` shows where the
        buyer set one.
        """
        current: dict[str, Any] = {
            "date": line.date,
            "quantity": line.quantity,
            "status": "Open" if line.logistics == "Cancelled" else line.logistics,
        }
        if line.etd is not None:
            current["etd"] = line.etd
        if line.eta is not None:
            current["eta"] = line.eta
        if line.transport_mode is not None:
            current["transportMode"] = line.transport_mode
        prices = line.price.rendered
        # A reconfirmation request asks for no new values: only the status shows it.
        requested = line.request if line.request and line.request.kind != "reconfirmation" else None
        including, including_prices = current, prices
        if requested is not None:
            including = current | {"date": requested.date, "quantity": requested.quantity}
            including_prices = requested.price.rendered

        buyer_values: dict[str, Any] = {
            "date": line.date if line.buyer_date is None else line.buyer_date,
            "quantity": line.quantity if line.buyer_quantity is None else line.buyer_quantity,
        }
        if line.transport_mode is not None:
            buyer_values["transportMode"] = line.transport_mode
        buyer_line: dict[str, Any] = {"position": line.position}
        if line.original_position is not None:
            buyer_line["originalPosition"] = line.original_position
        buyer_line |= {
            "description": line.item[1],
            "item": line.item_document,
            **_schedule(buyer_values, single_delivery),
            "prices": (line.buyer_price or line.price).rendered,
        }
        if line.buyer_charges:
            buyer_line["chargeLines"] = [charge.rendered for charge in line.buyer_charges]
        buyer_line |= line.buyer_extra
        buyer_line["indicators"] = {
            "noDeliveryExpected": line.no_delivery,
            "delivered": line.logistics == "Delivered",
        }
        buyer_line["documents"] = line.buyer_documents
        supplier_line: dict[str, Any] = {
            "salesOrderNumber": line.sales_order[0],
            "salesOrderPosition": line.sales_order[1],
        }
        if line.supplier_description is not None:
            supplier_line["description"] = line.supplier_description
        if line.supplier_extra:
            supplier_line |= line.supplier_extra
        supplier_line["documents"] = line.documents
        requests: dict[str, dict[str, Any]] = {}
        for request in (*line.answered.values(), *((requested,) if requested else ())):
            side, key = request.slot
            requests.setdefault(side, {})[key] = _request_document(request, single_delivery)
        if "buyerLine" in requests:
            buyer_line["requests"] = requests["buyerLine"]
        if "supplierLine" in requests:
            supplier_line["requests"] = requests["supplierLine"]

        document: dict[str, Any] = {"id": line.id, "lineType": line.line_type}
        if line.charge_reason is not None:
            document["chargeReasonCode"] = line.charge_reason
        document["buyerLine"] = buyer_line
        document["supplierLine"] = supplier_line
        if line.confirmed:
            document["confirmedLine"] = {
                **_schedule({"date": line.date, "quantity": line.quantity}, single_delivery),
                "prices": prices,
                "chargeLines": [charge.rendered for charge in line.charges],
            }
        show_including = requested is None or not requested.hide_including_prices
        if single_delivery:
            status_line: dict[str, Any] = {
                "scheduledDelivery": current,
                "scheduledDeliveryInclRequests": including,
                "prices": prices,
            }
            if show_including:
                status_line["pricesInclRequests"] = including_prices
            document["statusLine"] = status_line
        else:
            document["deliverySchedule"] = [{"position": "1", **current}]
            document["deliveryScheduleIncludingRequests"] = [{"position": "1", **including}]
            document["prices"] = prices
            if show_including:
                document["pricesIncludingRequests"] = including_prices
        document["indicators"] = {"deliveryOverdue": line.overdue}
        document["status"] = {
            "processStatus": line.process,
            "logisticsStatus": line.logistics,
            **({"inProgressStatus": line.in_progress} if line.in_progress else {}),
        }
        document["eventDates"] = {
            key: self.stamp(ms, zoneless) for key, ms in line.event_ms.items()
        }
        if line.item_details is not None:
            document["mergedItemDetails"] = line.item_details
        document["lastUpdatedAt"] = self.stamp(line.updated_ms, zoneless)
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
        order = self.orders.get(change.document_id) or self.deleted[change.document_id]
        lines = [line for line in order.lines if line.id in change.line_ids]
        if change.kind == "order_documents":
            by_buyer = change.event_name.endswith("ByBuyer")
            event: dict[str, Any] = {
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
                    if not by_buyer
                    else {
                        "id": line.id,
                        "buyerLine": {
                            "position": line.position,
                            "documents": line.buyer_documents[-1:],
                        },
                    }
                    for line in lines
                ],
                "status": {
                    "processStatus": order.process_status,
                    "logisticsStatus": order.logistics_status,
                },
                "lastUpdatedAt": self.stamp(order.updated_ms, order.zoneless),
            }
            if not change.line_ids:  # an order-level document: the header carries it
                party, attached = (
                    ("buyerOrder", order.buyer_documents)
                    if by_buyer
                    else ("supplierOrder", order.supplier_documents)
                )
                event[party]["documents"] = attached[-1:]
            field_name = "orderDocumentsEvent"
        else:
            event = self.order_document(
                order, single_delivery=single_delivery, lines=lines, webhook=True
            )
            event.pop("meta")
            field_name = "orderEvent"
            if single_delivery:
                field_name = "simpleOrderEvent" if legacy else "singleDeliveryOrderEvent"
        if not change.lines_key:
            event.pop("lines")
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
        """The shipment as Tradecloud renders it (api-facts §3.4, despatch-advice.json).

        Everything here comes from the shipment's own state, never from the live
        order lines' mutable values: a shipment changes only when it is touched.
        """
        order = self.orders.get(shipment.order_id) or self.deleted[shipment.order_id]
        stamp = self.stamp(shipment.updated_ms, shipment.zoneless)
        line_stamps = [
            self.stamp(ms, shipment.zoneless) if self.own_shipment_line_stamps else stamp
            for ms in shipment.line_stamps
        ]
        extra = shipment.content
        advice = "DA-" + shipment.number
        rendered_lines = []
        for i, (line, quantity) in enumerate(shipment.lines):
            number, name, unit, _ = line.item
            ordered = shipment.ordered[i] if i < len(shipment.ordered) else quantity
            backorder = max(ordered - quantity, Decimal(0))
            supplier_line: dict[str, Any] = {
                "despatchAdviceNumber": advice,
                "despatchAdviceLinePosition": str(i + 1),
                "despatchQuantity": quantity,
                "backorderQuantity": backorder,
            }
            if backorder and shipment.backorder_date is not None:
                supplier_line["backorderDate"] = shipment.backorder_date
            item: dict[str, Any] = {"buyerItemNumber": number}
            if "revision" in line.item_document:
                item["buyerItemRevision"] = line.item_document["revision"]
            item["buyerItemName"] = name
            if extra is not None:
                item["supplierItemNumber"] = f"S-{number}"
                item["supplierItemName"] = name
            item["purchaseUnitOfMeasureIso"] = unit
            rendered_lines.append(
                {
                    "purchaseOrderNumber": order.number,
                    "purchaseOrderLinePosition": line.position,
                    "deliverySchedulePosition": "1",
                    "item": item,
                    "supplierLine": supplier_line,
                    "meta": {"lastUpdatedAt": line_stamps[i]},
                }
            )
        carriers: list[dict[str, Any]] = []
        loose = rendered_lines
        if extra is not None and extra.carriers:
            held: list[list[dict[str, Any]]] = [[] for _ in extra.carriers]
            loose = []
            for i, rendered in enumerate(rendered_lines):
                index = extra.carrier_of_line[i] if i < len(extra.carrier_of_line) else None
                (loose if index is None else held[index]).append(rendered)
            carriers = [
                {**carrier, "lines": inside}
                for carrier, inside in zip(extra.carriers, held, strict=True)
                if inside
            ]
        supplier: dict[str, Any] = {
            "companyId": SUPPLIER_COMPANY,
            "buyerAccountNumber": "CUST-4711",
            "shipmentNumber": shipment.number,
            "invoiceNumbers": [],
            "documents": [],
            "contacts": [],
        }
        buyer: dict[str, Any] = {
            "companyId": BUYER_COMPANY,
            "supplierAccountNumber": "SUP-0815",
            "documents": [],
            "contacts": [],
        }
        identifiers: dict[str, Any] = {"trackingNumber": f"TRK-{shipment.number}"}
        transport_mode = "Road transport"
        meta: dict[str, Any] = {"lastUpdatedAt": stamp}
        if extra is not None:
            identifiers = extra.identifiers
            transport_mode = extra.transport_mode
            supplier |= {
                "supplierParty": content.SUPPLIER_PARTY,
                "despatchAdviceNumber": advice,
                "invoiceNumbers": extra.invoice_numbers,
                "contacts": extra.supplier_contacts,
            }
            buyer |= {
                "buyerParty": content.BUYER_PARTY,
                "contacts": extra.buyer_contacts,
                "purchaseOrderTerms": extra.terms,
            }
            meta["despatchAdviceErpIssueDateTime"] = extra.issued_local
        document: dict[str, Any] = {
            "id": shipment.id,
            "identifiers": identifiers,
            "transportMode": transport_mode,
            "supplierShipment": supplier,
            "buyerShipment": buyer,
            "loadCarriers": carriers,
            "lines": loose,
            "status": {"processStatus": shipment.status},
            "meta": meta,
        }
        if shipment.reason is not None:
            document["status"]["processStatusReason"] = shipment.reason
        if shipment.locations is not None:
            document["locations"] = shipment.locations
        if shipment.erp_meta is not None:
            meta["supplierErpMeta"] = shipment.erp_meta
        return document


def _schedule(values: dict[str, Any], single_delivery: bool) -> dict[str, Any]:
    """A schedule inside a buyer line, request or confirmed line, in either flavour."""
    if single_delivery:
        return {"scheduledDelivery": values}
    return {"deliverySchedule": [{"position": "1", **values}]}


def _request_document(request: Request, single_delivery: bool) -> dict[str, Any]:
    """``requests.proposal`` / ``requests.reopenRequest`` (api-facts §3.2, seed 003)."""
    document = _schedule({"date": request.date, "quantity": request.quantity}, single_delivery)
    document["prices"] = request.price.rendered
    document["chargeLines"] = [charge.rendered for charge in request.charges]
    document["reason"] = request.reason
    document["status"] = request.status
    return document
