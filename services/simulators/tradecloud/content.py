"""What a simulated Tradecloud order carries besides its lifecycle: prices, charges, texts.

The world (``world.py``) decides *when* something changes; this module decides
*what* the values look like, so the documents carry everything a real order
response does (api-facts §3.2, §3.4, the seed-003 page, the SDK samples
``order.json``, ``order-response.json``, ``single-delivery-order.json`` and
``despatch-advice.json``): gross and net prices in a transaction and a base
currency with discounts and price units, charge lines (UNCL7161 codes),
requests with varied reasons, custom fields and texts, documents, item
details, parties, contacts, locations and load carriers.

Everything here is pure and seeded: each generator takes the ``random.Random``
it draws from. The world passes its *content* generator, kept apart from the
lifecycle's, so richer content never changes which steps a seed draws.

Value objects are frozen and render themselves once (``rendered``): a document
embeds the same dict wherever the value occurs (``prices`` and
``confirmedLine.prices``), which keeps pre-rendering polls cheap, and lets the
normalizer's identity shortcut (plain values equal to ``…IncludingRequests``)
apply. Rendered dicts are shared, so nothing may mutate them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any, Final, Literal

JsonObject = dict[str, Any]

BASE_CURRENCY: Final = "EUR"
"""The buyer's base currency (``priceInBaseCurrency``)."""

RATES: Final = {
    "EUR": Decimal(1),
    "USD": Decimal("1.0842"),
    "GBP": Decimal("0.8551"),
    "CHF": Decimal("0.9412"),
    "CNY": Decimal("7.731942086513379268"),
}
"""Units of each currency per euro. The yuan rate has as many digits as a
supplier's ERP converting at full precision writes: a price converted with it
keeps 18 significant decimals (the issue's reproduction case)."""

CHARGE_TYPES: Final = (
    ("FC", "Freight costs"),
    ("PC", "Packing costs"),
    ("ABW", "Customs duty"),
    ("IN", "Transport insurance"),
    ("ABL", "Additional packaging"),
    ("HD", "Handling costs"),
)
"""UNCL7161 charge reason codes with a free-text description."""

RequestKind = Literal["proposal", "reopen", "reconfirmation"]
RequestStatus = Literal["Open", "Approved", "Rejected", "Closed"]

SUPPLIER_PROPOSAL_REASONS: Final = (
    "capacity",
    "Raw material shortage, earliest possible date",
    "Steel surcharge per 1 February",
    "Minimum order quantity is a full box",
    "Production planning changed",
    "Tooling in maintenance",
    "Price list 2026 applies",
)
SUPPLIER_REOPEN_REASONS: Final = (
    "capacity",
    "Machine breakdown, production delayed",
    "Quality hold on the batch",
    "Energy surcharge",
    "Transport lead time increased",
)
BUYER_REOPEN_REASONS: Final = (
    "Demand changed",
    "Project postponed",
    "Forecast update week 7",
    "Needed earlier on site",
    "Line stop at customer, quantity reduced",
)

BUYER_PROPERTIES: Final = (
    ("costCenter", "4711-200"),
    ("buyerGroup", "B12"),
    ("plant", "NL01"),
    ("storageLocation", "0001"),
    ("requisitioner", "M. Jansen"),
)
SUPPLIER_PROPERTIES: Final = (
    ("salesRepresentative", "J. de Vries"),
    ("productionOrder", "PRD-88120"),
    ("warehouse", "Venlo"),
    ("quotation", "Q-2026-0113"),
)
BUYER_NOTES: Final = (
    "Deliver between 07:00 and 15:00",
    "Mention the PO number on every document",
    "Call 24 h before delivery: +31 10 123 4567",
    "Pallets at most 1.2 m high",
    "Certificates 3.1 required",
)
SUPPLIER_NOTES: Final = (
    "Confirmed subject to raw material availability",
    "Partial deliveries allowed",
    "Packed per 50 pieces",
    "Our general terms of delivery apply",
)
BUYER_LABELS: Final = ("stock", "kanban", "critical-spare", "project", "repair")
SUPPLIER_LABELS: Final = ("priority-A", "priority-B", "export", "make-to-order")
TRANSPORT_MODES: Final = ("Road transport", "Sea transport", "Air transport", "Rail transport")

