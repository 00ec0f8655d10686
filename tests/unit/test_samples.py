"""Every file of the steering kit's ../shared/samples/, when that folder exists.

Real SDK files are *request* bodies (ERP -> Tradecloud); their buyer/supplier
parts are what received orders echo back, so they are wrapped into the
received shape before normalizing. Constructed files are received documents.
A sample file without an expectation here fails the suite: none is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.errors import InvalidPayload
from shared.normalize import apicbase, tradecloud
from shared.schema.codec import decode_event, encode_event, loads_exact
from shared.schema.models import CanonicalEvent
from tests.support.files import SAMPLES, samples_available
from tests.support.walk import decimals

pytestmark = pytest.mark.skipif(
    not samples_available(),
    reason=f"steering-kit samples not found at {SAMPLES}; own fixtures in tests/fixtures still run",
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _sdk_order(doc: Any) -> list[CanonicalEvent]:
    lines = [
        {
            "id": f"line-{i}",
            "buyerLine": line,
            "deliverySchedule": line.get("deliverySchedule"),
            "prices": line.get("prices"),
            "status": {"processStatus": "Issued"},
        }
        for i, line in enumerate(doc["lines"])
    ]
    order = {"id": "sdk-order", "version": 1, "buyerOrder": doc["order"], "lines": lines}
    return [tradecloud.normalize_polled_order(order, received_at=NOW)]


def _sdk_single_delivery(doc: Any) -> list[CanonicalEvent]:
    lines = [
        {
            "id": f"line-{i}",
            "buyerLine": line,
            "statusLine": {
                "scheduledDelivery": line["scheduledDelivery"],
                "prices": line["prices"],
            },
        }
        for i, line in enumerate(doc["lines"])
    ]
    body = {
        "eventName": "OrderIssuedByBuyer",
        "singleDeliveryOrderEvent": {
            "orderId": "sdk-sd",
            "version": 2,
            "buyerOrder": doc["order"],
            "lines": lines,
        },
    }
    event = tradecloud.normalize_order_webhook(body, received_at=NOW)
    assert event.order is not None and event.order.lines[0].original_position == "0001"
    return [event]


def _sdk_order_response(doc: Any) -> list[CanonicalEvent]:
    lines = [
        {
            "id": f"line-{i}",
            "buyerLine": {"position": line["purchaseOrderLinePosition"]},
            "supplierLine": {
                "salesOrderNumber": line["salesOrderNumber"],
                "salesOrderPosition": line["salesOrderLinePosition"],
            },
            "deliverySchedule": line["deliverySchedule"],
            "prices": line["prices"],
            "status": {"processStatus": "Confirmed", "logisticsStatus": "Open"},
        }
        for i, line in enumerate(doc["lines"])
    ]
    body = {
        "eventName": "OrderLinesConfirmedBySupplier",
        "orderEvent": {
            "orderId": "sdk-resp",
            "version": 3,
            "supplierOrder": doc["order"],
            "lines": lines,
        },
    }
    event = tradecloud.normalize_order_webhook(body, received_at=NOW)
    prices = event.order.lines[0].prices  # type: ignore[union-attr]
    assert prices is not None and str(prices["net"]["transaction"]["value"]) == "78.90"  # type: ignore[index]
    return [event]


def _sdk_shipment(doc: Any) -> list[CanonicalEvent]:
    shipment = {
        "id": "sdk-shipment",
        "loadCarriers": doc.get("loadCarriers", []),
        "lines": doc.get("lines", []),
    }
    event = tradecloud.normalize_polled_shipment(shipment, received_at=NOW)
    assert event.shipment is not None and event.shipment.lines
    return [event]


def _search_request(doc: Any) -> list[CanonicalEvent]:
    with pytest.raises(InvalidPayload) as info:
        tradecloud.normalize_polled_shipment(doc, received_at=NOW)
    assert info.value.path == "shipment.id"
    return []


def _order_webhook(doc: Any) -> list[CanonicalEvent]:
    return [tradecloud.normalize_order_webhook(doc, received_at=NOW)]


def _poll_response(doc: Any) -> list[CanonicalEvent]:
    return [
        tradecloud.normalize_polled_order(
            order,
            received_at=NOW,
            since="2025-04-23T00:00:00.000Z",
            role="supplier",
            echo_policy="own-open-requests",
        )
        for order in doc["data"]
    ]


def _shipment_webhook(doc: Any) -> list[CanonicalEvent]:
    return [tradecloud.normalize_shipment_webhook(doc, received_at=NOW)]


def _apicbase(doc: Any) -> list[CanonicalEvent]:
    return [apicbase.normalize_purchase_order(doc, received_at=NOW, channel="webhook")]


EXPECTATIONS: dict[str, Callable[[Any], list[CanonicalEvent]]] = {
    "tradecloud-sdk-dotnet/api-connector/SendOrder/order.json": _sdk_order,
    "tradecloud-sdk-dotnet/api-connector/SendOrderSingleDelivery/single-delivery-order.json": _sdk_single_delivery,
    "tradecloud-sdk-dotnet/api-connector/SendOrderResponse/order-response.json": _sdk_order_response,
    "tradecloud-sdk-dotnet/api-connector/SendDespatchAdvice/despatch-advice.json": _sdk_shipment,
    "tradecloud-sdk-dotnet/shipment/UpsertShipment/despatch-advice.json": _sdk_shipment,
    "tradecloud-sdk-dotnet/shipment/SearchShipments/search-shipments.json": _search_request,
    "constructed/tradecloud-order-webhook-body.constructed.json": _order_webhook,
    "constructed/tradecloud-poll-orders-response.constructed.json": _poll_response,
    "constructed/tradecloud-shipment-webhook-body.constructed.json": _shipment_webhook,
    "constructed/apicbase-purchase-order.constructed.json": _apicbase,
    "constructed/apicbase-purchase-order.pretty-utf8.constructed.json": _apicbase,
}


def _sample_files() -> list[str]:
    if not samples_available():
        return []
    return sorted(str(p.relative_to(SAMPLES)) for p in SAMPLES.rglob("*.json"))


def test_every_sample_file_has_an_expectation() -> None:
    assert set(_sample_files()) == set(EXPECTATIONS)


@pytest.mark.parametrize("name", _sample_files())
def test_sample_normalizes_with_exact_numbers(name: str) -> None:
    raw = Path(SAMPLES, name).read_bytes()
    events = EXPECTATIONS[name](loads_exact(raw))
    literals = {match.group().decode() for match in NUMBER.finditer(raw)}
    for event in events:
        assert decode_event(encode_event(event)) == event
        for value in decimals(event.model_copy(update={"raw": None})):
            # Every normalized number is one of the file's own literals: no float round trip.
            assert str(value) in literals, f"{value} does not appear in {name}"


def test_constructed_apicbase_copies_share_one_key() -> None:
    compact = loads_exact(
        (SAMPLES / "constructed/apicbase-purchase-order.constructed.json").read_bytes()
    )
    pretty = loads_exact(
        (SAMPLES / "constructed/apicbase-purchase-order.pretty-utf8.constructed.json").read_bytes()
    )
    a = apicbase.normalize_purchase_order(compact, received_at=NOW, channel="webhook")
    b = apicbase.normalize_purchase_order(pretty, received_at=NOW, channel="webhook")
    assert a.idempotency_key == b.idempotency_key
