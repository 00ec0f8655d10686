"""Tradecloud API v2 documents → canonical events.

Pure functions: no I/O, no clock reads, no logging. Each takes the decoded
document (``shared.schema.codec.loads_exact``: numbers as exact decimals) and
``received_at`` from the caller, and returns one ``CanonicalEvent`` or raises
``InvalidPayload`` naming the field path.

Shapes handled (api-facts §1, §2.4, §3):

* order webhook body ``{eventName, orderEvent | singleDeliveryOrderEvent |
  simpleOrderEvent | orderDocumentsEvent, meta?}``: only the touched lines, each
  marked ``changed`` (none at all for a header-only change); ``meta`` read at
  the top level or inside the event;
* polled order and GET order (``id`` instead of ``orderId``, all lines, both
  delivery-schedule and single-delivery flavours); lines changed after the poll
  cursor are marked ``changed``;
* shipment webhook body ``{eventName, shipment, meta?}`` and polled / GET
  shipment (all lines; changed lines are those stamped with the shipment's
  ``meta.lastUpdatedAt``, or after the poll cursor).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

from shared import keys
from shared.errors import InvalidPayload
from shared.normalize import echo
from shared.normalize.fields import (
    EMPTY,
    JsonObject,
    Path,
    after,
    array,
    as_required_obj,
    as_text,
    boolean,
    decimal,
    identifier,
    integer,
    maybe_obj,
    nonempty_text,
    obj,
    parse_timestamp,
    required_array,
    required_text,
    text,
    timestamp,
    word,
)
from shared.schema.models import (
    Address,
    CanonicalEvent,
    Channel,
    ChargeLine,
    Contact,
    ContractTerms,
    DocumentRef,
    EchoInfo,
    EchoPolicy,
    Item,
    ItemDetails,
    Kind,
    LineValues,
    LoadCarrier,
    Location,
    Money,
    Order,
    Price,
    Prices,
    Property,
    Request,
    Role,
    ScheduleEntry,
    Shipment,
    Timestamp,
    TradeTerms,
    fixed_point,
)

ORDER_EVENT_FIELDS: Final = (
    "orderEvent",
    "singleDeliveryOrderEvent",
    "simpleOrderEvent",  # the name of singleDeliveryOrderEvent before April 2024
    "orderDocumentsEvent",
)
SHIPMENT_EVENT_FIELDS: Final = ("shipment", "shipmentEvent")  # shipmentEvent: a 2023 doc slip

ChangedRule = Callable[[Timestamp | None], bool | None]
"""Decides a line's ``changed`` flag from its ``lastUpdatedAt``."""


# ---------------------------------------------------------------- orders


def normalize_order_webhook(
    body: Any,
    *,
    received_at: datetime,
    role: Role | None = None,
    echo_policy: EchoPolicy = "off",
) -> CanonicalEvent:
    """POST/PUT order webhook body (delta: only the lines the event touched)."""
    root = as_required_obj(body, "body")
    event_name = word(root, "eventName", "")
    field = next((name for name in ORDER_EVENT_FIELDS if root.get(name) is not None), None)
    if field is None:
        raise InvalidPayload(
            "orderEvent",
            "missing: the body needs one of orderEvent, singleDeliveryOrderEvent, "
            "simpleOrderEvent or orderDocumentsEvent",
        )
    event = as_required_obj(root[field], field)
    meta = maybe_obj(root, "meta", "") or maybe_obj(event, "meta", field)
    document_id = required_text(event, "orderId", field)
    kind: Kind
    if field == "orderDocumentsEvent":
        order, kind = _documents_order(event, field), "order_documents"
    else:
        # A header-only change (a reassigned contact, new labels) touches no line:
        # Tradecloud sends the event without lines, or with an empty array.
        lines = array(event, "lines", field) or []
        order = _order(
            event,
            field,
            lines,
            complete=False,
            changed=lambda _: True,
            role=role,
            echo_policy=echo_policy,
        )
        kind = "order"
    return _event(
        channel="webhook",
        kind=kind,
        event_name=event_name,
        document_id=document_id,
        header=event,
        path=field,
        meta=meta,
        order=order,
        raw=body,
        received_at=received_at,
        role=role,
        echo_policy=echo_policy,
    )