TERMS: Final = (
    {
        "incotermsCode": "DAP",
        "incoterms": "Rotterdam, Dock 12",
        "paymentTermsCode": "30D",
        "paymentTerms": "30 days net",
    },
    {
        "incotermsCode": "FCA",
        "incoterms": "Venlo",
        "paymentTermsCode": "60EOM",
        "paymentTerms": "60 days end of month",
    },
    {
        "incotermsCode": "CIF",
        "incoterms": "ECT Rotterdam",
        "paymentTermsCode": "30D",
        "paymentTerms": "30 days",
    },
    {
        "incotermsCode": "EXW",
        "incoterms": "Shenzhen",
        "paymentTermsCode": "PP",
        "paymentTerms": "Prepayment",
    },
)

BUYER_PARTY: Final = {
    "id": "8712345000017",
    "idScheme": "GLN",
    "names": ["Buyer Machinery B.V."],
    "addressLines": ["Waalhaven 12"],
    "postalCode": "3089 JH",
    "city": "Rotterdam",
    "countryCodeIso2": "NL",
    "countryName": "The Netherlands",
}
SUPPLIER_PARTY: Final = {
    "id": "4012345000009",
    "idScheme": "GLN",
    "names": ["Supplier Components GmbH", "Werk 2"],
    "addressLines": ["Industriestraße 7"],
    "postalCode": "41334",
    "city": "Nettetal",
    "countryCodeIso2": "DE",
    "countryName": "Germany",
}
DESTINATIONS: Final = (
    {
        "code": "001",
        "names": ["Buyer Machinery Warehouse", "Dock 12"],
        "addressLines": ["Waalhaven 12", "Area 52"],
        "postalCode": "3089 JH",
        "city": "Rotterdam",
        "countryCodeIso2": "NL",
        "countryName": "The Netherlands",
        "locationType": "warehouse",
    },
    {
        "code": "014",
        "names": ["Buyer Machinery Service Centre"],
        "addressLines": ["Europaweg 200"],
        "postalCode": "5707 DL",
        "city": "Helmond",
        "countryCodeIso2": "NL",
        "countryName": "The Netherlands",
        "locationType": "site",
    },
)

ITEM_DETAILS: Final = {
    "HB-M12-80": ("DE", "7318 15 90", Decimal("0.0715"), "KGM", None),
    "BR-6204": ("IT", "8482 10 10", Decimal("0.110"), "KGM", None),
    "GS-40": ("DE", "8483 40 90", Decimal("1.248"), "KGM", None),
    "SH-08-500": ("NL", "8483 10 95", Decimal("0.197"), "KGM", None),
    "PL-ALU-3": ("CN", "7606 12 99", Decimal("8.1"), "KGM", None),
    "CB-YY-3G15": ("DE", "8544 49 93", Decimal("0.094"), "KGM", None),
    "OR-NBR-20": ("CN", "4016 93 00", Decimal("0.0009"), "KGM", None),
    "HS-ST-200": ("IT", "4009 21 00", Decimal("0.62"), "KGM", None),
    "BP-LI-48": ("CN", "8507 60 00", Decimal("14.350"), "KGM", "3480"),
}
"""Per item: country of origin, combined nomenclature, net weight, its unit, UN number."""

SERVICES: Final = (
    ("Service", "ADR", "On-site commissioning", "HUR", Decimal(8), Decimal("95.00")),
    ("Service", "ADR", "Calibration with certificate", "PCE", Decimal(1), Decimal("240.00")),
    ("Charge", "FC", "Freight costs", "PCE", Decimal(1), Decimal("145.00")),
    ("Charge", "PC", "Packing costs, sea-worthy crate", "PCE", Decimal(1), Decimal("62.50")),
)
"""Service and Charge lines: line type, UNCL7161 reason, name, unit, quantity, price."""

