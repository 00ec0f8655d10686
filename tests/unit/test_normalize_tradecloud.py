from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.errors import InvalidPayload
from shared.normalize import tradecloud
from tests.support.files import fixture

NOW = datetime(2026, 2, 10, 8, 15, 31, tzinfo=UTC)


def test_order_webhook_delta_keeps_identity_lines_and_exact_decimals() -> None:
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-webhook-proposal.json"), received_at=NOW
    )
    assert (event.source, event.channel, event.kind) == ("tradecloud", "webhook", "order")
    assert event.event_name == "OrderChangesProposedBySupplier"
    assert event.document_id == "b7e2c1d0-4f3a-4e8b-9c1d-2a3b4c5d6e7f"
    assert event.document_number == "4500012345"
    assert event.version == 7
    assert event.idempotency_key == "tradecloud:order:b7e2c1d0-4f3a-4e8b-9c1d-2a3b4c5d6e7f:v7"
    assert event.message_id == "0d1e2f3a-4b5c-4d6e-8f70-8192a3b4c5d6"  # top-level meta
    assert event.trace_id == "7f6e5d4c-3b2a-4190-8a7b-6c5d4e3f2a1b"
    assert (event.process_status, event.logistics_status) == ("InProgress", "Open")
    assert event.received_at == NOW
    order = event.order
    assert order is not None and order.lines_complete is False
    assert order.buyer.account_number == "CUST-4711"
    assert order.supplier.account_number == "SUP-0815"
    assert order.buyer.contact == "buyer@example.test"
    first, charge = order.lines
    assert first.position == "0010" and first.changed is True
    assert first.in_progress_status == "OpenSupplierProposal"
    assert first.delivery_schedule[0]["quantity"] == Decimal("1234.5678901234567890")
    assert str(first.delivery_schedule[0]["quantity"]) == "1234.5678901234567890"
    assert first.delivery_schedule[0]["date"] == {"text": "2026-03-01", "kind": "date", "utc": None}
    # The plain schedule holds confirmed values; the proposal shows only *IncludingRequests.
    assert first.delivery_schedule_including_requests is not None
    requested_date = first.delivery_schedule_including_requests[0]["date"]
    assert requested_date is not None
    assert requested_date["text"] == "2026-03-20"
    assert first.prices is not None and first.prices_including_requests is not None
    net = first.prices["net"]
    assert net is not None and net["transaction"] == {"value": Decimal("78.90"), "currency": "EUR"}
    assert str(net["transaction"]["value"]) == "78.90"
    assert first.prices_including_requests["net"]["transaction"]["value"] == Decimal("81.15")  # type: ignore[index]
    assert first.last_updated_at is not None
    assert first.last_updated_at["utc"] == datetime(2026, 2, 10, 8, 15, 30, 125000, UTC)
    assert charge.line_type == "Charge" and charge.item["number"] == ""
    # The raw document survives untouched, unknown fields included.
    assert event.raw["orderEvent"]["buyerOrder"]["futureHeaderField"] == {
        "addedBy": "tradecloud",
        "without": "notice",
    }


def test_legacy_single_delivery_name_meta_inside_event_and_split_line() -> None:
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/single-delivery-webhook-legacy.json"), received_at=NOW
    )
    assert event.message_id == "11112222-3333-4444-8555-666677778888"
    assert event.version == 12
    line = event.order.lines[0]  # type: ignore[union-attr]
    assert line.position is None, "an empty buyerLine.position marks a supplier split"
    assert line.original_position == "0030"
    assert line.delivery_schedule == [
        {
            "position": None,
            "date": {"text": "2026-04-15", "kind": "date", "utc": None},
            "quantity": Decimal(40),
            "status": "Open",
            "etd": {"text": "2026-04-13", "kind": "date", "utc": None},
            "eta": {"text": "2026-04-15", "kind": "date", "utc": None},
            "transport_mode": None,
        }
    ]
    assert line.prices is not None
    assert line.prices["net"]["base"] == {"value": Decimal("15.9620"), "currency": "EUR"}  # type: ignore[index]