def normalize_polled_order(
    document: Any,
    *,
    received_at: datetime,
    since: str | None = None,
    role: Role | None = None,
    echo_policy: EchoPolicy = "off",
    channel: Channel = "poll",
) -> CanonicalEvent:
    """One order of a poll page (current state, all lines).

    ``since`` is the ``lastUpdatedAfter`` the page was polled with: lines
    updated after it are marked ``changed``. Without it ``changed`` stays null.
    """
    root = as_required_obj(document, "order")
    document_id = required_text(root, "id" if "id" in root else "orderId", "order")
    lines = required_array(root, "lines", "order")
    cursor = parse_timestamp(since) if since else None
    order = _order(
        root,
        "order",
        lines,
        complete=True,
        changed=lambda stamp: after(stamp, cursor),
        role=role,
        echo_policy=echo_policy,
    )
    return _event(
        channel=channel,
        kind="order",
        event_name=None,
        document_id=document_id,
        header=root,
        path="order",
        meta=maybe_obj(root, "meta", "order"),
        order=order,
        raw=document,
        received_at=received_at,
        role=role,
        echo_policy=echo_policy,
    )


def normalize_fetched_order(
    document: Any,
    *,
    received_at: datetime,
    role: Role | None = None,
    echo_policy: EchoPolicy = "off",
) -> CanonicalEvent:
    """The order fetched with ``GET /v2/order/{id}`` after a legacy GET webhook.

    Published on the webhook channel with no event name: the GET call told us
    only that *something* changed.
    """
    return normalize_polled_order(
        document, received_at=received_at, role=role, echo_policy=echo_policy, channel="webhook"
    )


def _order(
    header: JsonObject,
    path: Path,
    lines: Sequence[Any],
    *,
    complete: bool,
    changed: ChangedRule,
    role: Role | None,
    echo_policy: EchoPolicy,
) -> Order:
    bp, sp = (path, "buyerOrder"), (path, "supplierOrder")
    buyer_order = obj(header, "buyerOrder", path)
    supplier_order = obj(header, "supplierOrder", path)
    supplier_account = buyer_order.get("supplierAccountNumber", header.get("supplierAccountNumber"))
    return Order.model_validate(
        {
            "purchase_order_number": _po_number(header, buyer_order, path),
            "order_type": text(buyer_order, "orderType", bp),
            "description": text(buyer_order, "description", bp),
            "buyer": {
                "company_id": text(buyer_order, "companyId", bp),
                "account_number": text(supplier_order, "buyerAccountNumber", sp),
                "contact": _contact(buyer_order, bp),
                "contact_details": _contact_details(buyer_order, bp),
                "party": _address(buyer_order, "buyerParty", bp),
                **_texts(buyer_order, bp),
            },
            "supplier": {
                "company_id": text(supplier_order, "companyId", sp),
                "account_number": as_text(supplier_account, (bp, "supplierAccountNumber")),
                "description": text(supplier_order, "description", sp),
                "contact": _contact(supplier_order, sp),
                "contact_details": _contact_details(supplier_order, sp),
                "party": _address(supplier_order, "supplierParty", sp)
                or _address(buyer_order, "supplierParty", bp),
                **_texts(supplier_order, sp),
            },
            "delivery_overdue": boolean(
                obj(header, "indicators", path), "deliveryOverdue", (path, "indicators")
            ),
            "indicators": _flags(header, "indicators", path),
            "terms": _trade_terms(buyer_order, "terms", bp),
            "destination": _address(buyer_order, "destination", bp),
            "accounting_party": _address(buyer_order, "buyerAccountingParty", bp),
            "event_dates": _event_dates(header, path),
            "custom_labels": _strings(header, "customLabels", path),
            "lines": [
                _line(line, ((path, "lines"), i), changed, role, echo_policy)
                for i, line in enumerate(lines)
            ],
            "lines_complete": complete,
            "documents": _order_documents(buyer_order, supplier_order, path),
        }
    )