FIRST_NAMES: Final = ("Anna", "Pieter", "Lukas", "Sofia", "Wei", "Jan")
LAST_NAMES: Final = ("de Boer", "Schmidt", "Visser", "Rossi", "Zhang", "Bakker")


# ------------------------------------------------------------------ value objects


@dataclass(frozen=True)
class Money:
    value: Decimal
    currency: str = BASE_CURRENCY

    @cached_property
    def rendered(self) -> JsonObject:
        return {"value": self.value, "currencyIso": self.currency}


@dataclass(frozen=True)
class Pricing:
    """A line's ``prices``: gross and net, in the transaction and sometimes the base currency.

    ``net`` is what counts (Tradecloud advises reading ``netPrice``); ``gross``
    with ``discount`` is the alternative reading and stays consistent with it.
    """

    net: Money
    gross: Money
    discount: Decimal = Decimal(0)
    base_net: Money | None = None
    base_gross: Money | None = None
    unit: str = "PCE"
    unit_quantity: int = 1

    @cached_property
    def rendered(self) -> JsonObject:
        gross: JsonObject = {"priceInTransactionCurrency": self.gross.rendered}
        net: JsonObject = {"priceInTransactionCurrency": self.net.rendered}
        if self.base_gross is not None:
            gross["priceInBaseCurrency"] = self.base_gross.rendered
        if self.base_net is not None:
            net["priceInBaseCurrency"] = self.base_net.rendered
        return {
            "grossPrice": gross,
            "discountPercentage": self.discount,
            "netPrice": net,
            "priceUnitOfMeasureIso": self.unit,
            "priceUnitQuantity": self.unit_quantity,
        }

    @property
    def currency(self) -> str:
        return self.net.currency


@dataclass(frozen=True)
class Charge:
    """One charge line: an additional cost independent of the line's prices."""

    code: str
    description: str
    quantity: Decimal
    price: Money
    base: Money | None = None
    unit: str = "PCE"
    unit_quantity: int | None = 1
    position: str | None = None
    """Sometimes missing, as in the SDK's order-response sample."""

    @cached_property
    def rendered(self) -> JsonObject:
        price: JsonObject = {"priceInTransactionCurrency": self.price.rendered}
        if self.base is not None:
            price["priceInBaseCurrency"] = self.base.rendered
        document: JsonObject = {}
        if self.position is not None:
            document["position"] = self.position
        document |= {
            "chargeTypeCode": self.code,
            "chargeDescription": self.description,
            "quantity": self.quantity,
            "price": price,
            "priceUnitOfMeasureIso": self.unit,
        }
        if self.unit_quantity is not None:
            document["priceUnitQuantity"] = self.unit_quantity
        return document