def test_current_single_delivery_name_is_the_same_document() -> None:
    body = fixture("tradecloud/single-delivery-webhook-legacy.json")
    current = {"eventName": body["eventName"], "singleDeliveryOrderEvent": body["simpleOrderEvent"]}
    legacy_event = tradecloud.normalize_order_webhook(body, received_at=NOW)
    current_event = tradecloud.normalize_order_webhook(current, received_at=NOW)
    assert current_event.order == legacy_event.order
    assert current_event.idempotency_key == legacy_event.idempotency_key


def test_order_documents_event() -> None:
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-documents-webhook.json"), received_at=NOW
    )
    assert event.kind == "order_documents"
    assert event.idempotency_key.startswith("tradecloud:order_documents:b7e2c1d0")
    docs = event.order.documents  # type: ignore[union-attr]
    assert [(d["owner"], d["line_position"], d["name"]) for d in docs] == [
        ("supplier", None, "Order confirmation SO-77.pdf"),
        ("supplier", "0010", "Material certificate 3.1.pdf"),
    ]
    assert docs[0]["object_id"] == "3c2b1a09-8f7e-4d6c-9b5a-4f3e2d1c0b9a"


def test_polled_orders_mark_changed_lines_and_echoes() -> None:
    page = fixture("tradecloud/poll-orders-page.json")
    since = "2026-02-20T00:00:00.000Z"
    events = [
        tradecloud.normalize_polled_order(
            order, received_at=NOW, since=since, role="buyer", echo_policy="own-open-requests"
        )
        for order in page["data"]
    ]
    confirmed, negotiating, legacy = events
    assert confirmed.channel == "poll" and confirmed.event_name is None
    assert [line.changed for line in confirmed.order.lines] == [True, False]  # type: ignore[union-attr]
    assert confirmed.order.lines_complete is True  # type: ignore[union-attr]
    assert confirmed.echo.all_changed_lines_echo is False
    # Buyer role: our own reopen request is an echo, the supplier's proposal is not.
    assert [line.echo for line in negotiating.order.lines] == [True, False]  # type: ignore[union-attr]
    assert negotiating.echo.lines == ["p2-l1"]
    assert negotiating.echo.all_changed_lines_echo is False
    assert negotiating.message_id == "44445555-6666-4777-8888-9999aaaabbbb"
    # Versionless legacy order: content-hash key; unknown enums pass through.
    assert legacy.version is None
    assert legacy.idempotency_key.startswith("tradecloud:order:legacy-v1-order-77:h")
    assert legacy.process_status == "Disputed"
    assert legacy.logistics_status == "PartiallyInTransit"
    assert legacy.document_number == "LEGACY-77"
    assert legacy.raw["lines"][0]["predictions"] == {"deliveryDate": "2026-01-07"}


def test_all_in_progress_policy_and_supplier_role() -> None:
    order = fixture("tradecloud/poll-orders-page.json")["data"][1]
    supplier = tradecloud.normalize_polled_order(
        order, received_at=NOW, role="supplier", echo_policy="own-open-requests"
    )
    assert [line.echo for line in supplier.order.lines] == [False, True]  # type: ignore[union-attr]
    everything = tradecloud.normalize_polled_order(
        order, received_at=NOW, role="supplier", echo_policy="all-in-progress"
    )
    assert everything.echo.all_changed_lines_echo is True
    off = tradecloud.normalize_polled_order(order, received_at=NOW, role="supplier")
    assert off.echo.lines == [] and off.echo.policy == "off"


def test_without_a_cursor_changed_is_unknown() -> None:
    order = fixture("tradecloud/poll-orders-page.json")["data"][0]
    event = tradecloud.normalize_polled_order(order, received_at=NOW)
    assert [line.changed for line in event.order.lines] == [None, None]  # type: ignore[union-attr]


def test_get_order_is_a_whole_document_on_the_webhook_channel() -> None:
    event = tradecloud.normalize_fetched_order(
        fixture("tradecloud/get-order.json"), received_at=NOW
    )
    assert (event.channel, event.event_name, event.version) == ("webhook", None, 11)
    assert event.order is not None and event.order.lines_complete is True
    assert len(event.order.lines) == 2