def _line(
    raw: Any, path: Path, changed: ChangedRule, role: Role | None, echo_policy: EchoPolicy
) -> dict[str, Any]:
    line = as_required_obj(raw, path)
    bp = (path, "buyerLine")
    buyer_line = obj(line, "buyerLine", path)
    supplier_line = obj(line, "supplierLine", path)
    status = obj(line, "status", path)
    status_line = maybe_obj(line, "statusLine", path)

    # Without an open request the *IncludingRequests values equal the plain ones;
    # comparing the raw dicts (in C) spares normalizing them twice.
    if status_line is not None:  # single-delivery flavour
        sl = (path, "statusLine")
        schedule = _single(status_line, "scheduledDelivery", sl)
        including = (
            schedule
            if status_line.get("scheduledDeliveryInclRequests")
            == status_line.get("scheduledDelivery")
            else _single(status_line, "scheduledDeliveryInclRequests", sl)
        )
        prices = _prices(status_line, "prices", sl)
        prices_including = (
            prices
            if status_line.get("pricesInclRequests") == status_line.get("prices")
            else _prices(status_line, "pricesInclRequests", sl)
        )
    else:
        schedule = _schedule(line, "deliverySchedule", path)
        including = (
            schedule
            if line.get("deliveryScheduleIncludingRequests") == line.get("deliverySchedule")
            else _schedule(line, "deliveryScheduleIncludingRequests", path)
        )
        prices = _prices(line, "prices", path)
        prices_including = (
            prices
            if line.get("pricesIncludingRequests") == line.get("prices")
            else _prices(line, "pricesIncludingRequests", path)
        )
    if schedule is None:  # fall back to what the buyer issued
        schedule = _schedule(buyer_line, "deliverySchedule", bp)
        if schedule is None:
            schedule = _single(buyer_line, "scheduledDelivery", bp)
    if prices is None:
        prices = _prices(buyer_line, "prices", bp)

    last_updated = timestamp(line, "lastUpdatedAt", path)
    process_status = word(status, "processStatus", (path, "status"))
    in_progress = text(status, "inProgressStatus", (path, "status"))
    sp = (path, "supplierLine")
    position = identifier(buyer_line, "position", bp)
    line_id = identifier(line, "id", path)
    confirmed = maybe_obj(line, "confirmedLine", path)
    return {
        "line_id": line_id,
        "position": position,
        "original_position": nonempty_text(buyer_line, "originalPosition", bp),
        "line_type": text(line, "lineType", path),
        "description": text(buyer_line, "description", bp),
        "item": _item(obj(buyer_line, "item", bp), (bp, "item")),
        "delivery_schedule": schedule or [],
        "delivery_schedule_including_requests": including,
        "prices": prices,
        "prices_including_requests": prices_including,
        "process_status": process_status,
        "in_progress_status": in_progress,
        "logistics_status": text(status, "logisticsStatus", (path, "status")),
        "sales_order_number": text(supplier_line, "salesOrderNumber", sp),
        "sales_order_position": text(supplier_line, "salesOrderPosition", sp),
        "charge_reason_code": text(line, "chargeReasonCode", path),
        "issued": _values(buyer_line, bp) if _issues(buyer_line) else None,
        "charge_lines": _charge_lines(buyer_line, "chargeLines", bp) or [],
        "requests": _requests(buyer_line, "buyer", bp) + _requests(supplier_line, "supplier", sp),
        "confirmed": None if confirmed is None else _values(confirmed, (path, "confirmedLine")),
        "delivery_history": _schedule(buyer_line, "deliveryHistory", bp) or [],
        "buyer": _line_side(buyer_line, bp),
        "supplier": _line_side(supplier_line, sp),
        "documents": _documents(buyer_line, bp, "buyer", position, line_id)
        + _documents(supplier_line, sp, "supplier", position, line_id),
        "item_details": _item_details(line, path),
        "terms": _contract_terms(buyer_line, bp),
        "project_number": text(buyer_line, "projectNumber", bp),
        "production_number": text(buyer_line, "productionNumber", bp),
        "indicators": {
            **_flags(buyer_line, "indicators", bp),
            **_flags(line, "indicators", path),
        },
        "event_dates": _event_dates(line, path),
        "last_updated_at": last_updated,
        "changed": changed(last_updated),
        "echo": echo.is_echo(role, echo_policy, process_status, in_progress),
    }


def _item(item: JsonObject, path: Path) -> Item:
    return {
        "number": text(item, "number", path),
        "revision": text(item, "revision", path),
        "name": text(item, "name", path),
        "supplier_item_number": text(item, "supplierItemNumber", path),
        "purchase_unit_of_measure": text(item, "purchaseUnitOfMeasureIso", path),
        "description": text(item, "description", path),
    }


def _schedule(container: JsonObject, key: str, path: Path) -> list[ScheduleEntry] | None:
    entries = array(container, key, path)
    if entries is None:
        return None
    return [_entry(entry, ((path, key), i)) for i, entry in enumerate(entries)]


def _single(container: JsonObject, key: str, path: Path) -> list[ScheduleEntry] | None:
    value = container.get(key)
    return None if value is None else [_entry(value, (path, key))]


def _entry(value: Any, path: Path) -> ScheduleEntry:
    entry = as_required_obj(value, path)
    return {
        "position": nonempty_text(entry, "position", path),
        "date": timestamp(entry, "date", path),
        "quantity": decimal(entry, "quantity", path),
        "status": text(entry, "status", path),
        "etd": timestamp(entry, "etd", path),
        "eta": timestamp(entry, "eta", path),
        "transport_mode": text(entry, "transportMode", path),
    }