@dataclass(frozen=True)
class RequestSpec:
    """A request with chosen content (the control API's ``proposal`` / ``request``).

    ``None`` leaves a value to the seed. ``price`` is exact and wins over
    ``currency``/``decimals``; otherwise the line's price is converted into
    ``currency`` and rounded to ``decimals`` places.
    """

    reason: str | None = None
    currency: str | None = None
    decimals: int | None = None
    price: Decimal | None = None
    quantity: Decimal | None = None
    date: str | None = None
    days: int | None = None
    """Move the date this many days (when ``date`` is not given)."""
    base_price: bool | None = None
    """Also give the price in the base currency (EUR)."""
    charge_lines: int | None = None
    """How many charge lines the request asks for (0: none)."""
    prices_including_requests: bool | None = None
    """False: the line carries no ``pricesIncludingRequests`` while the request is open."""
    line: str | None = None
    """The line (position or id) to ask for; None: the first line the step applies to."""

    @classmethod
    def from_json(cls, raw: Any) -> RequestSpec:
        """The control API's JSON object; ``ValueError`` names what is wrong.

        ``price`` and ``quantity`` are exact: a JSON number (decoded exactly) or
        a decimal string; ``date`` is ``YYYY-MM-DD``.
        """
        if not isinstance(raw, dict):
            raise ValueError("request: a JSON object")
        unknown = set(raw) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise ValueError(f"request: unknown fields {sorted(unknown)}")

        def exact(name: str) -> Decimal | None:
            value = raw.get(name)
            if value is None:
                return None
            if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
                raise ValueError(f"request.{name}: a number or a decimal string")
            try:
                found = Decimal(value)
            except ArithmeticError:
                raise ValueError(f"request.{name}: not a decimal: {value!r}") from None
            if not found.is_finite() or found <= 0:
                raise ValueError(f"request.{name}: a positive decimal")
            return found

        def typed(name: str, kind: type, check: Any = None, hint: str = "out of range") -> Any:
            value = raw.get(name)
            if value is None:
                return None
            if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                raise ValueError(f"request.{name}: {kind.__name__} expected")
            if check is not None and not check(value):
                raise ValueError(f"request.{name}: {value!r} is {hint}")
            return value

        day = typed("date", str)
        if day is not None:
            try:
                date.fromisoformat(day)
            except ValueError:
                raise ValueError("request.date: YYYY-MM-DD") from None
        return cls(
            reason=typed("reason", str),
            currency=typed(
                "currency", str, RATES.__contains__, f"not one of {', '.join(sorted(RATES))}"
            ),
            decimals=typed("decimals", int, lambda n: 0 <= n <= 24),
            price=exact("price"),
            quantity=exact("quantity"),
            date=day,
            days=typed("days", int, lambda n: -365 <= n <= 365),
            base_price=typed("base_price", bool),
            charge_lines=typed("charge_lines", int, lambda n: 0 <= n <= len(CHARGE_TYPES)),
            prices_including_requests=typed("prices_including_requests", bool),
            line=typed("line", str),
        )


@dataclass(frozen=True)
class Request:
    """A request on a line: its values, reason and status (api-facts §3.2, §3.3).

    Answered requests stay on the line with their new status for a share of
    lines (the docs' request status implies they remain readable).
    """

    by: Literal["buyer", "supplier"]
    kind: RequestKind
    quantity: Decimal
    date: str
    price: Pricing
    reason: str = ""
    status: RequestStatus = "Open"
    charges: tuple[Charge, ...] = ()
    hide_including_prices: bool = False
    """The line omits ``pricesIncludingRequests`` while this request is open."""

    @property
    def slot(self) -> tuple[str, str]:
        """(side, key) where the request renders: ``supplierLine.requests.proposal`` …"""
        side = "supplierLine" if self.by == "supplier" else "buyerLine"
        return side, "proposal" if self.kind == "proposal" else "reopenRequest"


@dataclass(frozen=True)
class ShipmentContent:
    """A shipment's header content, drawn once when it is issued."""

    transport_mode: str
    identifiers: JsonObject
    supplier_contacts: list[JsonObject]
    buyer_contacts: list[JsonObject]
    invoice_numbers: list[str]
    terms: JsonObject
    issued_local: str
    """``meta.despatchAdviceErpIssueDateTime``: the supplier ERP's local time, no zone."""
    carriers: list[JsonObject] = field(default_factory=list)
    """Load carriers (containers or packages) without their lines."""
    carrier_of_line: list[int | None] = field(default_factory=list)
    """Which carrier holds each shipment line (None: loose)."""


# ------------------------------------------------------------------ prices


def quantize(value: Decimal, decimals: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-decimals))


def convert(value_eur: Decimal, currency: str, decimals: int = 4) -> Decimal:
    """``value_eur`` in ``currency`` at the simulator's rate, to ``decimals`` places."""
    return quantize(value_eur * RATES[currency], decimals)


_INTERNED: dict[tuple[Any, ...], Any] = {}
"""Equal prices and charges are one object, rendered once (keys keep each decimal's
notation: ``41.25`` and ``41.2500`` are equal numbers but different documents)."""


def _interned(key: tuple[Any, ...], build: Any) -> Any:
    found = _INTERNED.get(key)
    if found is None:
        if len(_INTERNED) > 100_000:  # bounded: a long-running drive keeps making new ones
            _INTERNED.clear()
        found = _INTERNED[key] = build()
    return found


