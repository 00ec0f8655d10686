"""The simulated Apicbase supplier order book: pure, seeded, deterministic.

Purchase orders are shaped as Apicbase sends them (seed 004, api-facts §5.3):
``id`` (a UUID string), ``order_number``, ``status``, ``ordered_on`` (an ISO
date-time with the Brussels offset and microseconds, as Django REST framework
writes it), ``owned_by`` (``{"username"}`` or null), ``order_remarks`` (often
null), ``packages`` (prices as **strings**, ``quantity_ordered`` an
**integer**), ``expected_delivery_date`` (date-only, date-time or null: the docs
say "datetime", the derived spec "date", §7.21), ``theoretical_price`` (a
string) and ``supplier_customer_number``. Names are full of non-ASCII
characters (and one outside the BMP) because that is where signature checks
break (§5.6).

The list endpoint adds the supplier's bookkeeping flags (§5.4):
``fetched_by_supplier`` / ``viewed_by_supplier`` and their ``*_at`` stamps,
which can be set once and never cleared. Orders still "in progress" (a webhook
push that failed) are not visible to the supplier at all.

The same seed yields the same orders (ids, numbers, lines, prices, stamps);
the HTTP app and the webhook sender only render them.

"The response JSON is the same as the webhook one" (§5.1) promises the same
content, not the same bytes. In documented mode (``OrderBook(documented=True)``)
a share of orders render their webhook copy and their API copy differently
(``Style``): money as ``"26.1"`` in one and ``"26.10"`` in the other, and
``ordered_on`` with microseconds and the Brussels offset in one, milliseconds
and ``Z`` in the other (the same instant up to the dropped digits). By default
both copies are the same.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, Final, Literal
from zoneinfo import ZoneInfo

# Apicbase is a Belgian platform; its Django TIME_ZONE is taken to be Brussels.
ZONE: Final = ZoneInfo("Europe/Brussels")
HISTORY_END: Final = datetime(2026, 1, 5, 17, 30, tzinfo=ZONE)
"""Generated history ends here (fixed, so a seed alone decides every stamp)."""

Status = Literal["IN_PROGRESS", "ORDERED", "DELIVERED"]
VISIBLE: Final[frozenset[str]] = frozenset({"ORDERED", "DELIVERED"})
"""Statuses the supplier endpoint shows and filters on; a cart in progress is not sent."""

CENT: Final = Decimal("0.01")

PriceFormat = Literal["fixed", "trimmed"]
StampFormat = Literal["default", "offset_micro", "utc_milli"]


@dataclass(frozen=True)
class Style:
    """How one copy of an order writes what both copies say (documented mode).

    ``prices``: ``fixed`` two decimals (``"26.10"``), ``trimmed`` without
    trailing zeros (``"26.1"``). ``ordered_on``: ``default`` as Django REST
    framework writes it (Brussels offset, microseconds when there are any),
    ``offset_micro`` always six digits and the offset, ``utc_milli`` three
    digits and ``Z``.
    """

    prices: PriceFormat = "fixed"
    ordered_on: StampFormat = "default"

    @classmethod
    def from_json(cls, value: Any) -> Style:
        if not isinstance(value, dict):
            raise ValueError("a style is {prices: fixed|trimmed, ordered_on: default|…}")
        prices = value.get("prices", "fixed")
        stamp = value.get("ordered_on", "default")
        if prices not in ("fixed", "trimmed"):
            raise ValueError("prices: fixed or trimmed")
        if stamp not in ("default", "offset_micro", "utc_milli"):
            raise ValueError("ordered_on: default, offset_micro or utc_milli")
        return cls(prices, stamp)

    def as_json(self) -> dict[str, str]:
        return {"prices": self.prices, "ordered_on": self.ordered_on}

    def money(self, value: Decimal) -> str:
        text = f"{value:.2f}"
        return text.rstrip("0").rstrip(".") if self.prices == "trimmed" else text

    def stamp(self, moment: datetime) -> str:
        if self.ordered_on == "offset_micro":
            return moment.astimezone(ZONE).isoformat(timespec="microseconds")
        if self.ordered_on == "utc_milli":
            utc = moment.astimezone(UTC).isoformat(timespec="milliseconds")
            return utc.replace("+00:00", "Z")
        return moment.isoformat()


DEFAULT_STYLE: Final = Style()
DIFFERING_STYLES: Final = (Style("trimmed", "offset_micro"), Style("fixed", "utc_milli"))
"""(webhook copy, API copy) that differ in every way documented mode knows."""

# (supplier article number, stock item name, price per package)
CATALOGUE: Final = (
    ("ART-10045", "Crème fraîche 1L", Decimal("4.35")),
    ("ART-20071", "Butter unsalted 250g", Decimal("2.10")),
    ("ART-30112", "Gruyère AOP 1kg", Decimal("24.80")),
    ("ART-30440", "Jalapeño peppers 2,5kg", Decimal("11.95")),
    ("ART-41003", "Pâte feuilletée 10×", Decimal("17.40")),
    ("ART-52210", "Piment d'Espelette 250g", Decimal("31.00")),
    ("ART-52298", "Pimentón de la Vera «dulce»", Decimal("6.75")),
    ("ART-60017", "Smørrebrød rye loaf", Decimal("3.20")),
    ("ART-60555", "Açaí pulp frozen 1kg", Decimal("9.99")),
    ("ART-71001", "Čokoláda hořká 70%", Decimal("5.05")),
    ("ART-80808", "Bœuf bourguignon base 5L", Decimal("42.15")),
    ("ART-90120", "Citroenen 🍋 net 5kg", Decimal("8.40")),
    ("ART-90301", "Mineral water 24×0.5L", Decimal("7.68")),
    ("ART-90777", "Würstchen (Wiener) 1kg", Decimal("13.30")),
)

# (supplier_customer_number, user names of the customer's staff)
CUSTOMERS: Final = (
    ("CUST-0042", ("chef.brasserie", "sous-chef.brasserie")),
    ("CUST-0107", ("jérôme.cuisine",)),
    ("CUST-0233", ("hotel-kitchen", "zoë.purchasing")),
    ("CUST-0918", ("kantine.nord",)),
)

REMARKS: Final = (
    "Levering via achterdeur / livraison arrière",
    "Please call 30 min before delivery",
    'Deliver to "Kitchen 2", not the bar',
    "Geen levering op maandag.\nMerci !",
    "Allergènes : sans noix s.v.p.",
)


@dataclass
class Package:
    article_number: str
    name: str
    price_per_package: Decimal
    quantity: int

    @property
    def total(self) -> Decimal:
        return (self.price_per_package * self.quantity).quantize(CENT)

    def as_json(self, style: Style = DEFAULT_STYLE) -> dict[str, Any]:
        return {
            "stock_item": {"name": self.name},
            "supplier_package": {
                "supplier_article_number": self.article_number,
                "theoretical_price_per_package": style.money(self.price_per_package),
            },
            "quantity_ordered": self.quantity,
            "total_theoretical_price": style.money(self.total),
        }


@dataclass
class PurchaseOrder:
    id: str
    order_number: str
    sequence: int
    """Creation order: breaks ties between equal ``ordered_on`` stamps."""
    supplier_customer_number: str
    owned_by: str | None
    order_remarks: str | None
    packages: list[Package]
    ordered_on: datetime
    expected_delivery: date | datetime | None
    status: Status = "IN_PROGRESS"
    fetched_at: datetime | None = None
    viewed_at: datetime | None = None
    webhook_style: Style = DEFAULT_STYLE
    """How the webhook copy is written (documented mode: maybe not as the API's)."""
    api_style: Style = DEFAULT_STYLE
    """How the API copy is written."""

    @property
    def visible(self) -> bool:
        return self.status in VISIBLE

    @property
    def theoretical_price(self) -> Decimal:
        return sum((package.total for package in self.packages), Decimal("0.00"))

    def document(self, style: Style | None = None) -> dict[str, Any]:
        """The purchase order as the webhook sends it (§5.3, keys in documented order).

        ``style``: how to write it (default: the webhook copy's).
        """
        style = self.webhook_style if style is None else style
        expected = self.expected_delivery
        return {
            "id": self.id,
            "order_number": self.order_number,
            # "fixed value" in the webhook: Apicbase sends an order when it is placed.
            "status": "ORDERED" if self.status == "IN_PROGRESS" else self.status,
            "ordered_on": style.stamp(self.ordered_on),
            "owned_by": {"username": self.owned_by} if self.owned_by is not None else None,
            "order_remarks": self.order_remarks,
            "packages": [package.as_json(style) for package in self.packages],
            "expected_delivery_date": expected.isoformat() if expected is not None else None,
            "theoretical_price": style.money(self.theoretical_price),
            "supplier_customer_number": self.supplier_customer_number,
        }

    def api_json(self) -> dict[str, Any]:
        """An item of the supplier list: the webhook shape plus the supplier's flags."""
        item = self.document(self.api_style)
        item["fetched_by_supplier"] = self.fetched_at is not None
        item["fetched_by_supplier_at"] = _stamp(self.fetched_at)
        item["viewed_by_supplier"] = self.viewed_at is not None
        item["viewed_by_supplier_at"] = _stamp(self.viewed_at)
        return item


def _stamp(moment: datetime | None) -> str | None:
    return moment.astimezone(ZONE).isoformat() if moment is not None else None


class OrderGenerator:
    """Deterministic purchase orders for one supplier: the seed decides everything."""

    def __init__(self, seed: int = 1) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._sequence = 0

    def order(self, ordered_on: datetime, *, lines: int | None = None) -> PurchaseOrder:
        rng = self.rng
        self._sequence += 1
        customer, users = CUSTOMERS[rng.randrange(len(CUSTOMERS))]
        count = lines if lines is not None else rng.choice((1, 1, 2, 3, 4, 6, 9))
        articles = rng.sample(CATALOGUE, k=min(count, len(CATALOGUE)))
        while len(articles) < count:  # more lines than articles: repeat some
            articles.append(rng.choice(CATALOGUE))
        packages = [
            Package(number, name, price, rng.choice((1, 1, 2, 3, 5, 6, 10, 12, 24, 48)))
            for number, name, price in articles
        ]
        local = ordered_on.astimezone(ZONE)
        return PurchaseOrder(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            order_number=f"PO-{local.year}-{self._sequence:06d}",
            sequence=self._sequence,
            supplier_customer_number=customer,
            owned_by=rng.choice(users) if rng.random() < 0.85 else None,
            order_remarks=rng.choice(REMARKS) if rng.random() < 0.3 else None,
            packages=packages,
            ordered_on=local,
            expected_delivery=self._expected(local),
        )

    def _expected(self, ordered_on: datetime) -> date | datetime | None:
        """Date-only, a local-midnight date-time, or none at all (§7.21)."""
        roll = self.rng.random()
        day = ordered_on.date() + timedelta(days=self.rng.randint(1, 6))
        if roll < 0.15:
            return None
        if roll < 0.55:
            return day
        return datetime.combine(day, time(0, 0), tzinfo=ZONE)


@dataclass
class OrderBook:
    """Every purchase order of the simulated supplier, by id and in creation order."""

    generator: OrderGenerator = field(default_factory=OrderGenerator)
    orders: dict[str, PurchaseOrder] = field(default_factory=dict)
    documented: bool = False
    """New orders may write their webhook and API copies differently (``Style``)."""
    differing_share: float = 0.6
    """In documented mode, the share of new orders whose copies differ at all."""
    _style_rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Its own generator: the orders themselves stay what the seed makes them.
        self._style_rng = random.Random(self.generator.seed * 2_750_159 + 1)

    def add(self, ordered_on: datetime, *, lines: int | None = None) -> PurchaseOrder:
        """A new order still in the customer's cart (``IN_PROGRESS``)."""
        order = self.generator.order(ordered_on, lines=lines)
        if self.documented:
            order.webhook_style, order.api_style = self._styles()
        self.orders[order.id] = order
        return order

    def _styles(self) -> tuple[Style, Style]:
        """(webhook, API) styles: the same, or different in money, stamps or both."""
        rng = self._style_rng
        if rng.random() >= self.differing_share:
            return DEFAULT_STYLE, DEFAULT_STYLE
        webhook, api = DIFFERING_STYLES if rng.random() < 0.5 else DIFFERING_STYLES[::-1]
        differ = rng.choice(("prices", "ordered_on", "both"))
        if differ == "prices":
            api = Style(api.prices, webhook.ordered_on)
        elif differ == "ordered_on":
            api = Style(webhook.prices, api.ordered_on)
        return webhook, api

    def generate_history(self, count: int, *, end: datetime = HISTORY_END) -> list[PurchaseOrder]:
        """``count`` placed orders spread over the weeks before ``end``.

        The oldest third is delivered and was already fetched and viewed by the
        supplier; the rest is ``ORDERED`` and waits to be fetched. About one in
        twenty shares its ``ordered_on`` with the previous order, so a fetcher
        paging with ``ordered_on__gt`` alone can skip a sibling.
        """
        rng = self.generator.rng
        gaps = [rng.randint(90, 9 * 3600) + rng.random() for _ in range(count)]
        moment = end - timedelta(seconds=sum(gaps))
        made: list[PurchaseOrder] = []
        for index, gap in enumerate(gaps):
            if not (made and rng.random() < 0.05):
                moment += timedelta(seconds=gap)
            order = self.add(moment)
            order.status = "ORDERED"
            if index < count // 3:
                order.status = "DELIVERED"
                order.fetched_at = order.ordered_on + timedelta(minutes=rng.randint(1, 30))
                order.viewed_at = order.fetched_at + timedelta(minutes=rng.randint(1, 90))
            made.append(order)
        return made

    def visible(self) -> Iterable[PurchaseOrder]:
        return (order for order in self.orders.values() if order.visible)

    def query(self, query: Query) -> list[PurchaseOrder]:
        """The supplier's orders matching ``query``, in its ordering."""
        found = [order for order in self.visible() if query.matches(order)]
        descending = query.ordering.startswith("-")
        key = query.ordering.lstrip("-")
        if key == "order_number":
            found.sort(key=lambda o: (o.order_number, o.sequence), reverse=descending)
        else:
            found.sort(key=lambda o: (o.ordered_on, o.sequence), reverse=descending)
        return found

    def mark(
        self, ids: Sequence[str], *, fetched: bool, viewed: bool, now: datetime
    ) -> list[PurchaseOrder]:
        """Set the flags of ``ids`` (all known and visible, checked by the caller).

        Irreversible and idempotent: a flag already set keeps its first stamp.
        """
        marked = []
        for order_id in ids:
            order = self.orders[order_id]
            if fetched and order.fetched_at is None:
                order.fetched_at = now
            if viewed and order.viewed_at is None:
                order.viewed_at = now
            marked.append(order)
        return marked


ORDERINGS: Final = frozenset({"ordered_on", "-ordered_on", "order_number", "-order_number"})


@dataclass(frozen=True)
class Query:
    """The list endpoint's filters, already validated (see ``parse_query``)."""

    status: str | None = None
    ordered_on_gt: datetime | None = None
    fetched_by_supplier: bool | None = None
    viewed_by_supplier: bool | None = None
    ordering: str = "-ordered_on"
    """Django REST framework's default here: newest first (api-facts §5.4)."""

    def matches(self, order: PurchaseOrder) -> bool:
        if self.status is not None and order.status != self.status:
            return False
        if self.ordered_on_gt is not None and not order.ordered_on > self.ordered_on_gt:
            return False
        if (
            self.fetched_by_supplier is not None
            and (order.fetched_at is not None) != self.fetched_by_supplier
        ):
            return False
        return (
            self.viewed_by_supplier is None
            or (order.viewed_at is not None) == self.viewed_by_supplier
        )


class QueryError(ValueError):
    """A filter value the API refuses: 400 ``{field: [message]}`` as django-filter answers."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


_TRUE: Final = frozenset({"true", "True", "1"})
_FALSE: Final = frozenset({"false", "False", "0"})


def parse_query(params: dict[str, str]) -> Query:
    """Validate the query string as django-filter would (unknown parameters are ignored)."""
    status = params.get("status") or None
    if status is not None and status not in VISIBLE:
        raise QueryError(
            "status", f"Select a valid choice. {status} is not one of the available choices."
        )
    gt = params.get("ordered_on__gt") or None
    ordering = params.get("ordering") or "-ordered_on"
    first = ordering.split(",")[0].strip()
    return Query(
        status=status,
        ordered_on_gt=parse_datetime(gt) if gt is not None else None,
        fetched_by_supplier=_boolean(params, "fetched_by_supplier"),
        viewed_by_supplier=_boolean(params, "viewed_by_supplier"),
        # An ordering on an unknown field is ignored, as DRF's OrderingFilter does.
        ordering=first if first in ORDERINGS else "-ordered_on",
    )


def _boolean(params: dict[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise QueryError(name, "Select a valid choice.")


def parse_datetime(text: str) -> datetime:
    """An ISO date or date-time; without an offset it is Brussels time (Django's TIME_ZONE).

    A ``+`` in an unencoded query string arrives as a space and fails here, as
    it does on the real server: clients must percent-encode offsets.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise QueryError("ordered_on__gt", "Enter a valid date/time.") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=ZONE)