def _prices(container: JsonObject, key: str, path: Path) -> Prices | None:
    prices = maybe_obj(container, key, path)
    if prices is None:
        return None
    pp = (path, key)
    return {
        "gross": _price(prices, "grossPrice", pp),
        "net": _price(prices, "netPrice", pp),
        "discount_percentage": decimal(prices, "discountPercentage", pp),
        "unit_of_measure": text(prices, "priceUnitOfMeasureIso", pp),
        "unit_quantity": decimal(prices, "priceUnitQuantity", pp),
    }


def _price(container: JsonObject, key: str, path: Path) -> Price | None:
    price = maybe_obj(container, key, path)
    if price is None:
        return None
    pp = (path, key)
    return {
        "transaction": _money(price, "priceInTransactionCurrency", pp),
        "base": _money(price, "priceInBaseCurrency", pp),
    }


def _money(container: JsonObject, key: str, path: Path) -> Money | None:
    money = maybe_obj(container, key, path)
    if money is None:
        return None
    mp = (path, key)
    amount = decimal(money, "value", mp)
    if amount is None:
        return None
    return {"value": amount, "currency": text(money, "currencyIso", mp)}


def _po_number(header: JsonObject, buyer_order: JsonObject, path: Path) -> str | None:
    number = buyer_order.get("purchaseOrderNumber", header.get("purchaseOrderNumber"))
    return as_text(number, ((path, "buyerOrder"), "purchaseOrderNumber"))


def _contact(party: JsonObject, path: Path) -> str | None:
    """A contact as one string (email, else user id); the full object stays in raw."""
    contact = party.get("contact")
    if contact is None or isinstance(contact, str):
        return contact
    found = as_required_obj(contact, (path, "contact"))
    return as_text(found.get("email") or found.get("userId"), ((path, "contact"), "email"))


def _charge_lines(container: JsonObject, key: str, path: Path) -> list[ChargeLine] | None:
    entries = array(container, key, path)
    if entries is None:
        return None
    result: list[ChargeLine] = []
    for i, raw in enumerate(entries):
        cp = ((path, key), i)
        charge = as_required_obj(raw, cp)
        result.append(
            {
                "position": nonempty_text(charge, "position", cp),
                "charge_type_code": text(charge, "chargeTypeCode", cp),
                "description": text(charge, "chargeDescription", cp),
                "quantity": decimal(charge, "quantity", cp),
                "price": _price(charge, "price", cp),
                "unit_of_measure": text(charge, "priceUnitOfMeasureIso", cp),
                "unit_quantity": decimal(charge, "priceUnitQuantity", cp),
            }
        )
    return result


def _issues(buyer_line: JsonObject) -> bool:
    """Whether the buyer line carries issued values (schedule, prices or charge lines)."""
    return any(
        buyer_line.get(key) is not None
        for key in ("deliverySchedule", "scheduledDelivery", "prices", "chargeLines")
    )


def _values(container: JsonObject, path: Path) -> LineValues:
    """A schedule, prices and charge lines (a request, the confirmed line), either flavour."""
    schedule = _schedule(container, "deliverySchedule", path)
    if schedule is None:
        schedule = _single(container, "scheduledDelivery", path)
    return {
        "delivery_schedule": schedule,
        "prices": _prices(container, "prices", path),
        "charge_lines": _charge_lines(container, "chargeLines", path),
    }


def _requests(side_line: JsonObject, side: str, path: Path) -> list[Request]:
    """Every request on one side of a line (``requests.proposal``, ``.reopenRequest``, …).

    Request kinds are open-ended: a kind the docs do not name yet is kept under
    its own name (snake_case), never dropped.
    """
    requests = maybe_obj(side_line, "requests", path)
    if not requests:
        return []
    rp = (path, "requests")
    found: list[Request] = []
    for name, raw in requests.items():
        if raw is None:
            continue
        request = as_required_obj(raw, (rp, name))
        values = _values(request, (rp, name))
        found.append(
            {
                "side": side,
                "kind": _snake(name),
                "status": text(request, "status", (rp, name)),
                "reason": text(request, "reason", (rp, name)),
                "delivery_schedule": values["delivery_schedule"],
                "prices": values["prices"],
                "charge_lines": values["charge_lines"],
            }
        )
    return found


def _snake(name: str) -> str:
    """``reopenRequest`` → ``reopen_request``."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


def _texts(party: JsonObject, path: Path) -> dict[str, Any]:
    """One side's custom fields and texts: properties, notes, labels, custom labels."""
    return {
        "properties": _properties(party, path),
        "notes": _strings(party, "notes", path),
        "labels": _strings(party, "labels", path),
        "custom_labels": _strings(party, "customLabels", path),
    }