def pricing(
    net: Decimal,
    unit: str,
    *,
    currency: str = BASE_CURRENCY,
    discount: Decimal = Decimal(0),
    base: bool = True,
    unit_quantity: int = 1,
    decimals: int | None = None,
) -> Pricing:
    """Prices of ``net`` (in ``currency``) with the gross that the discount implies.

    ``base``: also the base-currency (EUR) values; ``decimals``: at least this
    many places in a gross price that the discount makes inexact (else four).
    """
    key = ("pricing", str(net), unit, currency, str(discount), base, unit_quantity, decimals)
    return _interned(  # type: ignore[no-any-return]
        key,
        lambda: _pricing(net, unit, currency, discount, base, unit_quantity, decimals),
    )


def _pricing(
    net: Decimal,
    unit: str,
    currency: str,
    discount: Decimal,
    base: bool,
    unit_quantity: int,
    decimals: int | None,
) -> Pricing:
    places = max(-int(net.as_tuple().exponent), 2)
    gross_value = net
    if discount:
        gross_value = quantize(net * 100 / (100 - discount), max(decimals or 0, places, 4))
        if gross_value == (short := quantize(gross_value, places)):
            gross_value = short  # 41.25 at 25 % off is 55.00, not 55.000000
    base_net = base_gross = None
    if base:
        rate = RATES[currency]
        base_net = Money(quantize(net / rate, 4) if currency != BASE_CURRENCY else net)
        base_gross = Money(
            quantize(gross_value / rate, 4) if currency != BASE_CURRENCY else gross_value
        )
    return Pricing(
        net=Money(net, currency),
        gross=Money(gross_value, currency),
        discount=discount,
        base_net=base_net,
        base_gross=base_gross,
        unit=unit,
        unit_quantity=unit_quantity,
    )


def issue_pricing(rng: random.Random, unit_price_eur: Decimal, unit: str) -> Pricing:
    """The buyer's issued prices: cheap items priced per 100, some discounted, some in USD."""
    unit_quantity = 100 if unit_price_eur < 1 else 1
    net = unit_price_eur * unit_quantity
    currency = "USD" if rng.random() < 0.15 else BASE_CURRENCY
    if currency != BASE_CURRENCY:
        net = convert(net, currency, 2)
    discount = Decimal(rng.choice((0, 0, 0, 5, 10, 25)))
    return pricing(
        net,
        unit,
        currency=currency,
        discount=discount,
        base=currency != BASE_CURRENCY or rng.random() < 0.5,
        unit_quantity=unit_quantity,
    )


def requested_pricing(
    rng: random.Random,
    current: Pricing,
    spec: RequestSpec | None = None,
    factor: Decimal = Decimal(1),
) -> Pricing:
    """A request's prices: the current ones times ``factor``, sometimes in another currency.

    Without a spec a tenth of requests ask in yuan or dollars; with one, its
    currency (default: the current one). Yuan prices get 18 decimals unless the
    spec says otherwise, as a supplier's ERP converting at full precision sends.
    """
    if spec is not None:
        currency = spec.currency or current.currency
    else:
        spec = RequestSpec()
        currency = rng.choice(("CNY", "USD")) if rng.random() < 0.1 else current.currency
    if currency not in RATES:
        raise ValueError(f"currency must be one of {sorted(RATES)}")
    decimals = spec.decimals
    if decimals is None:
        decimals = 18 if currency == "CNY" else max(-int(current.net.value.as_tuple().exponent), 2)
    if spec.price is not None:
        net = spec.price
    elif currency == current.currency and spec.decimals is None:
        net = quantize(current.net.value * factor, decimals)
    else:
        net_eur = current.net.value / RATES[current.currency]
        net = convert(net_eur * factor, currency, decimals)
    base = spec.base_price if spec.base_price is not None else currency == BASE_CURRENCY
    return pricing(
        net,
        current.unit,
        currency=currency,
        discount=current.discount if currency == current.currency else Decimal(0),
        base=base,
        unit_quantity=current.unit_quantity,
        decimals=decimals,
    )


