"""Every upstream field lands in a normalized field, or is on one explicit raw-only list.

The inputs are every received document we have: our fixtures, the steering
kit's constructed samples (``../shared/samples/constructed/``, when present),
and what the simulators render (Tradecloud orders in both flavours, the webhook
body of every change, shipments; Apicbase webhook and API copies). Each is
normalized, and each leaf of the raw document (``tests.support.coverage``:
paths with ``[]`` for array items, ``*`` for open-ended keys, shared by the
webhook, poll and GET forms) must resolve in ``MAPPED`` (raw pattern → the
normalized path it lands in) or in ``RAW_ONLY`` (kept only in ``raw``, each
with its reason). A new upstream field therefore fails here instead of
vanishing quietly; a table entry no input exercises fails as stale.

``MAPPED`` is checked, not trusted: a mapped leaf's normalized path must exist
in the event, and a string or number must occur there (decimals by value,
timestamps by their text).
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final, Literal

import pytest

from services.simulators.apicbase.orders import OrderBook, OrderGenerator
from services.simulators.tradecloud.world import World
from shared.normalize import apicbase, tradecloud
from shared.schema.codec import dumps_exact, loads_exact
from shared.schema.models import CanonicalEvent
from tests.support.coverage import Leaf, Resolved, Table, carried, fill, index, leaves
from tests.support.files import FIXTURES, SAMPLES

RECEIVED: Final = datetime(2026, 6, 1, tzinfo=UTC)
CONSTRUCTED: Final = SAMPLES / "constructed"
SIMULATED_ORDERS: Final = 250
"""Tradecloud orders the simulator issues; each then takes up to ``STEPS`` more lifecycle steps."""
STEPS: Final = 6
SIMULATED_APICBASE_ORDERS: Final = 40

# ----------------------------------------------------------------- the tables
#
# A pattern ``prefix.<GROUP>`` hands the rest of the path to GROUPS[GROUP]; a
# target ``….<GROUP>`` receives the group's target. ``*`` in a target is the
# raw key carried by ``*`` in the path (eventDates, indicators, identifiers);
# ``**`` is the rest of opaque JSON. Apicbase paths start with ``apicbase:``.

PRICE: Final = {
    "priceInTransactionCurrency.value": "transaction.value",
    "priceInTransactionCurrency.currencyIso": "transaction.currency",
    "priceInBaseCurrency.value": "base.value",
    "priceInBaseCurrency.currencyIso": "base.currency",
}
PRICES: Final = {
    "grossPrice.<PRICE>": "gross.<PRICE>",
    "netPrice.<PRICE>": "net.<PRICE>",
    "discountPercentage": "discount_percentage",
    "priceUnitOfMeasureIso": "unit_of_measure",
    "priceUnitQuantity": "unit_quantity",
}
ENTRY: Final = {  # a delivery line (deliverySchedule[] item, or a single scheduledDelivery)
    "position": "position",
    "date": "date",
    "quantity": "quantity",
    "status": "status",
    "etd": "etd",
    "eta": "eta",
    "transportMode": "transport_mode",
}
CHARGE_LINE: Final = {
    "position": "position",
    "chargeTypeCode": "charge_type_code",
    "chargeDescription": "description",
    "quantity": "quantity",
    "price.<PRICE>": "price.<PRICE>",
    "priceUnitOfMeasureIso": "unit_of_measure",
    "priceUnitQuantity": "unit_quantity",
}
VALUES: Final = {  # the agreed line, or what a request asks for (either flavour)
    "deliverySchedule[].<ENTRY>": "delivery_schedule[].<ENTRY>",
    "scheduledDelivery.<ENTRY>": "delivery_schedule[].<ENTRY>",
    "prices.<PRICES>": "prices.<PRICES>",
    "chargeLines[].<CHARGE_LINE>": "charge_lines[].<CHARGE_LINE>",
}
REQUEST: Final = {"<VALUES>": "<VALUES>", "status": "status", "reason": "reason"}
DOCUMENT: Final = {
    "objectId": "object_id",
    "url": "url",
    "name": "name",
    "description": "description",
    "type": "type",
    "code": "code",
    "revision": "revision",
}
TEXTS: Final = {  # one side's custom fields and texts (an order party, a line side)
    "properties[].key": "properties[].key",
    "properties[].value": "properties[].value",
    "notes[]": "notes[]",
    "labels[]": "labels[]",
    "customLabels[]": "custom_labels[]",
}
ADDRESS: Final = {
    "id": "id",
    "idScheme": "id_scheme",
    "locationType": "location_type",
    "code": "code",
    "names[]": "names[]",
    "addressLines[]": "address_lines[]",
    "postalCode": "postal_code",
    "city": "city",
    "countryCodeIso": "country_code",  # the docs' spelling …
    "countryCodeIso2": "country_code",  # … and the SDK samples'
    "countryName": "country_name",
}
TRADE_TERMS: Final = {
    "incotermsCode": "incoterms_code",
    "incoterms": "incoterms",
    "paymentTermsCode": "payment_terms_code",
    "paymentTerms": "payment_terms",
}
CONTACT: Final = {
    "userId": "user_id",
    "email": "email",
    "firstName": "first_name",
    "lastName": "last_name",
    "phoneNumber": "phone_number",
    "position": "position",
}
SHIPMENT_LINE: Final = {
    "purchaseOrderNumber": "purchase_order_number",
    "purchaseOrderLinePosition": "purchase_order_line_position",
    "deliverySchedulePosition": "delivery_schedule_position",
    "item.buyerItemNumber": "item.number",
    "item.buyerItemRevision": "item.revision",
    "item.buyerItemName": "item.name",
    "item.supplierItemNumber": "item.supplier_item_number",
    "item.supplierItemName": "item.supplier_item_name",
    "item.supplierItemRevision": "item.supplier_item_revision",
    "item.purchaseUnitOfMeasureIso": "item.purchase_unit_of_measure",
    "supplierLine.despatchAdviceNumber": "despatch_advice_number",
    "supplierLine.despatchAdviceLinePosition": "despatch_advice_line_position",
    "supplierLine.despatchQuantity": "despatch_quantity",
    "supplierLine.backorderQuantity": "backorder_quantity",
    "supplierLine.backorderDate": "backorder_date",
    "meta.lastUpdatedAt": "last_updated_at",
}
STOP: Final = {  # a shipment's departure or one of its destinations
    "location.<ADDRESS>": "address.<ADDRESS>",
    "etdDate": "etd",
    "etaStartDate": "eta",
    "etaStartTime": "eta_start_time",
    "etaEndDate": "eta_end",
    "etaEndTime": "eta_end_time",
    "atdDate": "atd",
    "ataDate": "ata",
}
GROUPS: Final[dict[str, dict[str, str]]] = {
    "PRICE": PRICE,
    "PRICES": PRICES,
    "ENTRY": ENTRY,
    "CHARGE_LINE": CHARGE_LINE,
    "VALUES": VALUES,
    "REQUEST": REQUEST,
    "DOCUMENT": DOCUMENT,
    "TEXTS": TEXTS,
    "ADDRESS": ADDRESS,
    "TRADE_TERMS": TRADE_TERMS,
    "CONTACT": CONTACT,
    "SHIPMENT_LINE": SHIPMENT_LINE,
    "STOP": STOP,
}

MAPPED: Final[dict[str, str | None]] = {
    # --- message and document identity (both Tradecloud documents)
    "eventName": "event_name",
    "meta.messageId": "message_id",
    "meta.source.traceId": "trace_id",
    "id": "document_id",  # orderId in webhook events
    "version": "version",
    "status.processStatus": "process_status",
    "status.logisticsStatus": "logistics_status",
    "lastUpdatedAt": "last_updated_at",
    # --- order header
    "purchaseOrderNumber": "order.purchase_order_number",  # legacy, when buyerOrder has none
    "supplierAccountNumber": "order.supplier.account_number",  # legacy, likewise
    "indicators.*": "order.indicators.*",
    "eventDates.*": "order.event_dates.*",
    "customLabels[]": "order.custom_labels[]",  # header level (api-facts §3.1, SDK filter)
    "buyerOrder.companyId": "order.buyer.company_id",
    "buyerOrder.purchaseOrderNumber": "order.purchase_order_number",
    "buyerOrder.supplierAccountNumber": "order.supplier.account_number",
    "buyerOrder.orderType": "order.order_type",
    "buyerOrder.description": "order.description",
    "buyerOrder.contact.<CONTACT>": "order.buyer.contact_details.<CONTACT>",
    "buyerOrder.buyerParty.<ADDRESS>": "order.buyer.party.<ADDRESS>",
    # when supplierOrder carries no supplierParty of its own
    "buyerOrder.supplierParty.<ADDRESS>": "order.supplier.party.<ADDRESS>",
    "buyerOrder.destination.<ADDRESS>": "order.destination.<ADDRESS>",
    "buyerOrder.buyerAccountingParty.<ADDRESS>": "order.accounting_party.<ADDRESS>",
    "buyerOrder.terms.<TRADE_TERMS>": "order.terms.<TRADE_TERMS>",
    "buyerOrder.documents[].<DOCUMENT>": "order.documents[].<DOCUMENT>",
    "buyerOrder.<TEXTS>": "order.buyer.<TEXTS>",
    "supplierOrder.companyId": "order.supplier.company_id",
    "supplierOrder.buyerAccountNumber": "order.buyer.account_number",
    "supplierOrder.description": "order.supplier.description",
    "supplierOrder.contact.<CONTACT>": "order.supplier.contact_details.<CONTACT>",
    "supplierOrder.documents[].<DOCUMENT>": "order.documents[].<DOCUMENT>",
    "supplierOrder.<TEXTS>": "order.supplier.<TEXTS>",
    # --- order lines
    "lines[].id": "order.lines[].line_id",
    "lines[].lineType": "order.lines[].line_type",
    "lines[].chargeReasonCode": "order.lines[].charge_reason_code",
    "lines[].lastUpdatedAt": "order.lines[].last_updated_at",
    "lines[].status.processStatus": "order.lines[].process_status",
    "lines[].status.inProgressStatus": "order.lines[].in_progress_status",
    "lines[].status.logisticsStatus": "order.lines[].logistics_status",
    "lines[].indicators.*": "order.lines[].indicators.*",
    "lines[].eventDates.*": "order.lines[].event_dates.*",
    "lines[].deliverySchedule[].<ENTRY>": "order.lines[].delivery_schedule[].<ENTRY>",
    "lines[].deliveryScheduleIncludingRequests[].<ENTRY>": (
        "order.lines[].delivery_schedule_including_requests[].<ENTRY>"
    ),
    "lines[].prices.<PRICES>": "order.lines[].prices.<PRICES>",
    "lines[].pricesIncludingRequests.<PRICES>": "order.lines[].prices_including_requests.<PRICES>",
    "lines[].statusLine.scheduledDelivery.<ENTRY>": "order.lines[].delivery_schedule[].<ENTRY>",
    "lines[].statusLine.scheduledDeliveryInclRequests.<ENTRY>": (
        "order.lines[].delivery_schedule_including_requests[].<ENTRY>"
    ),
    "lines[].statusLine.prices.<PRICES>": "order.lines[].prices.<PRICES>",
    "lines[].statusLine.pricesInclRequests.<PRICES>": (
        "order.lines[].prices_including_requests.<PRICES>"
    ),
    "lines[].confirmedLine.<VALUES>": "order.lines[].confirmed.<VALUES>",
    "lines[].mergedItemDetails.countryOfOriginCodeIso2": "order.lines[].item_details.country_of_origin",
    "lines[].mergedItemDetails.combinedNomenclatureCode": (
        "order.lines[].item_details.combined_nomenclature_code"
    ),
    "lines[].mergedItemDetails.netWeight": "order.lines[].item_details.net_weight",
    "lines[].mergedItemDetails.netWeightUnitOfMeasureIso": (
        "order.lines[].item_details.net_weight_unit_of_measure"
    ),
    "lines[].mergedItemDetails.dangerousGoodsCodeUnece": (
        "order.lines[].item_details.dangerous_goods_code"
    ),
    "lines[].mergedItemDetails.serialNumber": "order.lines[].item_details.serial_number",
    "lines[].mergedItemDetails.batchNumber": "order.lines[].item_details.batch_number",
    "lines[].buyerLine.position": "order.lines[].position",
    "lines[].buyerLine.originalPosition": "order.lines[].original_position",
    "lines[].buyerLine.description": "order.lines[].description",
    "lines[].buyerLine.item.number": "order.lines[].item.number",
    "lines[].buyerLine.item.revision": "order.lines[].item.revision",
    "lines[].buyerLine.item.name": "order.lines[].item.name",
    "lines[].buyerLine.item.description": "order.lines[].item.description",
    "lines[].buyerLine.item.supplierItemNumber": "order.lines[].item.supplier_item_number",
    "lines[].buyerLine.item.purchaseUnitOfMeasureIso": "order.lines[].item.purchase_unit_of_measure",
    # the buyer's issued values (order.lines[].charge_lines repeats the issued charge lines)
    "lines[].buyerLine.<VALUES>": "order.lines[].issued.<VALUES>",
    "lines[].buyerLine.requests.*.<REQUEST>": "order.lines[].requests[].<REQUEST>",
    "lines[].buyerLine.deliveryHistory[].<ENTRY>": "order.lines[].delivery_history[].<ENTRY>",
    "lines[].buyerLine.terms.contractNumber": "order.lines[].terms.contract_number",
    "lines[].buyerLine.terms.contractPosition": "order.lines[].terms.contract_position",
    "lines[].buyerLine.projectNumber": "order.lines[].project_number",
    "lines[].buyerLine.productionNumber": "order.lines[].production_number",
    "lines[].buyerLine.indicators.*": "order.lines[].indicators.*",
    "lines[].buyerLine.documents[].<DOCUMENT>": "order.lines[].documents[].<DOCUMENT>",
    "lines[].buyerLine.<TEXTS>": "order.lines[].buyer.<TEXTS>",
    "lines[].supplierLine.salesOrderNumber": "order.lines[].sales_order_number",
    "lines[].supplierLine.salesOrderPosition": "order.lines[].sales_order_position",
    "lines[].supplierLine.description": "order.lines[].supplier.description",
    "lines[].supplierLine.requests.*.<REQUEST>": "order.lines[].requests[].<REQUEST>",
    "lines[].supplierLine.documents[].<DOCUMENT>": "order.lines[].documents[].<DOCUMENT>",
    "lines[].supplierLine.<TEXTS>": "order.lines[].supplier.<TEXTS>",
    # --- shipments
    "transportMode": "shipment.transport_mode",
    "identifiers.*": "shipment.identifiers.*",
    "status.processStatusReason": "shipment.process_status_reason",
    "meta.lastUpdatedAt": "last_updated_at",
    "meta.despatchAdviceErpIssueDateTime": "shipment.despatch_advice_issued_at",
    "meta.supplierErpMeta.**": "shipment.supplier_erp_meta.**",
    "supplierShipment.companyId": "shipment.supplier.company_id",
    "supplierShipment.buyerAccountNumber": "shipment.buyer.account_number",
    "supplierShipment.shipmentNumber": "shipment.shipment_number",
    "supplierShipment.despatchAdviceNumber": "shipment.despatch_advice_number",
    "supplierShipment.invoiceNumbers[]": "shipment.invoice_numbers[]",
    "supplierShipment.supplierParty.<ADDRESS>": "shipment.supplier.party.<ADDRESS>",
    "supplierShipment.contacts[].<CONTACT>": "shipment.supplier.contacts[].<CONTACT>",
    "supplierShipment.documents[].<DOCUMENT>": "shipment.documents[].<DOCUMENT>",
    "buyerShipment.companyId": "shipment.buyer.company_id",
    "buyerShipment.supplierAccountNumber": "shipment.supplier.account_number",
    "buyerShipment.buyerParty.<ADDRESS>": "shipment.buyer.party.<ADDRESS>",
    "buyerShipment.contacts[].<CONTACT>": "shipment.buyer.contacts[].<CONTACT>",
    "buyerShipment.documents[].<DOCUMENT>": "shipment.documents[].<DOCUMENT>",
    "buyerShipment.purchaseOrderTerms.<TRADE_TERMS>": "shipment.purchase_order_terms.<TRADE_TERMS>",
    "loadCarriers[].containerNumber": "shipment.load_carriers[].container_number",
    "loadCarriers[].containerSizeAndType": "shipment.load_carriers[].container_size_and_type",
    "loadCarriers[].packageSSCC": "shipment.load_carriers[].package_sscc",
    "loadCarriers[].packageType": "shipment.load_carriers[].package_type",
    "loadCarriers[].lines[].<SHIPMENT_LINE>": "shipment.lines[].<SHIPMENT_LINE>",
    "lines[].<SHIPMENT_LINE>": "shipment.lines[].<SHIPMENT_LINE>",
    "locations.departure.<STOP>": "shipment.locations[].<STOP>",
    "locations.destinations[].<STOP>": "shipment.locations[].<STOP>",
    # --- Apicbase purchase orders (webhook and API copies)
    "apicbase:id": "document_id",
    "apicbase:order_number": "order.purchase_order_number",
    "apicbase:status": "process_status",  # through apicbase.STATUS_MAP: see TRANSLATED
    "apicbase:ordered_on": "order.ordered_on",
    "apicbase:owned_by.username": "order.buyer.contact",
    "apicbase:order_remarks": "order.remarks",
    "apicbase:expected_delivery_date": "order.expected_delivery_date",
    "apicbase:theoretical_price": "order.total_amount",
    "apicbase:supplier_customer_number": "order.buyer.account_number",
    "apicbase:packages[].stock_item.name": "order.lines[].item.name",
    "apicbase:packages[].supplier_package.supplier_article_number": "order.lines[].item.number",
    "apicbase:packages[].supplier_package.theoretical_price_per_package": (
        "order.lines[].prices.net.transaction.value"
    ),
    "apicbase:packages[].quantity_ordered": "order.lines[].delivery_schedule[].quantity",
    "apicbase:packages[].total_theoretical_price": "order.lines[].total_amount",
}

TRANSLATED: Final = frozenset({"apicbase:status"})
"""Mapped through a table, not carried verbatim (``ORDERED`` → ``Issued``/``Open``): the
normalized field must exist, its value is not compared."""

RAW_ONLY: Final = frozenset(
    {
        # --- message meta: who and when of the message, not document state
        "meta.createdDateTime",  # when Tradecloud created the message, not a document change
        "meta.source.userId",  # the user who started the flow (nullable)
        "meta.source.companyId",  # the company that started the flow; no echo rule (api-facts §4)
        "meta.source.origin",  # undocumented origin of the flow (portal, api…)
        # --- order fields the normalizer does not normalize
        "lines[].portalUrl",  # a link into the Tradecloud portal, presentation only
        "lines[].predictions.deliveryDate",  # undocumented (SDK export filter); a forecast
        # our fixture's stand-in for an unannounced upstream field (it must stay in raw)
        "buyerOrder.futureHeaderField.addedBy",
        "buyerOrder.futureHeaderField.without",
        # --- Apicbase list endpoint: the supplier's bookkeeping flags (api-facts §5.4)
        "apicbase:fetched_by_supplier",
        "apicbase:fetched_by_supplier_at",
        "apicbase:viewed_by_supplier",
        "apicbase:viewed_by_supplier_at",
    }
)

POLL_PAGE: Final = frozenset({"data", "total", "lastUpdatedAt"})
"""A poll page's own fields: paging and the cursor, read by the poller; each ``data``
item is the document (and its ``raw``)."""

ORDER_DOCUMENTS_EVENT: Final[dict[str, str | None]] = {
    # An order-documents event normalizes to an order without lines: what its lines
    # carry lands in order.documents[] (DocumentRef.line_position), or nowhere.
    "order.lines[].documents[]": "order.documents[]",
    "order.lines[].position": "order.documents[].line_position",
    # the line id: the only link to a split line, whose position is empty
    "order.lines[].line_id": "order.documents[].line_id",
}

SAMPLES_ONLY: Final[frozenset[str]] = frozenset()
"""Table entries only ../shared/samples exercise: without the samples they only warn."""

NOT_DOCUMENTS: Final = {"apicbase/signatures.json": "HMAC test vectors, not a payload"}

# ------------------------------------------------------------------ the inputs

Form = Literal[
    "order_webhook", "shipment_webhook", "order", "shipment", "apicbase_webhook", "apicbase_api"
]


@dataclass(frozen=True)
class Document:
    origin: str
    """Where it came from, for failure messages."""
    form: Form
    raw: Any
    sample: bool = False
    """From ../shared/samples (absent on some machines)."""


def _form(document: Any) -> Form | None:
    """What a received document is, by its shape (None: not one we know)."""
    if not isinstance(document, dict):
        return None
    if any(document.get(name) is not None for name in tradecloud.ORDER_EVENT_FIELDS):
        return "order_webhook"
    if any(document.get(name) is not None for name in tradecloud.SHIPMENT_EVENT_FIELDS):
        return "shipment_webhook"
    if "packages" in document:
        return "apicbase_webhook"
    if "supplierShipment" in document or "buyerShipment" in document:
        return "shipment"
    if "lines" in document:
        return "order"
    return None


def _files(folder: Path, root: Path, *, sample: bool) -> Iterator[Document]:
    for file in sorted(folder.rglob("*.json")):
        name = str(file.relative_to(root))
        if name in NOT_DOCUMENTS:
            continue
        label = f"{'sample' if sample else 'fixture'} {name}"
        content = loads_exact(file.read_bytes())
        page = isinstance(content, dict) and isinstance(content.get("data"), list)
        if page:
            extra = set(content) - POLL_PAGE
            assert not extra, f"{label}: poll page fields {sorted(extra)} are not in POLL_PAGE"
        for i, item in enumerate(content["data"] if page else [content]):
            where = f"{label} data[{i}]" if page else label
            form = _form(item)
            assert form is not None, f"{where}: not a document we know (add to NOT_DOCUMENTS?)"
            yield Document(where, form, item, sample)


def _fixture_documents() -> Iterator[Document]:
    for source in ("tradecloud", "apicbase"):
        yield from _files(FIXTURES / source, FIXTURES, sample=False)


def _sample_documents() -> Iterator[Document]:
    if CONSTRUCTED.is_dir():
        yield from _files(CONSTRUCTED, SAMPLES, sample=True)


def _received(document: Any) -> Any:
    """As it arrives: JSON bytes decoded with exact decimals."""
    return loads_exact(dumps_exact(document))


def _tradecloud_documents(seed: int) -> Iterator[Document]:
    world = World(seed=seed, documented=True)
    world.generate(SIMULATED_ORDERS)
    for order_id in list(world.orders):
        for _ in range(STEPS):
            if world.advance(order_id) is None:
                break
    where = f"simulator World(seed={seed}, documented=True)"
    for order in world.orders.values():
        yield Document(
            f"{where} order {order.number}", "order", _received(world.order_document(order))
        )
        single = world.order_document(order, single_delivery=True)
        yield Document(
            f"{where} order {order.number} (single delivery)", "order", _received(single)
        )
    # Every webhook a change can send, in turn: both flavours, meta beside or inside the event.
    options: list[dict[str, Any]] = [
        {},
        {"single_delivery": True, "meta": "inside"},
        {"meta": "both"},
        {"single_delivery": True, "legacy": True},
    ]
    for i, change in enumerate(world.changes):
        if change.get_only:  # only a legacy GET webhook announces it: there is no body
            continue
        option = options[i % len(options)] if change.kind != "shipment" else {}
        body = world.webhook_body(change, **option)
        form: Form = "shipment_webhook" if change.kind == "shipment" else "order_webhook"
        label = f"{where} change #{i} {change.event_name} ({change.kind} {change.document_id})"
        yield Document(label, form, _received(body))
    for shipment in world.shipments.values():
        yield Document(
            f"{where} shipment {shipment.number}",
            "shipment",
            _received(world.shipment_document(shipment)),
        )


def _apicbase_documents(seed: int) -> Iterator[Document]:
    book = OrderBook(generator=OrderGenerator(seed), documented=True)
    where = f"simulator OrderBook(seed={seed}, documented=True)"
    for order in book.generate_history(SIMULATED_APICBASE_ORDERS):
        yield Document(
            f"{where} {order.order_number} webhook", "apicbase_webhook", _received(order.document())
        )
        yield Document(
            f"{where} {order.order_number} API", "apicbase_api", _received(order.api_json())
        )


def _documents() -> Iterator[Document]:
    yield from _fixture_documents()
    yield from _sample_documents()
    yield from _tradecloud_documents(seed=7)
    yield from _apicbase_documents(seed=3)


# ------------------------------------------------------------------ the walk

EVENT_FIELDS: Final = (*tradecloud.ORDER_EVENT_FIELDS, *tradecloud.SHIPMENT_EVENT_FIELDS)


def _normalize(document: Document) -> CanonicalEvent:
    raw, at = document.raw, RECEIVED
    match document.form:
        case "order_webhook":
            return tradecloud.normalize_order_webhook(raw, received_at=at)
        case "shipment_webhook":
            return tradecloud.normalize_shipment_webhook(raw, received_at=at)
        case "order":
            return tradecloud.normalize_polled_order(raw, received_at=at)
        case "shipment":
            return tradecloud.normalize_polled_shipment(raw, received_at=at)
        case "apicbase_webhook":
            return apicbase.normalize_purchase_order(raw, received_at=at, channel="webhook")
        case "apicbase_api":
            return apicbase.normalize_purchase_order(raw, received_at=at, channel="api")


def _leaves(document: Document) -> Iterator[Leaf]:
    """The document's leaves in the shared vocabulary: a webhook event's fields at the
    root beside the body's ``eventName`` and ``meta``, ``orderId`` as ``id``, and
    Apicbase paths under ``apicbase:``."""
    if document.form.startswith("apicbase"):
        for leaf in leaves(document.raw):
            yield leaf._replace(path=f"apicbase:{leaf.path}")
        return
    for key, value in document.raw.items():
        if key in EVENT_FIELDS and isinstance(value, dict):
            for inner_key, inner in value.items():
                yield from leaves(inner, "id" if inner_key == "orderId" else inner_key)
        else:
            yield from leaves(value, key)


def _empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _in_documents_event(target: str) -> str | None:
    for prefix, replacement in ORDER_DOCUMENTS_EVENT.items():
        if target == prefix or target.startswith((f"{prefix}.", f"{prefix}[")):
            return None if replacement is None else replacement + target[len(prefix) :]
    return target


def _mismatch(
    leaf: Leaf, mapped: Resolved, kind: str, found: dict[str, set[Any]]
) -> tuple[str, str] | None:
    """Why the leaf is not where MAPPED says it lands, and what is there (None: it is)."""
    if _empty(leaf.value):  # nothing to carry (an empty position reads as absent)
        return None
    assert mapped.target is not None
    target = fill(mapped.target, leaf.keys)
    if kind == "order_documents":
        moved = _in_documents_event(target)
        if moved is None:
            return None
        target = moved
    values = found.get(target)
    if values is None:
        return "no such field in the event", ""
    if isinstance(leaf.value, bool) or leaf.path in TRANSLATED or carried(leaf.value, values):
        return None
    return "not the value there", "there: " + ", ".join(sorted(map(repr, values))[:3])


@dataclass
class Finding:
    origin: str
    value: Any
    detail: str = ""
    count: int = 0


@dataclass
class Coverage:
    """What the inputs show of the tables: unmapped leaves, wrong entries, entries used."""

    mapped: Table = field(default_factory=lambda: Table(MAPPED, GROUPS))
    raw_only: Table = field(default_factory=lambda: Table(dict.fromkeys(RAW_ONLY), GROUPS))
    inputs: Counter[str] = field(default_factory=Counter)
    refused: list[str] = field(default_factory=list)
    unmapped: dict[str, Finding] = field(default_factory=dict)
    mismatched: dict[str, Finding] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)
    """Table entries and group members our own inputs (fixtures, simulators) exercise."""
    used_by_samples: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        # A known object or array may arrive empty or null; an empty array exercises
        # the entry for its items (``buyerShipment.documents: []``).
        self.containers = self.mapped.containers() | self.raw_only.containers()
        self.arrays = {
            pattern[: pattern.find("[].<")]: pattern
            for pattern in self.mapped.entries
            if "[].<" in pattern
        }

    def entries(self) -> set[str]:
        return self.mapped.members() | self.raw_only.members()

    def check(self, document: Document) -> None:
        self.inputs[document.origin.split(" ", 1)[0]] += 1
        try:
            event = _normalize(document)
        except Exception as exc:  # InvalidPayload, or a normalizer bug: both fail the test
            self.refused.append(f"{document.origin}: {exc!r}")
            return
        used = self.used_by_samples if document.sample else self.used
        found = index(event)
        for leaf in _leaves(document):
            mapped = self.mapped.resolve(leaf.path)
            if mapped is not None:
                used.update(mapped.entries)
                problem = _mismatch(leaf, mapped, event.kind, found)
                if problem is not None:
                    key = f"{leaf.path} → {mapped.target}: {problem[0]}"
                    self._note(self.mismatched, key, document, leaf.value, problem[1])
                continue
            raw_only = self.raw_only.resolve(leaf.path)
            if raw_only is not None:
                used.add(raw_only.entries[0])  # group members count where MAPPED verifies them
            elif not (_empty(leaf.value) and leaf.path in self.containers):
                self._note(self.unmapped, leaf.path, document, leaf.value)
            elif leaf.value == [] and leaf.path in self.arrays:
                used.add(self.arrays[leaf.path])

    @staticmethod
    def _note(
        findings: dict[str, Finding], key: str, document: Document, value: Any, detail: str = ""
    ) -> None:
        findings.setdefault(key, Finding(document.origin, value, detail)).count += 1


@cache
def _coverage() -> Coverage:
    coverage = Coverage()
    for document in _documents():
        coverage.check(document)
    return coverage


def _listing(findings: dict[str, Finding]) -> str:
    return "\n".join(
        f"  {key}\n      e.g. {finding.value!r} in {finding.origin}"
        + (f" ({finding.detail})" if finding.detail else "")
        + f"; {finding.count} leaves"
        for key, finding in sorted(findings.items())
    )


# ------------------------------------------------------------------ the tests


def test_the_tables_are_consistent() -> None:
    assert not set(MAPPED) & RAW_ONLY
    assert set(MAPPED) >= TRANSLATED
    assert Coverage().entries() >= SAMPLES_ONLY
    for pattern, target in MAPPED.items():  # a group on one side needs it on the other
        assert target is not None and pattern.endswith(">") == target.endswith(">"), pattern


def test_every_input_is_normalized() -> None:
    coverage = _coverage()
    assert not coverage.refused, "normalizers refused:\n" + "\n".join(coverage.refused)
    assert coverage.inputs["fixture"] >= 12
    assert coverage.inputs["simulator"] >= 2 * SIMULATED_ORDERS


def test_every_upstream_leaf_is_mapped_or_raw_only() -> None:
    unmapped = _coverage().unmapped
    assert not unmapped, (
        f"{len(unmapped)} upstream field(s) land in no normalized field and are not on "
        "RAW_ONLY: map them in MAPPED, or list them on RAW_ONLY with a reason\n"
        + _listing(unmapped)
    )


def test_mapped_values_land_where_the_table_says() -> None:
    mismatched = _coverage().mismatched
    assert not mismatched, (
        f"{len(mismatched)} MAPPED entries do not hold: fix the table (or the normalizer)\n"
        + _listing(mismatched)
    )


def test_every_table_entry_is_exercised() -> None:
    coverage = _coverage()
    entries = coverage.entries()
    unused = entries - coverage.used - coverage.used_by_samples
    if CONSTRUCTED.is_dir():
        only_samples = entries & coverage.used_by_samples - coverage.used - SAMPLES_ONLY
        assert not only_samples, (
            f"only the samples exercise these, list them on SAMPLES_ONLY: {sorted(only_samples)}"
        )
    elif waiting := unused & SAMPLES_ONLY:
        warnings.warn(
            f"{CONSTRUCTED} is absent: {len(waiting)} table entries go unchecked: {sorted(waiting)}",
            stacklevel=1,
        )
        unused -= waiting
    assert not unused, (
        f"{len(unused)} table entries match no leaf of any input (stale: remove them, or "
        "add an input that has the field):\n  " + "\n  ".join(sorted(unused))
    )


@pytest.mark.skipif(
    not CONSTRUCTED.is_dir(),
    reason=f"steering-kit samples not found at {CONSTRUCTED}; fixtures and simulators still run",
)
def test_the_samples_are_walked() -> None:
    assert _coverage().inputs["sample"] >= 5


def test_a_new_upstream_field_fails() -> None:
    document = next(d for d in _fixture_documents() if d.origin.endswith("get-order.json"))
    document.raw["lines"][0]["buyerLine"]["newUpstreamField"] = {"code": "X-1"}
    coverage = Coverage()
    coverage.check(document)
    assert set(coverage.unmapped) == {"lines[].buyerLine.newUpstreamField.code"}


def test_a_wrong_mapping_fails() -> None:
    document = next(d for d in _fixture_documents() if d.origin.endswith("get-order.json"))
    wrong = {**MAPPED, "lines[].buyerLine.item.number": "order.lines[].item.name"}
    coverage = Coverage(mapped=Table(wrong, GROUPS))
    coverage.check(document)
    assert set(coverage.mismatched) == {
        "lines[].buyerLine.item.number → order.lines[].item.name: not the value there"
    }