def _line_side(side_line: JsonObject, path: Path) -> dict[str, Any]:
    return {"description": text(side_line, "description", path), **_texts(side_line, path)}


def _properties(container: JsonObject, path: Path) -> list[Property]:
    result: list[Property] = []
    for i, raw in enumerate(array(container, "properties", path) or ()):
        pp = ((path, "properties"), i)
        prop = as_required_obj(raw, pp)
        result.append({"key": text(prop, "key", pp), "value": text(prop, "value", pp)})
    return result


def _strings(container: JsonObject, key: str, path: Path) -> list[str]:
    return [
        as_text(value, ((path, key), i)) or ""
        for i, value in enumerate(array(container, key, path) or ())
    ]


def _flags(container: JsonObject, key: str, path: Path) -> dict[str, bool | None]:
    """Indicator flags by their Tradecloud names (open-ended)."""
    flags = obj(container, key, path)
    return {name: boolean(flags, name, (path, key)) for name in flags}


def _event_dates(container: JsonObject, path: Path) -> dict[str, Timestamp]:
    """``eventDates``: undocumented keys, each a date-time; kept by their own names."""
    dates = obj(container, "eventDates", path)
    found: dict[str, Timestamp] = {}
    for name in dates:
        stamp = timestamp(dates, name, (path, "eventDates"))
        if stamp is not None:
            found[name] = stamp
    return found


def _item_details(line: JsonObject, path: Path) -> ItemDetails | None:
    details = maybe_obj(line, "mergedItemDetails", path)
    if details is None:
        return None
    dp = (path, "mergedItemDetails")
    return {
        "country_of_origin": text(details, "countryOfOriginCodeIso2", dp),
        "combined_nomenclature_code": text(details, "combinedNomenclatureCode", dp),
        "net_weight": decimal(details, "netWeight", dp),
        "net_weight_unit_of_measure": text(details, "netWeightUnitOfMeasureIso", dp),
        "dangerous_goods_code": text(details, "dangerousGoodsCodeUnece", dp),
        "serial_number": text(details, "serialNumber", dp),
        "batch_number": text(details, "batchNumber", dp),
    }


def _contract_terms(buyer_line: JsonObject, path: Path) -> ContractTerms | None:
    terms = maybe_obj(buyer_line, "terms", path)
    if terms is None:
        return None
    tp = (path, "terms")
    return {
        "contract_number": text(terms, "contractNumber", tp),
        "contract_position": text(terms, "contractPosition", tp),
    }


def _trade_terms(container: JsonObject, key: str, path: Path) -> TradeTerms | None:
    terms = maybe_obj(container, key, path)
    if terms is None:
        return None
    tp = (path, key)
    return {
        "incoterms_code": text(terms, "incotermsCode", tp),
        "incoterms": text(terms, "incoterms", tp),
        "payment_terms_code": text(terms, "paymentTermsCode", tp),
        "payment_terms": text(terms, "paymentTerms", tp),
    }


def _address(container: JsonObject, key: str, path: Path) -> Address | None:
    place = maybe_obj(container, key, path)
    if place is None:
        return None
    ap = (path, key)
    country = "countryCodeIso" if "countryCodeIso" in place else "countryCodeIso2"
    return {
        "id": text(place, "id", ap),
        "id_scheme": text(place, "idScheme", ap),
        "location_type": text(place, "locationType", ap),
        "code": text(place, "code", ap),
        "names": _strings(place, "names", ap),
        "address_lines": _strings(place, "addressLines", ap),
        "postal_code": text(place, "postalCode", ap),
        "city": text(place, "city", ap),
        "country_code": text(place, country, ap),
        "country_name": text(place, "countryName", ap),
    }


def _plain_json(value: Any) -> Any:
    """Opaque JSON (``supplierErpMeta``) with its decimals as fixed-point text, as elsewhere."""
    if isinstance(value, Mapping):
        return {str(key): _plain_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain_json(item) for item in value]
    if isinstance(value, Decimal):
        return fixed_point(value)
    return value


def _contacts(container: JsonObject, path: Path) -> list[Contact]:
    return [
        _contact_of(as_required_obj(raw, ((path, "contacts"), i)), ((path, "contacts"), i))
        for i, raw in enumerate(array(container, "contacts", path) or ())
    ]


def _contact_details(party: JsonObject, path: Path) -> Contact | None:
    """The party's whole ``contact`` object (None when it is absent or a bare string)."""
    contact = party.get("contact")
    if contact is None or isinstance(contact, str):
        return None
    return _contact_of(as_required_obj(contact, (path, "contact")), (path, "contact"))


