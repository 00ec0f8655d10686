"""The canonical event (schema version 1): one JSON shape for every consumer.

Design choices a consumer can rely on:

* snake_case keys; money and quantities are JSON *strings* holding exact
  decimals (``"1234.5678901234567890"``), never floats;
* every timestamp keeps the upstream text verbatim next to its parsed UTC
  instant (``utc`` is null when the text carries no zone: Tradecloud sends
  local date-times and plain dates too);
* statuses are open-ended strings: Tradecloud adds enum values without notice,
  so an unknown value is carried through, never rejected;
* ``raw`` holds the original document with its numbers as exact JSON numbers;
* unknown keys are ignored when an event is decoded (``extra="ignore"``), so a
  newer producer's additional fields never break an older consumer; forward
  the original message bytes (as DLQ replay does) to pass them on intact.

Leaf values (timestamps, money, prices, schedule entries, items, documents,
locations) are TypedDicts, not models: a 100-line order would otherwise build
some 2,500 model instances, which cost four times the rest of normalization.

The JSON Schema generated from these models is committed beside this module
(``canonical-event.schema.json``); non-Python consumers read that file.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema
from typing_extensions import TypedDict

SCHEMA_VERSION: Literal[1] = 1

Source = Literal["tradecloud", "apicbase"]
Channel = Literal["webhook", "poll", "api"]
Kind = Literal["order", "order_documents", "shipment"]
TimestampKind = Literal["instant", "local", "date", "unparsed"]
Role = Literal["buyer", "supplier"]
EchoPolicy = Literal["own-open-requests", "all-in-progress", "off"]


def fixed_point(value: Decimal) -> str:
    """A decimal as fixed-point text, never exponent notation (``1E-7`` → ``0.0000001``)."""
    return format(value, "f")


ExactDecimal = Annotated[
    Decimal,
    PlainSerializer(fixed_point, return_type=str, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^-?\d+(\.\d+)?$",
            "description": "An exact decimal in fixed-point notation, e.g. 1234.5678901234567890.",
        },
        mode="serialization",
    ),
]
"""A money amount or quantity: exact, and written as fixed-point text (never 1E-7)."""


class _Model(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="ignore", json_schema_serialization_defaults_required=True
    )


class Timestamp(TypedDict):
    """An upstream timestamp: the original text and, for instants, its UTC value."""

    text: Annotated[str, Field(description="The upstream text, verbatim.")]
    kind: Annotated[
        TimestampKind,
        Field(
            description="instant: carries Z or an offset; local: date-time without zone; "
            "date: plain YYYY-MM-DD; unparsed: not ISO 8601, kept as text only."
        ),
    ]
    utc: Annotated[
        datetime | None, Field(description="The instant in UTC; null unless kind is 'instant'.")
    ]


class Money(TypedDict):
    value: ExactDecimal
    currency: str | None


class Price(TypedDict):
    """One price in transaction and (optionally) base currency."""

    transaction: Money | None
    base: Money | None


class Prices(TypedDict):
    gross: Price | None
    net: Price | None
    discount_percentage: ExactDecimal | None
    unit_of_measure: str | None
    unit_quantity: ExactDecimal | None


class _ScheduleEntryV10(TypedDict):
    """Delivery-line fields of schema version 1.0."""

    position: Annotated[
        str | None,
        Field(description="Delivery-line position; may be empty after a supplier split."),
    ]
    date: Timestamp | None
    quantity: ExactDecimal | None
    status: Annotated[str | None, Field(description="Delivery-line logistics status.")]
    etd: Timestamp | None
    eta: Timestamp | None


class ScheduleEntry(_ScheduleEntryV10, total=False):
    """One delivery line of a line's delivery schedule.

    Keys added within schema version 1 are optional (``total=False``): events
    written before them lack them. Every producer of this release writes them.
    """

    transport_mode: str | None


class _ItemV10(TypedDict):
    number: str | None
    revision: str | None
    name: str | None
    supplier_item_number: str | None
    purchase_unit_of_measure: str | None


class Item(_ItemV10, total=False):
    """An item; the keys after ``purchase_unit_of_measure`` came within schema version 1."""

    description: str | None
    supplier_item_name: str | None
    supplier_item_revision: str | None


class _DocumentRefV10(TypedDict):
    owner: Literal["buyer", "supplier"] | None
    line_position: str | None
    object_id: str | None
    url: str | None
    name: str | None
    description: str | None
    type: str | None
    code: str | None
    revision: str | None


class DocumentRef(_DocumentRefV10, total=False):
    """Metadata of an attached document; the content is fetched separately."""

    line_id: Annotated[
        str | None,
        Field(
            description="Tradecloud id of the line it is attached to (a split line has no "
            "position)."
        ),
    ]


class Property(TypedDict):
    """A key/value custom field (``properties``)."""

    key: str | None
    value: str | None


class ChargeLine(TypedDict):
    """An additional cost of an order line (transport, packing…), independent of its prices."""

    position: str | None
    charge_type_code: Annotated[str | None, Field(description="UNCL7161 charge reason code.")]
    description: str | None
    quantity: ExactDecimal | None
    price: Price | None
    unit_of_measure: Annotated[str | None, Field(description="priceUnitOfMeasureIso.")]
    unit_quantity: Annotated[ExactDecimal | None, Field(description="priceUnitQuantity.")]


class LineValues(TypedDict):
    """A delivery schedule with prices and charge lines: agreed, or asked for by a request."""

    delivery_schedule: list[ScheduleEntry] | None
    prices: Prices | None
    charge_lines: list[ChargeLine] | None


class Request(TypedDict):
    """A request on a line: a supplier proposal, a reopen request of either side (open-ended)."""

    side: Annotated[str, Field(description="buyer or supplier: who asks.")]
    kind: Annotated[
        str,
        Field(description="proposal, reopen_request, or another request the platform adds."),
    ]
    status: Annotated[
        str | None, Field(description="Open, Approved, Rejected, Closed (open-ended).")
    ]
    reason: str | None
    delivery_schedule: list[ScheduleEntry] | None
    prices: Prices | None
    charge_lines: list[ChargeLine] | None


class ItemDetails(TypedDict):
    """Item details as merged from the buyer's and the supplier's (``mergedItemDetails``)."""

    country_of_origin: str | None
    combined_nomenclature_code: str | None
    net_weight: ExactDecimal | None
    net_weight_unit_of_measure: str | None
    dangerous_goods_code: Annotated[str | None, Field(description="UNECE UN number.")]
    serial_number: str | None
    batch_number: str | None


class ContractTerms(TypedDict):
    contract_number: str | None
    contract_position: str | None


class TradeTerms(TypedDict):
    """Incoterms and payment terms of an order (or a shipment's purchase-order terms)."""

    incoterms_code: str | None
    incoterms: str | None
    payment_terms_code: str | None
    payment_terms: str | None


class Address(TypedDict):
    """A party or place with its identifiers and postal address."""

    id: str | None
    id_scheme: str | None
    location_type: str | None
    code: str | None
    names: list[str]
    address_lines: list[str]
    postal_code: str | None
    city: str | None
    country_code: str | None
    country_name: str | None


class Contact(TypedDict):
    user_id: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    phone_number: str | None
    position: str | None


class LineSide(_Model):
    """One side's custom fields and texts on a line (``buyerLine`` / ``supplierLine``)."""

    description: str | None = None
    properties: list[Property] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    custom_labels: list[str] = Field(default_factory=list)


class OrderLine(_Model):
    line_id: str | None = Field(default=None, description="Tradecloud line id.")
    position: str | None = Field(
        default=None,
        description="Buyer line position; null on a line the supplier just split off.",
    )
    original_position: str | None = None
    line_type: str | None = None
    description: str | None = None
    item: Item
    delivery_schedule: list[ScheduleEntry] = Field(
        default_factory=list, description="Issued or Confirmed values; excludes open requests."
    )
    delivery_schedule_including_requests: list[ScheduleEntry] | None = None
    prices: Prices | None = None
    prices_including_requests: Prices | None = None
    total_amount: ExactDecimal | None = None
    process_status: str | None = None
    in_progress_status: str | None = None
    logistics_status: str | None = None
    sales_order_number: str | None = None
    sales_order_position: str | None = None
    charge_reason_code: str | None = Field(
        default=None, description="UNCL7161 code of a Charge or Service line."
    )
    issued: LineValues | None = Field(
        default=None,
        description="The buyer's issued line (buyerLine schedule, prices, charge lines).",
    )
    charge_lines: list[ChargeLine] = Field(
        default_factory=list,
        description="The buyer's charge lines as issued (issued.charge_lines).",
    )
    requests: list[Request] = Field(
        default_factory=list,
        description="Requests on this line, both sides, open and answered (see Request.status).",
    )
    confirmed: LineValues | None = Field(
        default=None, description="The agreed line (confirmedLine); meaningful when Confirmed."
    )
    delivery_history: list[ScheduleEntry] = Field(default_factory=list)
    buyer: LineSide = Field(default_factory=LineSide, description="buyerLine custom fields.")
    supplier: LineSide = Field(
        default_factory=LineSide, description="supplierLine description and custom fields."
    )
    documents: list[DocumentRef] = Field(
        default_factory=list, description="Documents attached to this line, both sides."
    )
    item_details: ItemDetails | None = None
    terms: ContractTerms | None = None
    project_number: str | None = None
    production_number: str | None = None
    indicators: dict[str, bool | None] = Field(
        default_factory=dict, description="Line indicators (noDeliveryExpected, delivered…)."
    )
    event_dates: dict[str, Timestamp] = Field(
        default_factory=dict, description="Key line event dates; the keys are Tradecloud's."
    )
    last_updated_at: Timestamp | None = None
    changed: bool | None = Field(
        default=None,
        description="True when the channel says this line changed; null when it cannot tell.",
    )
    echo: bool = Field(
        default=False, description="Our own open request reflected back (see echo policy)."
    )


class Party(_Model):
    """A trading party as seen on the order."""

    company_id: str | None = None
    account_number: str | None = Field(
        default=None,
        description="This party's account number in the other party's ERP "
        "(buyer: supplierOrder.buyerAccountNumber / Apicbase supplier_customer_number; "
        "supplier: buyerOrder.supplierAccountNumber).",
    )
    description: str | None = None
    contact: str | None = Field(
        default=None, description="The contact as one string: email, else user id."
    )
    contact_details: Contact | None = Field(
        default=None, description="The whole contact (user id, email, names, phone)."
    )
    party: Address | None = Field(
        default=None, description="The party's address (buyerParty / supplierParty)."
    )
    contacts: list[Contact] = Field(default_factory=list, description="Shipment contacts.")
    properties: list[Property] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    custom_labels: list[str] = Field(default_factory=list)


class Order(_Model):
    """A normalized order (Tradecloud order or order response, Apicbase purchase order)."""

    purchase_order_number: str | None = None
    order_type: str | None = None
    description: str | None = None
    buyer: Party = Field(default_factory=Party)
    supplier: Party = Field(default_factory=Party)
    remarks: str | None = None
    ordered_on: Timestamp | None = None
    expected_delivery_date: Timestamp | None = None
    total_amount: ExactDecimal | None = None
    delivery_overdue: bool | None = None
    indicators: dict[str, bool | None] = Field(
        default_factory=dict, description="Order indicators besides deliveryOverdue (open-ended)."
    )
    terms: TradeTerms | None = None
    destination: Address | None = None
    accounting_party: Address | None = Field(
        default=None, description="buyerOrder.buyerAccountingParty."
    )
    event_dates: dict[str, Timestamp] = Field(
        default_factory=dict, description="Key order event dates; the keys are Tradecloud's."
    )
    custom_labels: list[str] = Field(
        default_factory=list, description="The order's own customLabels (header level)."
    )
    lines: list[OrderLine] = Field(default_factory=list)
    lines_complete: bool = Field(
        description="True when lines holds every line of the order (poll, GET, Apicbase); "
        "False for a webhook event, which carries only the lines it touched."
    )
    documents: list[DocumentRef] = Field(default_factory=list)


class ShipmentLine(_Model):
    purchase_order_number: str | None = None
    purchase_order_line_position: str | None = None
    delivery_schedule_position: str | None = None
    item: Item
    despatch_advice_number: str | None = None
    despatch_advice_line_position: str | None = None
    despatch_quantity: ExactDecimal | None = None
    backorder_quantity: ExactDecimal | None = None
    load_carrier: str | None = Field(
        default=None, description="Container number or package SSCC; null for loose lines."
    )
    backorder_date: Timestamp | None = None
    last_updated_at: Timestamp | None = None
    changed: bool | None = None


class _LocationV10(TypedDict):
    role: Annotated[str, Field(description="departure or destination")]
    location_type: str | None
    location_id: str | None
    id_scheme: str | None
    name: str | None
    city: str | None
    country_code: str | None
    etd: Timestamp | None
    eta: Timestamp | None


class Location(_LocationV10, total=False):
    """A departure or destination; the keys below came within schema version 1."""

    atd: Timestamp | None
    ata: Timestamp | None
    eta_start_time: str | None
    eta_end: Annotated[Timestamp | None, Field(description="etaEndDate.")]
    eta_end_time: str | None
    address: Address | None


class LoadCarrier(TypedDict):
    container_number: str | None
    container_size_and_type: str | None
    package_sscc: str | None
    package_type: str | None


class Shipment(_Model):
    shipment_number: str | None = None
    transport_mode: str | None = None
    supplier: Party = Field(default_factory=Party)
    buyer: Party = Field(default_factory=Party)
    identifiers: dict[str, str] = Field(default_factory=dict)
    invoice_numbers: list[str] = Field(default_factory=list)
    despatch_advice_number: str | None = None
    process_status: str | None = None
    process_status_reason: str | None = None
    purchase_order_terms: TradeTerms | None = None
    load_carriers: list[LoadCarrier] = Field(default_factory=list)
    supplier_erp_meta: Any = Field(
        default=None, description="meta.supplierErpMeta, as sent (numbers exact)."
    )
    despatch_advice_issued_at: Timestamp | None = Field(
        default=None, description="meta.despatchAdviceErpIssueDateTime."
    )
    locations: list[Location] = Field(default_factory=list)
    lines: list[ShipmentLine] = Field(default_factory=list)
    documents: list[DocumentRef] = Field(default_factory=list)


class EchoInfo(_Model):
    """Which lines reflect our own open requests back at us (api-facts §4)."""

    role: Role | None = None
    policy: EchoPolicy = "off"
    lines: list[str] = Field(
        default_factory=list, description="Line ids (or positions) classified as echo."
    )
    all_changed_lines_echo: bool = Field(
        default=False,
        description="True when at least one line changed and every changed line is an echo.",
    )


class AppliedParts(_Model):
    """What of an event a consumer route hands to its ERP adapter (null on the exchange)."""

    header: bool = Field(
        description="True when the header (everything but the lines) is news to the ERP; "
        "false when only lines apply (the header is then context, possibly older)."
    )
    lines: list[str] = Field(
        default_factory=list,
        description="Keys of the items included, all of them news: lines (line id, else "
        "position), or the attached documents of an order-documents event.",
    )


class CanonicalEvent(_Model):
    """What orderbridge publishes on ``orderbridge.events`` for every accepted document."""

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: str = Field(description="Deterministic UUID; also the AMQP message_id.")
    idempotency_key: str = Field(
        description="<source>:<kind>:<document_id>:v<version>, or :h<hash> without a version."
    )
    source: Source
    channel: Channel
    kind: Kind
    event_name: str | None = Field(
        default=None, description="Tradecloud eventName; null when the channel cannot tell."
    )
    document_id: str
    document_number: str | None = None
    version: int | None = None
    message_id: str | None = Field(default=None, description="Tradecloud meta.messageId.")
    trace_id: str | None = Field(default=None, description="Tradecloud meta.source.traceId.")
    process_status: str | None = None
    logistics_status: str | None = None
    last_updated_at: Timestamp | None = None
    received_at: datetime
    echo: EchoInfo = Field(default_factory=EchoInfo)
    order: Order | None = None
    shipment: Shipment | None = None
    applied: AppliedParts | None = Field(
        default=None,
        description="Null on the exchange. In what a consumer route hands to an ERP adapter "
        "(a file, an HTTP body): which parts apply, when not all of them do.",
    )
    raw: Any = Field(description="The original document, numbers exact.")