def test_webhook_and_poll_of_one_version_share_the_key_not_the_event_id() -> None:
    fetched = fixture("tradecloud/get-order.json")
    by_get = tradecloud.normalize_fetched_order(fetched, received_at=NOW)
    by_poll = tradecloud.normalize_polled_order(fetched, received_at=NOW)
    assert by_get.idempotency_key == by_poll.idempotency_key
    assert by_get.event_id != by_poll.event_id
    again = tradecloud.normalize_fetched_order(fetched, received_at=datetime.now(UTC))
    assert again.event_id == by_get.event_id, "event ids are deterministic"


def test_shipment_webhook_marks_lines_stamped_with_the_shipment_time() -> None:
    event = tradecloud.normalize_shipment_webhook(
        fixture("tradecloud/shipment-webhook.json"), received_at=NOW
    )
    assert (event.kind, event.version, event.document_number) == ("shipment", 3, "SH-2026-0042")
    assert event.idempotency_key == (
        "tradecloud:shipment:5eed5eed-aaaa-4bbb-8ccc-ddddeeeeffff-SH-2026-0042:v3"
    )
    assert (event.process_status, event.logistics_status) == ("Issued", "Shipped")
    shipment = event.shipment
    assert shipment is not None
    packed, loose = shipment.lines
    assert packed.load_carrier == "(00)387123450000000017" and packed.changed is True
    assert loose.load_carrier is None and loose.changed is False
    assert str(packed.backorder_quantity) == "234.5678901234567890"
    assert str(packed.despatch_quantity) == "1000.000"
    assert [loc["country_code"] for loc in shipment.locations] == ["NL", "DE"]
    assert shipment.locations[1]["name"] == "Buyer DC Duisburg"
    assert shipment.identifiers == {
        "trackingNumber": "TRK-00042-NL",
        "carrierShipmentNumber": "DHL-884422",
    }


def test_polled_shipment_without_version_uses_a_content_key() -> None:
    shipment = fixture("tradecloud/poll-shipments-page.json")["data"][0]
    event = tradecloud.normalize_polled_shipment(
        shipment, received_at=NOW, since="2026-02-20T00:00:00.000Z"
    )
    assert event.idempotency_key.startswith("tradecloud:shipment:")
    assert ":h" in event.idempotency_key
    assert [line.changed for line in event.shipment.lines] == [True, False]  # type: ignore[union-attr]
    assert event.process_status == "Approved" and event.logistics_status is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"eventName": "OrderIssuedByBuyer"}, "orderEvent"),
        ({"eventName": "X", "orderEvent": {"lines": []}}, "orderEvent.orderId"),
        ({"eventName": "X", "orderEvent": {"orderId": "o1", "lines": {}}}, "orderEvent.lines"),
        ({"eventName": "X", "orderEvent": {"orderId": "o1", "lines": [3]}}, "orderEvent.lines[0]"),
        (
            {"eventName": "X", "orderEvent": {"orderId": "o1", "lines": [{"status": "Issued"}]}},
            "orderEvent.lines[0].status",
        ),
        ([], "body"),
    ],
)
def test_missing_identity_names_the_field(body: object, path: str) -> None:
    with pytest.raises(InvalidPayload) as info:
        tradecloud.normalize_order_webhook(body, received_at=NOW)
    assert info.value.path == path


@pytest.mark.parametrize("lines", [None, []], ids=["no lines key", "empty lines"])
def test_an_order_webhook_without_lines_is_a_header_only_change(lines: object) -> None:
    """Tradecloud does not retry a 4xx: refusing a header-only event would lose it."""
    event: dict[str, object] = {"orderId": "o1", "version": 7, "buyerOrder": {"contact": "x"}}
    if lines is not None:
        event["lines"] = lines
    body = {"eventName": "OrderContactReassignedByBuyer", "orderEvent": event}
    normalized = tradecloud.normalize_order_webhook(body, received_at=NOW)
    assert normalized.order is not None and normalized.order.lines == []
    assert normalized.order.buyer.contact == "x" and normalized.version == 7
    assert not normalized.echo.all_changed_lines_echo


def test_a_shipment_without_id_is_invalid() -> None:
    with pytest.raises(InvalidPayload) as info:
        tradecloud.normalize_shipment_webhook({"shipment": {"lines": []}}, received_at=NOW)
    assert info.value.path == "shipment.id"


def test_received_at_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tradecloud.normalize_fetched_order(
            fixture("tradecloud/get-order.json"), received_at=datetime(2026, 1, 1)
        )