def charges(rng: random.Random, currency: str, count: int | None = None) -> tuple[Charge, ...]:
    """``count`` charge lines (default: none, one or two at random); positions mostly set."""
    if count is None:
        count = rng.choice((0, 0, 1, 1, 2))
    if not count:
        return ()
    first = rng.randrange(len(CHARGE_TYPES))
    picked = [CHARGE_TYPES[(first + i) % len(CHARGE_TYPES)] for i in range(min(count, 6))]
    result = []
    for i, (code, description) in enumerate(picked):
        value = Decimal(rng.choice(("12.50", "45.00", "145.00", "7.89", "230.00")))
        if currency != BASE_CURRENCY:
            value = convert(value, currency, 2)
        quantity = Decimal(rng.choice((1, 1, 2)))
        unit_quantity = 1 if rng.random() < 0.7 else None
        position = f"{i + 1:02d}" if rng.random() < 0.8 else None
        key = ("charge", code, str(quantity), str(value), currency, unit_quantity, position)
        built = Charge(
            code=code,
            description=description,
            quantity=quantity,
            price=Money(value, currency),
            base=Money(quantize(value / RATES[currency], 2)) if currency != BASE_CURRENCY else None,
            unit_quantity=unit_quantity,
            position=position,
        )
        result.append(_interned(key, lambda built=built: built))
    return tuple(result)


# ------------------------------------------------------------------ texts and details


def _windows(pool: tuple[Any, ...], most: int) -> tuple[list[Any], ...]:
    """Every run of 1..``most`` consecutive pool entries (wrapping): the choices of a text.

    Built once, shared by every order that draws one (never mutated): a draw
    is one ``choice`` rather than a ``sample``, and documents share the lists.
    """
    return tuple(
        [pool[(start + i) % len(pool)] for i in range(size)]
        for size in range(1, most + 1)
        for start in range(len(pool))
    )


def _property_windows(pool: tuple[tuple[str, str], ...]) -> tuple[list[JsonObject], ...]:
    return tuple([{"key": k, "value": v} for k, v in run] for run in _windows(pool, 3))


_PROPERTIES: Final = {
    id(BUYER_PROPERTIES): _property_windows(BUYER_PROPERTIES),
    id(SUPPLIER_PROPERTIES): _property_windows(SUPPLIER_PROPERTIES),
}
_TEXTS: Final = {
    id(pool): _windows(pool, 2)
    for pool in (BUYER_NOTES, SUPPLIER_NOTES, BUYER_LABELS, SUPPLIER_LABELS)
}


def properties(rng: random.Random, pool: tuple[tuple[str, str], ...]) -> list[JsonObject]:
    """One to three custom fields from ``pool`` (``[{key, value}]``)."""
    return rng.choice(_PROPERTIES[id(pool)])


def notes(rng: random.Random, pool: tuple[str, ...]) -> list[str]:
    return rng.choice(_TEXTS[id(pool)])


def labels(rng: random.Random, pool: tuple[str, ...]) -> list[str]:
    return rng.choice(_TEXTS[id(pool)])


def reason(rng: random.Random, by: str, kind: RequestKind) -> str:
    if by == "buyer":
        return rng.choice(BUYER_REOPEN_REASONS)
    return rng.choice(SUPPLIER_PROPOSAL_REASONS if kind == "proposal" else SUPPLIER_REOPEN_REASONS)


def item_details(rng: random.Random, number: str, serial: int) -> JsonObject | None:
    """The buyer's item details for ``number`` (None for services and unknown items)."""
    known = ITEM_DETAILS.get(number)
    if known is None:
        return None
    country, code, weight, unit, dangerous = known
    details: JsonObject = {
        "countryOfOriginCodeIso2": country,
        "combinedNomenclatureCode": code,
        "netWeight": weight,
        "netWeightUnitOfMeasureIso": unit,
    }
    if dangerous is not None:
        details["dangerousGoodsCodeUnece"] = dangerous
    if rng.random() < 0.3:
        details["serialNumber"] = f"0x{serial * 40_961:016X}"
    if rng.random() < 0.5:
        details["batchNumber"] = f"#{18_000 + serial % 997}"
    return details