def _contact_of(contact: JsonObject, path: Path) -> Contact:
    return {
        "user_id": text(contact, "userId", path),
        "email": text(contact, "email", path),
        "first_name": text(contact, "firstName", path),
        "last_name": text(contact, "lastName", path),
        "phone_number": text(contact, "phoneNumber", path),
        "position": text(contact, "position", path),
    }


# ------------------------------------------------------- order documents


def _documents_order(event: JsonObject, path: Path) -> Order:
    buyer_order = obj(event, "buyerOrder", path)
    supplier_order = obj(event, "supplierOrder", path)
    documents = _order_documents(buyer_order, supplier_order, path)
    for i, raw in enumerate(array(event, "lines", path) or ()):
        lp = ((path, "lines"), i)
        line = as_required_obj(raw, lp)
        buyer_line = obj(line, "buyerLine", lp)
        position = identifier(buyer_line, "position", (lp, "buyerLine"))
        line_id = identifier(line, "id", lp)
        documents += _documents(buyer_line, (lp, "buyerLine"), "buyer", position, line_id)
        documents += _documents(
            obj(line, "supplierLine", lp), (lp, "supplierLine"), "supplier", position, line_id
        )
    return Order.model_validate(
        {
            "purchase_order_number": _po_number(event, buyer_order, path),
            "buyer": {"company_id": text(buyer_order, "companyId", (path, "buyerOrder"))},
            "supplier": {"company_id": text(supplier_order, "companyId", (path, "supplierOrder"))},
            "lines_complete": False,
            "documents": documents,
        }
    )


def _order_documents(
    buyer_order: JsonObject, supplier_order: JsonObject, path: Path
) -> list[DocumentRef]:
    return _documents(buyer_order, (path, "buyerOrder"), "buyer", None) + _documents(
        supplier_order, (path, "supplierOrder"), "supplier", None
    )


def _documents(
    party: JsonObject,
    path: Path,
    owner: Literal["buyer", "supplier"],
    line_position: str | None,
    line_id: str | None = None,
) -> list[DocumentRef]:
    result: list[DocumentRef] = []
    for i, raw in enumerate(array(party, "documents", path) or ()):
        dp = ((path, "documents"), i)
        doc = as_required_obj(raw, dp)
        result.append(
            {
                "owner": owner,
                "line_position": line_position,
                "object_id": text(doc, "objectId", dp),
                "url": text(doc, "url", dp),
                "name": text(doc, "name", dp),
                "description": text(doc, "description", dp),
                "type": text(doc, "type", dp),
                "code": text(doc, "code", dp),
                "revision": text(doc, "revision", dp),
                "line_id": line_id,
            }
        )
    return result


# ------------------------------------------------------------- shipments


def normalize_shipment_webhook(body: Any, *, received_at: datetime) -> CanonicalEvent:
    """POST/PUT shipment webhook body: the whole current shipment.

    Changed lines are those stamped with the shipment's own ``meta.lastUpdatedAt``.
    """
    root = as_required_obj(body, "body")
    event_name = word(root, "eventName", "")
    field = next((name for name in SHIPMENT_EVENT_FIELDS if root.get(name) is not None), None)
    if field is None:
        raise InvalidPayload("shipment", "missing: the body needs a shipment object")
    shipment = as_required_obj(root[field], field)
    stamp = _shipment_stamp(shipment, field)

    def changed(line_stamp: Timestamp | None) -> bool | None:
        if line_stamp is None or stamp is None:
            return None
        return line_stamp["text"] == stamp["text"]

    return _shipment_event(
        shipment,
        field,
        channel="webhook",
        event_name=event_name,
        meta=maybe_obj(root, "meta", ""),
        changed=changed,
        raw=body,
        received_at=received_at,
    )


def normalize_polled_shipment(
    document: Any, *, received_at: datetime, since: str | None = None, channel: Channel = "poll"
) -> CanonicalEvent:
    """One shipment of a shipment poll page; lines stamped after ``since`` are ``changed``."""
    root = as_required_obj(document, "shipment")
    cursor = parse_timestamp(since) if since else None
    return _shipment_event(
        root,
        "shipment",
        channel=channel,
        event_name=None,
        meta=None,
        changed=lambda stamp: after(stamp, cursor),
        raw=document,
        received_at=received_at,
    )


def normalize_fetched_shipment(document: Any, *, received_at: datetime) -> CanonicalEvent:
    """The shipment fetched with ``GET /v2/shipment/{id}`` after a legacy GET webhook."""
    return normalize_polled_shipment(document, received_at=received_at, channel="webhook")


def _shipment_stamp(shipment: JsonObject, path: Path) -> Timestamp | None:
    return timestamp(obj(shipment, "meta", path), "lastUpdatedAt", (path, "meta"))


