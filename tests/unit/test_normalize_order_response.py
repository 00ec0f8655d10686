"""The order response in full: requests, the agreed line, charge lines, custom fields,
documents and item details reach the canonical event exactly (api-facts §3; seed 003),
by webhook, poll and GET, in delivery-schedule and single-delivery mode."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.normalize import tradecloud
from shared.schema.codec import decode_event, dumps_exact, encode_event, loads_exact
from shared.schema.models import CanonicalEvent, OrderLine
from tests.support.files import fixture

NOW = datetime(2026, 3, 3, tzinfo=UTC)


def webhook() -> dict[str, Any]:
    """The fixture, decoded with exact decimals (as ingress decodes a body)."""
    body: dict[str, Any] = loads_exact(dumps_exact(fixture("tradecloud/order-response-full.json")))
    return body


def single_delivery(body: dict[str, Any]) -> dict[str, Any]:
    """The same response as a single-delivery event: ``statusLine`` and ``scheduledDelivery``."""
    single = copy.deepcopy(body)
    event = single.pop("orderEvent")
    single["singleDeliveryOrderEvent"] = event
    for line in event["lines"]:
        schedule = line.pop("deliverySchedule")
        prices = line.pop("prices", None)
        line["statusLine"] = {
            "scheduledDelivery": _one(schedule[0]),
            "prices": prices,
        }
        for side in ("buyerLine", "supplierLine"):
            for request in ((line.get(side) or {}).get("requests") or {}).values():
                request["scheduledDelivery"] = _one(request.pop("deliverySchedule")[0])
        if "confirmedLine" in line:
            confirmed = line["confirmedLine"]
            confirmed["scheduledDelivery"] = _one(confirmed.pop("deliverySchedule")[0])
    return single


def _one(entry: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in entry.items() if key != "position"}


def event_of(body: dict[str, Any]) -> CanonicalEvent:
    return tradecloud.normalize_order_webhook(body, received_at=NOW)


def first_line(event: CanonicalEvent) -> OrderLine:
    assert event.order is not None
    return event.order.lines[0]


@pytest.mark.parametrize("mode", ["delivery-schedule", "single-delivery"])
def test_a_supplier_proposal_arrives_with_its_reason_schedule_prices_and_charges(mode: str) -> None:
    body = webhook() if mode == "delivery-schedule" else single_delivery(webhook())
    line = first_line(event_of(body))
    proposal = next(r for r in line.requests if r["kind"] == "proposal")
    assert (proposal["side"], proposal["status"], proposal["reason"]) == (
        "supplier",
        "Open",
        "capacity",
    )
    assert proposal["delivery_schedule"] is not None
    assert proposal["delivery_schedule"][0]["date"] is not None
    assert proposal["delivery_schedule"][0]["date"]["text"] == "2026-04-15"
    assert proposal["delivery_schedule"][0]["quantity"] == Decimal(80)
    assert proposal["prices"] is not None and proposal["prices"]["net"] is not None
    net = proposal["prices"]["net"]["transaction"]
    assert net is not None and (str(net["value"]), net["currency"]) == (
        "3.045370369287037036",
        "CNY",
    )
    assert proposal["prices"]["unit_quantity"] == 100
    (charge,) = proposal["charge_lines"] or []
    assert (charge["position"], charge["charge_type_code"], charge["description"]) == (
        "02",
        "ABW",
        "Packing",
    )
    assert charge["price"] is not None and charge["price"]["transaction"] is not None
    assert str(charge["price"]["transaction"]["value"]) == "12.500000000000000001"
    assert line.prices_including_requests is None, "the fixture sends no pricesIncludingRequests"


def test_requests_of_both_sides_and_the_agreed_line() -> None:
    line = first_line(event_of(webhook()))
    reopen = next(r for r in line.requests if r["side"] == "buyer")
    assert (reopen["kind"], reopen["status"], reopen["reason"]) == (
        "reopen_request",
        "Rejected",
        "Demand increased",
    )
    assert line.confirmed is not None
    assert line.confirmed["delivery_schedule"] is not None
    assert line.confirmed["delivery_schedule"][0]["quantity"] == 100
    (freight,) = line.confirmed["charge_lines"] or []
    assert (freight["position"], freight["charge_type_code"]) == (None, "FC")
    assert [c["description"] for c in line.charge_lines] == ["Freight"], "buyerLine.chargeLines"


def test_an_unknown_request_kind_is_kept_under_its_own_name() -> None:
    body = webhook()
    body["orderEvent"]["lines"][0]["buyerLine"]["requests"]["reconfirmationRequest"] = {
        "reason": "Please confirm again",
        "status": "Open",
    }
    kinds = {(r["side"], r["kind"]) for r in first_line(event_of(body)).requests}
    assert ("buyer", "reconfirmation_request") in kinds


def test_custom_fields_and_texts_on_both_sides_of_order_and_line() -> None:
    event = event_of(webhook())
    assert event.order is not None
    buyer, supplier = event.order.buyer, event.order.supplier
    assert buyer.properties == [{"key": "costCenter", "value": "4711"}]
    assert (buyer.notes, buyer.labels, buyer.custom_labels) == (
        ["Deliver to gate 3"],
        ["urgent"],
        ["Q2-campaign"],
    )
    assert supplier.properties == [{"key": "quoteRef", "value": "Q-99"}]
    assert (supplier.notes, supplier.labels) == (["Partial deliveries possible"], ["checked"])
    line = event.order.lines[0]
    assert line.buyer.properties == [{"key": "drawing", "value": "DWG-1280"}]
    assert (line.buyer.notes, line.buyer.labels, line.buyer.custom_labels) == (
        ["Check thread"],
        ["bolts"],
        ["fasteners"],
    )
    assert line.supplier.description == "Bolt, our article 900-1280"
    assert (line.supplier.properties, line.supplier.notes) == (
        [{"key": "plant", "value": "P2"}],
        ["Made to stock"],
    )


def test_documents_at_order_and_line_level_on_both_sides() -> None:
    event = event_of(webhook())
    assert event.order is not None
    order_docs = {(d["owner"], d["name"], d["object_id"], d["url"]) for d in event.order.documents}
    assert order_docs == {
        ("buyer", "Terms and conditions.pdf", "0b7f1a2c-0000-4000-8000-000000000001", None),
        ("supplier", "Order confirmation.pdf", None, "https://files.supplier.example/oc-7.pdf"),
    }
    line_docs = [
        (d["owner"], d["line_position"], d["type"]) for d in event.order.lines[0].documents
    ]
    assert line_docs == [("buyer", "0010", "Drawing"), ("supplier", "0010", "Certificate")]


def test_item_and_line_details_and_parties() -> None:
    event = event_of(webhook())
    assert event.order is not None
    line = event.order.lines[0]
    assert line.item_details is not None
    assert (line.item_details["country_of_origin"], str(line.item_details["net_weight"])) == (
        "CN",
        "0.0885",
    )
    assert line.terms == {"contract_number": "FC-2026-01", "contract_position": "7"}
    assert (line.project_number, line.production_number) == ("PRJ-42", "PROD-9")
    assert line.indicators == {
        "noDeliveryExpected": False,
        "delivered": False,
        "deliveryOverdue": False,
    }
    assert line.event_dates["proposedAt"]["utc"] == datetime(2026, 3, 2, 10, 15, 0, 123000, UTC)
    assert line.delivery_schedule[0].get("transport_mode") == "Road"
    assert [h["quantity"] for h in line.delivery_history] == [10]
    assert line.item.get("description") == "Zinc plated"
    assert event.order.terms is not None and event.order.terms["incoterms_code"] == "DAP"
    assert event.order.destination is not None and event.order.destination["code"] == "WH-3"
    assert event.order.accounting_party is not None
    assert event.order.buyer.party is not None and event.order.buyer.party["id_scheme"] == "GLN"
    assert event.order.supplier.party is not None
    assert event.order.supplier.party["city"] == "München"
    assert set(event.order.event_dates) == {"issuedAt", "lastProposedAt"}
    split, charge = event.order.lines[1], event.order.lines[2]
    assert (split.position, split.original_position) == (None, "0010"), "a supplier split"
    assert (charge.line_type, charge.charge_reason_code) == ("Charge", "FC")


def test_poll_and_get_carry_the_same_response() -> None:
    body = webhook()
    document = copy.deepcopy(body["orderEvent"])
    document["id"] = document.pop("orderId")
    by_webhook = event_of(body)
    by_poll = tradecloud.normalize_polled_order(document, received_at=NOW)
    by_get = tradecloud.normalize_fetched_order(document, received_at=NOW)
    for other in (by_poll, by_get):
        assert other.order is not None and by_webhook.order is not None
        for mine, theirs in zip(by_webhook.order.lines, other.order.lines, strict=True):
            assert (mine.requests, mine.confirmed, mine.buyer, mine.supplier) == (
                theirs.requests,
                theirs.confirmed,
                theirs.buyer,
                theirs.supplier,
            )


def test_the_encoded_event_keeps_every_digit_and_decodes_back() -> None:
    event = event_of(webhook())
    body = encode_event(event)
    assert b'"value":"3.123456789012345678"' in body
    assert b'"value":"12.500000000000000001"' in body
    assert decode_event(body) == event
    as_json = json.loads(body)
    assert as_json["order"]["lines"][0]["requests"][1]["reason"] == "capacity"


def test_shipment_header_fields() -> None:
    event = tradecloud.normalize_shipment_webhook(
        fixture("tradecloud/shipment-full.json"), received_at=NOW
    )
    shipment = event.shipment
    assert shipment is not None
    assert (shipment.process_status, shipment.process_status_reason) == (
        "Rejected",
        "Quantity differs from the order",
    )
    assert shipment.despatch_advice_number == "DA-2026-042"
    assert shipment.invoice_numbers == ["INV-1", "INV-2"]
    assert shipment.purchase_order_terms is not None
    assert shipment.purchase_order_terms["incoterms_code"] == "FOB"
    assert shipment.supplier_erp_meta == {
        "batch": "B-7",
        "weight": "120.50",
        "flags": [True, False],
    }
    assert shipment.despatch_advice_issued_at is not None
    assert shipment.despatch_advice_issued_at["kind"] == "local"
    assert [c["email"] for c in shipment.supplier.contacts] == ["shipping@supplier.example"]
    assert shipment.buyer.party is not None and shipment.buyer.party["id"] == "8712345000004"
    departure, destination = shipment.locations
    assert departure.get("atd") is not None and departure["atd"]["text"] == "2026-04-04"  # type: ignore[index]
    assert destination.get("eta_start_time") == "08:00"
    assert destination.get("eta_end") is not None
    assert destination.get("eta_end_time") == "17:00"
    assert destination.get("ata") is not None
    assert [c["container_number"] or c["package_sscc"] for c in shipment.load_carriers] == [
        "MSKU1234565",
        "387123450000000017",
    ]
    line = shipment.lines[0]
    assert line.backorder_date is not None and line.backorder_date["text"] == "2026-04-29"
    assert line.item.get("supplier_item_name") == "Bolt 900-1280"