def corrected_details(rng: random.Random, details: JsonObject | None, serial: int) -> JsonObject:
    """The supplier's corrections merged over the buyer's details (``mergedItemDetails``)."""
    merged = dict(details or {})
    merged["countryOfOriginCodeIso2"] = rng.choice(("NL", "DE", "CN", "IT"))
    merged["batchNumber"] = f"B{serial:06d}"
    if "netWeight" in merged and rng.random() < 0.5:
        merged["netWeight"] = quantize(merged["netWeight"] * Decimal("1.02"), 4)
    return merged


def document(
    rng: random.Random,
    serial: int,
    object_id: str,
    *,
    kind: Literal["drawing", "certificate", "terms", "confirmation"],
    subject: str,
) -> JsonObject:
    """Document metadata as attached in the portal: code, revision, name, objectId or url."""
    name, type_, description = {
        "drawing": (f"{subject} drawing.pdf", "Drawing", "Technical drawing"),
        "certificate": (f"Material certificate {subject}.pdf", "Certificate", "3.1 certificate"),
        "terms": (f"Purchase terms {subject}.pdf", "Terms", "General purchase conditions"),
        "confirmation": (
            f"Order confirmation {subject}.pdf",
            "OrderConfirmation",
            "Supplier's order confirmation",
        ),
    }[kind]
    found: JsonObject = {
        "code": f"DOC-{serial:06d}",
        "revision": rng.choice(("1", "2", "A", "B", "C")),
        "name": name,
        "objectId": object_id,
    }
    if rng.random() < 0.3:  # also downloadable from the party's own storage (SDK sample)
        found["url"] = f"https://files.example.com/{kind}/{serial:06d}.pdf"
    found["type"] = type_
    found["description"] = description
    return found


def contact(rng: random.Random, user_id: str, domain: str, role: str) -> JsonObject:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    return {
        "userId": user_id,
        "email": f"{first.lower()}.{last.replace(' ', '').lower()}@{domain}",
        "firstName": first,
        "lastName": last,
        "position": role,
        "phoneNumber": f"+31 10 {rng.randint(100, 999)} {rng.randint(1000, 9999)}",
    }


# ------------------------------------------------------------------ shipments


def location(place: JsonObject, location_type: str, *, iso2: bool) -> JsonObject:
    """A location as shipments carry it; the docs say ``countryCodeIso``, the SDK ``…Iso2``."""
    found: JsonObject = {
        "locationType": location_type,
        "id": place["id"],
        "idScheme": "GLN",
        "names": place["names"],
        "addressLines": place["addressLines"],
        "postalCode": place["postalCode"],
        "city": place["city"],
    }
    found["countryCodeIso2" if iso2 else "countryCodeIso"] = place["countryCodeIso2"]
    return found


PORT_OF_DESTINATION: Final = {
    "id": "8713755000005",
    "names": ["ECT Delta Terminal"],
    "addressLines": ["Europaweg 875"],
    "postalCode": "3199 LD",
    "city": "Maasvlakte Rotterdam",
    "countryCodeIso2": "NL",
}


def locations(rng: random.Random, departure_day: date, transport_mode: str) -> JsonObject:
    """Departure and destinations with ETD, an ETA window and, over sea, a port on the way."""
    iso2 = rng.random() < 0.5
    transit = {"Sea transport": 24, "Air transport": 2, "Rail transport": 12}.get(transport_mode, 3)
    arrival = departure_day + timedelta(days=transit)
    destinations: list[JsonObject] = []
    if transport_mode == "Sea transport":
        destinations.append(
            {
                "location": location(PORT_OF_DESTINATION, "PortOfDestination", iso2=iso2),
                "etaStartDate": (arrival - timedelta(days=2)).isoformat(),
                "etaEndDate": (arrival - timedelta(days=1)).isoformat(),
                "etdDate": (arrival - timedelta(days=1)).isoformat(),
            }
        )
    destinations.append(
        {
            "location": location(BUYER_PARTY, "PlaceOfDestination", iso2=iso2),
            "etaStartDate": arrival.isoformat(),
            "etaStartTime": rng.choice(("07:00:00", "08:00:00", "10:30:00")),
            "etaEndDate": arrival.isoformat(),
            "etaEndTime": rng.choice(("12:00:00", "15:00:00", "16:30:00")),
        }
    )
    return {
        "departure": {
            "location": location(SUPPLIER_PARTY, "AgreedPlace", iso2=iso2),
            "etdDate": departure_day.isoformat(),
        },
        "destinations": destinations,
    }