def _shipment_event(
    shipment: JsonObject,
    path: Path,
    *,
    channel: Channel,
    event_name: str | None,
    meta: JsonObject | None,
    changed: ChangedRule,
    raw: Any,
    received_at: datetime,
) -> CanonicalEvent:
    document_id = required_text(shipment, "id", path)
    sp, bp = (path, "supplierShipment"), (path, "buyerShipment")
    supplier = obj(shipment, "supplierShipment", path)
    buyer = obj(shipment, "buyerShipment", path)
    identifiers = obj(shipment, "identifiers", path)
    lines: list[dict[str, Any]] = []
    carriers: list[LoadCarrier] = []
    for c, carrier_raw in enumerate(array(shipment, "loadCarriers", path) or ()):
        cp = ((path, "loadCarriers"), c)
        carrier = as_required_obj(carrier_raw, cp)
        label = text(carrier, "containerNumber", cp) or text(carrier, "packageSSCC", cp)
        carriers.append(
            {
                "container_number": text(carrier, "containerNumber", cp),
                "container_size_and_type": text(carrier, "containerSizeAndType", cp),
                "package_sscc": text(carrier, "packageSSCC", cp),
                "package_type": text(carrier, "packageType", cp),
            }
        )
        for i, line in enumerate(array(carrier, "lines", cp) or ()):
            lines.append(_shipment_line(line, ((cp, "lines"), i), label, changed))
    for i, line in enumerate(array(shipment, "lines", path) or ()):
        lines.append(_shipment_line(line, ((path, "lines"), i), None, changed))
    model = Shipment.model_validate(
        {
            "shipment_number": text(supplier, "shipmentNumber", sp),
            "transport_mode": text(shipment, "transportMode", path),
            "supplier": {
                "company_id": text(supplier, "companyId", sp),
                "account_number": text(buyer, "supplierAccountNumber", bp),
                "party": _address(supplier, "supplierParty", sp),
                "contacts": _contacts(supplier, sp),
            },
            "buyer": {
                "company_id": text(buyer, "companyId", bp),
                "account_number": text(supplier, "buyerAccountNumber", sp),
                "party": _address(buyer, "buyerParty", bp),
                "contacts": _contacts(buyer, bp),
            },
            "identifiers": {
                key: value
                for key in identifiers
                if (value := text(identifiers, key, (path, "identifiers"))) is not None
            },
            "invoice_numbers": [
                as_text(number, ((sp, "invoiceNumbers"), i)) or ""
                for i, number in enumerate(array(supplier, "invoiceNumbers", sp) or ())
            ],
            "despatch_advice_number": text(supplier, "despatchAdviceNumber", sp),
            "process_status": word(
                obj(shipment, "status", path), "processStatus", (path, "status")
            ),
            "process_status_reason": text(
                obj(shipment, "status", path), "processStatusReason", (path, "status")
            ),
            "purchase_order_terms": _trade_terms(buyer, "purchaseOrderTerms", bp),
            "load_carriers": carriers,
            "supplier_erp_meta": _plain_json(obj(shipment, "meta", path).get("supplierErpMeta")),
            "despatch_advice_issued_at": timestamp(
                obj(shipment, "meta", path), "despatchAdviceErpIssueDateTime", (path, "meta")
            ),
            "locations": _locations(shipment, path),
            "lines": lines,
            "documents": _documents(supplier, sp, "supplier", None)
            + _documents(buyer, bp, "buyer", None),
        }
    )
    return _event(
        channel=channel,
        kind="shipment",
        event_name=event_name,
        document_id=document_id,
        header=shipment,
        path=path,
        meta=meta,
        shipment=model,
        raw=raw,
        received_at=received_at,
        document_number=model.shipment_number,
        last_updated_at=_shipment_stamp(shipment, path),
    )


def _shipment_line(
    raw: Any, path: Path, carrier: str | None, changed: ChangedRule
) -> dict[str, Any]:
    line = as_required_obj(raw, path)
    item = obj(line, "item", path)
    ip = (path, "item")
    # Received shipments nest despatch data under supplierLine; request bodies keep it flat.
    supplier_line = maybe_obj(line, "supplierLine", path) or line
    sp = (path, "supplierLine")
    stamp = timestamp(obj(line, "meta", path), "lastUpdatedAt", (path, "meta"))
    return {
        "purchase_order_number": text(line, "purchaseOrderNumber", path),
        "purchase_order_line_position": text(line, "purchaseOrderLinePosition", path),
        "delivery_schedule_position": text(line, "deliverySchedulePosition", path),
        "item": {
            "number": text(item, "buyerItemNumber", ip),
            "revision": text(item, "buyerItemRevision", ip),
            "name": text(item, "buyerItemName", ip),
            "supplier_item_number": text(item, "supplierItemNumber", ip),
            "purchase_unit_of_measure": text(item, "purchaseUnitOfMeasureIso", ip),
            "supplier_item_name": text(item, "supplierItemName", ip),
            "supplier_item_revision": text(item, "supplierItemRevision", ip),
        },
        "backorder_date": timestamp(supplier_line, "backorderDate", sp),
        "despatch_advice_number": text(supplier_line, "despatchAdviceNumber", sp),
        "despatch_advice_line_position": text(supplier_line, "despatchAdviceLinePosition", sp),
        "despatch_quantity": decimal(supplier_line, "despatchQuantity", sp),
        "backorder_quantity": decimal(supplier_line, "backorderQuantity", sp),
        "load_carrier": carrier,
        "last_updated_at": stamp,
        "changed": changed(stamp),
    }


def _locations(shipment: JsonObject, path: Path) -> list[Location]:
    lp = (path, "locations")
    locations = obj(shipment, "locations", path)
    result: list[Location] = []
    departure = maybe_obj(locations, "departure", lp)
    if departure is not None:
        result.append(_location(departure, (lp, "departure"), "departure"))
    for i, destination in enumerate(array(locations, "destinations", lp) or ()):
        dp = ((lp, "destinations"), i)
        result.append(_location(as_required_obj(destination, dp), dp, "destination"))
    return result


def _location(stop: JsonObject, path: Path, role: str) -> Location:
    lp = (path, "location")
    place = obj(stop, "location", path)
    names = array(place, "names", lp) or ()
    country = "countryCodeIso" if "countryCodeIso" in place else "countryCodeIso2"
    return {
        "role": role,
        "location_type": text(place, "locationType", lp),
        "location_id": text(place, "id", lp),
        "id_scheme": text(place, "idScheme", lp),
        "name": as_text(names[0], ((lp, "names"), 0)) if names else None,
        "city": text(place, "city", lp),
        "country_code": text(place, country, lp),
        "etd": timestamp(stop, "etdDate", path),
        "eta": timestamp(stop, "etaDate" if "etaDate" in stop else "etaStartDate", path),
        "atd": timestamp(stop, "atdDate", path),
        "ata": timestamp(stop, "ataDate", path),
        "eta_start_time": text(stop, "etaStartTime", path),
        "eta_end": timestamp(stop, "etaEndDate", path),
        "eta_end_time": text(stop, "etaEndTime", path),
        "address": _address(stop, "location", path),
    }


# ------------------------------------------------------------ assembly


def _event(
    *,
    channel: Channel,
    kind: Kind,
    event_name: str | None,
    document_id: str,
    header: JsonObject,
    path: Path,
    meta: JsonObject | None,
    raw: Any,
    received_at: datetime,
    order: Order | None = None,
    shipment: Shipment | None = None,
    role: Role | None = None,
    echo_policy: EchoPolicy = "off",
    document_number: str | None = None,
    last_updated_at: Timestamp | None = None,
) -> CanonicalEvent:
    meta = meta or EMPTY
    status = obj(header, "status", path)
    version = integer(header, "version", path)
    key = "" if version is None else keys.idempotency_key("tradecloud", kind, document_id, version)
    message_id = text(meta, "messageId", "meta")
    if last_updated_at is None:
        last_updated_at = timestamp(header, "lastUpdatedAt", path)
    if order is not None and document_number is None:
        document_number = order.purchase_order_number
    echo_info = (
        echo.summarize(order.lines, role, echo_policy)
        if order is not None and order.lines
        else EchoInfo(role=role, policy=echo_policy)
    )
    event = CanonicalEvent.model_validate(
        {
            "event_id": keys.event_id(key, channel, message_id, event_name) if key else "",
            "idempotency_key": key,
            "source": "tradecloud",
            "channel": channel,
            "kind": kind,
            "event_name": event_name,
            "document_id": document_id,
            "document_number": document_number,
            "version": version,
            "message_id": message_id,
            "trace_id": text(obj(meta, "source", "meta"), "traceId", "meta.source"),
            "process_status": word(status, "processStatus", (path, "status")),
            "logistics_status": word(status, "logisticsStatus", (path, "status")),
            "last_updated_at": last_updated_at,
            "received_at": keys.require_aware(received_at),
            "echo": echo_info,
            "order": order,
            "shipment": shipment,
            "raw": raw,
        }
    )
    return event if version is not None else keys.keyed_by_state(event)