def container_number(rng: random.Random) -> str:
    """An ISO 6346 container number with a valid check digit."""
    owner = rng.choice(("MSKU", "BICU", "TGHU", "CMAU"))
    serial = f"{rng.randrange(1_000_000):06d}"
    values = []
    for ch in owner + serial:
        if ch.isdigit():
            values.append(int(ch))
        else:
            value = ord(ch) - ord("A") + 10
            values.append(value + (value - 1) // 10)  # multiples of 11 are skipped
    check = sum(v * 2**i for i, v in enumerate(values)) % 11 % 10
    return f"{owner}{serial}{check}"


def sscc(serial: int) -> str:
    """An SSCC with its GS1 check digit, in the ``(00)…`` form of the SDK sample."""
    body = f"0871234{serial % 10**10:010d}"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return f"(00){body}{(10 - total % 10) % 10}"


def load_carriers(
    rng: random.Random, lines: int, transport_mode: str, serial: int
) -> tuple[list[JsonObject], list[int | None]]:
    """For a share of shipments: containers (over sea) or packages holding some lines."""
    if rng.random() < 0.5:
        return [], [None] * lines
    if transport_mode == "Sea transport":
        carriers = [
            {
                "containerNumber": container_number(rng),
                "containerSizeAndType": rng.choice(("22G1", "45G1", "42G1")),
            }
        ]
    else:
        carriers = [
            {"packageSSCC": sscc(serial * 10 + i), "packageType": rng.choice(("PX", "CT", "8A"))}
            for i in range(min(lines, rng.randint(1, 2)))
        ]
    held: list[int | None] = [
        i % len(carriers) if rng.random() < 0.8 or i == 0 else None for i in range(lines)
    ]
    return carriers, held


def shipment_content(
    rng: random.Random,
    *,
    serial: int,
    lines: int,
    transport_mode: str | None,
    terms: JsonObject,
    issued_local: str,
    user_ids: tuple[str, str],
) -> ShipmentContent:
    mode = transport_mode or rng.choice(TRANSPORT_MODES[:3])
    identifiers: JsonObject = {"trackingNumber": f"1Z{serial * 7919:016d}"[:18]}
    if mode == "Sea transport":
        identifiers |= {
            "billOfLadingNumber": f"MAEU{serial:09d}",
            "imoNumber": rng.choice(("IMO9778791", "IMO9811000", "IMO9619907")),
            "carrierShipmentNumber": f"CSN{serial:08d}",
        }
    carriers, held = load_carriers(rng, lines, mode, serial)
    return ShipmentContent(
        transport_mode=mode,
        identifiers=identifiers,
        supplier_contacts=[contact(rng, user_ids[0], "supplier.example", "Shipping clerk")],
        buyer_contacts=[contact(rng, user_ids[1], "buyer.example", "Goods receipt")]
        if rng.random() < 0.7
        else [],
        invoice_numbers=[f"INV-2026-{serial:05d}"] if rng.random() < 0.6 else [],
        terms=terms,
        issued_local=issued_local,
        carriers=carriers,
        carrier_of_line=held,
    )


def erp_meta(rng: random.Random, serial: int, revision: int) -> JsonObject:
    """``meta.supplierErpMeta``: opaque to Tradecloud; one exact decimal in it."""
    return {
        "erpSystem": rng.choice(("SAP S/4HANA", "Microsoft Dynamics 365 BC", "Exact Globe")),
        "deliveryNumber": f"80{serial:08d}",
        "despatchAdviceRevision": str(revision),
        "grossWeightKg": Decimal(rng.randint(1200, 98000)) / 100,
    }
