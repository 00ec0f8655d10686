"""The Tradecloud world renders the order response in full (api-facts §3; seed 003).

Each element once on demand (a named step, a request spec) and all of them in a
long seeded run, in the delivery-schedule and the single-delivery flavour, as
polled and as pushed. Pure: no network.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from services.simulators.tradecloud.content import RequestSpec, container_number, sscc
from services.simulators.tradecloud.world import RULES, Change, Order, StepOptions, World
from shared.normalize import tradecloud
from shared.schema.codec import dumps_exact, loads_exact

NOW = datetime(2026, 6, 1, tzinfo=UTC)
FLAVOURS = pytest.mark.parametrize("single", [False, True], ids=["schedule", "single"])
EIGHTEEN = re.compile(r"^\d+\.\d{18}$")


def polled(world: World, order: Order, single: bool = False) -> dict[str, Any]:
    """The order as a poll returns it, decoded exactly as the poller decodes it."""
    document: dict[str, Any] = loads_exact(world.order_json(order, single_delivery=single))
    return document


def pushed(world: World, change: Change, single: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = loads_exact(
        dumps_exact(world.webhook_body(change, single_delivery=single))
    )
    return body


def event_of(body: dict[str, Any], single: bool) -> dict[str, Any]:
    event: dict[str, Any] = body["singleDeliveryOrderEvent" if single else "orderEvent"]
    return event


def schedule(container: dict[str, Any], single: bool) -> dict[str, Any]:
    """The one delivery of a buyer line, request or confirmed line, in either flavour."""
    if single:
        entry: dict[str, Any] = container["scheduledDelivery"]
        return entry
    (entry,) = container["deliverySchedule"]
    assert entry["position"] == "1"
    return entry


def line_of(document: dict[str, Any], line_id: str) -> dict[str, Any]:
    line: dict[str, Any] = next(ln for ln in document["lines"] if ln["id"] == line_id)
    return line


def issued(world: World, lines: int = 1) -> Order:
    return world.orders[world.issue_order(lines=lines, zoneless=False).document_id]


def confirmed(world: World, lines: int = 1) -> Order:
    order = issued(world, lines)
    while any(line.process == "Issued" for line in order.lines):
        world.advance(order.id, "accept")
    return order


def long_run(seed: int, documented: bool, orders: int = 300, steps: int = 2500) -> World:
    world = World(seed=seed, documented=documented)
    world.generate(orders)
    for _ in range(steps):
        world.advance(world.rng.choice(list(world.orders)))
    return world


@pytest.fixture(scope="module")
def run() -> World:
    return long_run(11, documented=True)


def all_lines(world: World, single: bool = False) -> Iterator[dict[str, Any]]:
    for order in world.orders.values():
        yield from polled(world, order, single)["lines"]


def shipment_lines(document: dict[str, Any]) -> list[dict[str, Any]]:
    inside = [line for carrier in document["loadCarriers"] for line in carrier["lines"]]
    return [*inside, *document["lines"]]


# ---------------------------------------------------------------- requests


CNY_PROPOSAL = RequestSpec(
    reason="capacity",
    currency="CNY",
    decimals=18,
    quantity=Decimal(37),
    days=21,
    charge_lines=1,
    prices_including_requests=False,
)


@FLAVOURS
def test_a_proposal_on_demand_carries_exactly_what_was_asked(single: bool) -> None:
    world = World(seed=101)
    order = issued(world)
    (line,) = order.lines
    before = polled(world, order, single)["lines"][0]
    change = world.advance(order.id, "propose", StepOptions(request=CNY_PROPOSAL))
    assert change is not None and change.event_name == "OrderChangesProposedBySupplier"
    for document in (polled(world, order, single), event_of(pushed(world, change, single), single)):
        rendered = line_of(document, line.id)
        proposal = rendered["supplierLine"]["requests"]["proposal"]
        assert (proposal["reason"], proposal["status"]) == ("capacity", "Open")
        wanted = schedule(proposal, single)
        assert wanted["quantity"] == 37 != schedule(before["buyerLine"], single)["quantity"]
        assert wanted["date"] > schedule(before["buyerLine"], single)["date"]
        net = proposal["prices"]["netPrice"]["priceInTransactionCurrency"]
        assert net["currencyIso"] == "CNY" and EIGHTEEN.match(str(net["value"]))
        assert "priceInBaseCurrency" not in proposal["prices"]["netPrice"]
        (charge,) = proposal["chargeLines"]
        assert charge["chargeTypeCode"] and charge["price"]["priceInTransactionCurrency"]
        # The issue's case: no pricesIncludingRequests on the line, the schedule still there.
        status_line = rendered.get("statusLine", rendered)
        assert "pricesIncludingRequests" not in status_line
        assert "pricesInclRequests" not in status_line
        if single:
            assert status_line["scheduledDeliveryInclRequests"]["quantity"] == 37
        else:
            assert rendered["deliveryScheduleIncludingRequests"][0]["quantity"] == 37
        assert rendered["status"]["inProgressStatus"] == "OpenSupplierProposal"


def test_the_eighteen_decimals_survive_every_encoding_exactly() -> None:
    world = World(seed=102)
    order = issued(world)
    price = Decimal("3.045370369287037036")
    world.advance(
        order.id, "propose", StepOptions(request=RequestSpec(currency="CNY", price=price))
    )
    raw = world.order_json(order)
    assert b'"value":3.045370369287037036,"currencyIso":"CNY"' in raw
    event = tradecloud.normalize_polled_order(loads_exact(raw), received_at=NOW)
    assert event.raw["lines"][0]["supplierLine"]["requests"]["proposal"]["prices"]["netPrice"][
        "priceInTransactionCurrency"
    ]["value"] == Decimal("3.045370369287037036")


def test_every_worlds_first_proposal_is_the_issues_reproduction_case() -> None:
    for seed in (1, 2, 3):
        world = World(seed=seed)
        order = issued(world)
        (line,) = order.lines
        world.advance(order.id, "propose")
        rendered = polled(world, order)["lines"][0]
        proposal = rendered["supplierLine"]["requests"]["proposal"]
        net = proposal["prices"]["netPrice"]["priceInTransactionCurrency"]
        assert net["currencyIso"] == "CNY" and EIGHTEEN.match(str(net["value"]))
        assert proposal["reason"] == "capacity"
        assert proposal["deliverySchedule"][0]["quantity"] != line.quantity
        assert proposal["deliverySchedule"][0]["date"] > line.date
        assert "pricesIncludingRequests" not in rendered


@FLAVOURS
def test_answered_requests_stay_readable_with_their_status(single: bool) -> None:
    world = World(seed=103)
    order = issued(world, lines=3)
    for line in order.lines:
        line.keep_answered = True
    first, second, third = order.lines
    spec = RequestSpec(reason="Steel surcharge", currency="USD", line=first.position)
    world.advance(order.id, "propose", StepOptions(request=spec))
    world.advance(order.id, "propose", StepOptions(request=RequestSpec(line=second.position)))
    world.advance(order.id, "propose", StepOptions(request=RequestSpec(line=third.position)))
    approved = world.advance(order.id, "approve_proposal")
    assert approved is not None
    for line in order.lines:
        if line.request is not None:  # one answer at a time: the rest is rejected
            world.advance(order.id, "reject_proposal")
    document = polled(world, order, single)
    statuses = {
        ln["id"]: ln["supplierLine"]["requests"]["proposal"]["status"] for ln in document["lines"]
    }
    assert set(statuses.values()) <= {"Approved", "Rejected"} and "Approved" in statuses.values()
    for line in order.lines:
        rendered = line_of(document, line.id)
        if statuses[line.id] == "Approved":
            proposal = rendered["supplierLine"]["requests"]["proposal"]
            agreed = rendered["confirmedLine"]
            assert agreed["prices"] == proposal["prices"], "the agreed line took the proposal"
            assert schedule(agreed, single) == schedule(proposal, single)
            assert rendered["status"]["processStatus"] == "Confirmed"
        else:
            assert rendered["status"]["inProgressStatus"] == "RejectedSupplierProposal"
    # After a rejection the supplier answers again: accepting confirms the buyer's values.
    rejected = [ln for ln in order.lines if statuses[ln.id] == "Rejected"]
    if rejected:
        world.advance(order.id, "accept")
        assert any(ln.process == "Confirmed" for ln in rejected)


@FLAVOURS
def test_reopen_requests_of_both_sides_and_a_closed_one(single: bool) -> None:
    world = World(seed=104)
    order = confirmed(world, lines=2)
    for line in order.lines:
        line.keep_answered = True
    buyer_line, supplier_line = order.lines
    world.advance(
        order.id,
        "buyer_reopen",
        StepOptions(request=RequestSpec(reason="Demand changed", line=buyer_line.position)),
    )
    world.advance(
        order.id,
        "supplier_reopen",
        StepOptions(request=RequestSpec(quantity=Decimal(3), line=supplier_line.position)),
    )
    document = polled(world, order, single)
    buyer_request = line_of(document, buyer_line.id)["buyerLine"]["requests"]["reopenRequest"]
    assert (buyer_request["reason"], buyer_request["status"]) == ("Demand changed", "Open")
    supplier_request = line_of(document, supplier_line.id)["supplierLine"]["requests"][
        "reopenRequest"
    ]
    assert schedule(supplier_request, single)["quantity"] == 3
    assert supplier_request["reason"], "the seed gives a reason when none is asked for"
    world.advance(order.id, "approve_buyer_reopen")
    document = polled(world, order, single)
    rendered = line_of(document, buyer_line.id)["buyerLine"]
    assert rendered["requests"]["reopenRequest"]["status"] == "Approved"
    assert schedule(rendered, single) == schedule(rendered["requests"]["reopenRequest"], single), (
        "the buyer's own line took its approved request"
    )
    while supplier_line.process != "Cancelled":  # its open request is no longer relevant
        world.advance(order.id, "cancel")
    rendered = line_of(polled(world, order, single), supplier_line.id)["supplierLine"]
    assert rendered["requests"]["reopenRequest"]["status"] == "Closed"


def test_a_long_run_shows_every_request_status_and_varied_reasons(run: World) -> None:
    seen: Counter[tuple[str, str, str]] = Counter()
    reasons: set[str] = set()
    for line in all_lines(run):
        for side in ("buyerLine", "supplierLine"):
            for key, request in line[side].get("requests", {}).items():
                seen[(side, key, request["status"])] += 1
                reasons.add(request["reason"])
                assert set(request) >= {"deliverySchedule", "prices", "reason", "status"}
    for side, key in (
        ("supplierLine", "proposal"),
        ("supplierLine", "reopenRequest"),
        ("buyerLine", "reopenRequest"),
    ):
        for status in ("Open", "Approved", "Rejected", "Closed"):
            assert seen[(side, key, status)], (side, key, status)
    assert ("buyerLine", "proposal", "Open") not in seen, "only the supplier proposes"
    assert len(reasons) >= 8 and "capacity" in reasons


def test_some_lines_forget_answered_requests_and_some_keep_them(run: World) -> None:
    keeping = [ln.keep_answered for order in run.orders.values() for ln in order.lines]
    assert 0.4 < sum(keeping) / len(keeping) < 0.9


# ---------------------------------------------------------------- the agreed line and prices


@FLAVOURS
def test_a_confirmed_line_carries_its_schedule_prices_and_charge_lines(single: bool) -> None:
    world = World(seed=105)
    order = confirmed(world, lines=4)
    for rendered in polled(world, order, single)["lines"]:
        agreed = rendered["confirmedLine"]
        buyer = schedule(rendered["buyerLine"], single)
        assert {k: schedule(agreed, single)[k] for k in ("date", "quantity")} == {
            "date": buyer["date"],
            "quantity": buyer["quantity"],
        }
        assert agreed["prices"] == rendered["buyerLine"]["prices"]
        assert agreed["chargeLines"] == rendered["buyerLine"].get("chargeLines", [])
        assert "status" not in schedule(agreed, single), "logistics only at line level"


def test_prices_charges_and_currencies_look_like_tradecloud_s(run: World) -> None:
    currencies: Counter[str] = Counter()
    units: Counter[int] = Counter()
    discounted = based = charged = unpositioned = 0
    for line in all_lines(run):
        prices = line["prices"]
        assert set(prices) == {
            "grossPrice",
            "discountPercentage",
            "netPrice",
            "priceUnitOfMeasureIso",
            "priceUnitQuantity",
        }
        currencies[prices["netPrice"]["priceInTransactionCurrency"]["currencyIso"]] += 1
        units[prices["priceUnitQuantity"]] += 1
        discounted += prices["discountPercentage"] != 0
        based += "priceInBaseCurrency" in prices["netPrice"]
        for charge in line["buyerLine"].get("chargeLines", []):
            charged += 1
            unpositioned += "position" not in charge
            assert {"chargeTypeCode", "chargeDescription", "quantity", "price"} <= set(charge)
            assert charge["chargeTypeCode"] in {"FC", "PC", "ABW", "IN", "ABL", "HD"}
            assert charge["price"]["priceInTransactionCurrency"]["currencyIso"]
    assert {"EUR", "USD", "CNY"} <= set(currencies), currencies
    assert set(units) == {1, 100}
    assert discounted and based and charged and unpositioned
    assert 0 < based < sum(currencies.values()), "priceInBaseCurrency only sometimes"


def test_service_and_charge_lines_expect_no_delivery_and_never_ship(run: World) -> None:
    kinds: Counter[str] = Counter()
    for line in all_lines(run):
        kinds[line["lineType"]] += 1
        no_delivery = line["buyerLine"]["indicators"]["noDeliveryExpected"]
        assert no_delivery == (line["lineType"] != "Item")
        if line["lineType"] != "Item":
            assert line["chargeReasonCode"] in {"ADR", "FC", "PC"}
            assert line["buyerLine"]["item"]["number"] == ""
            assert line["status"]["logisticsStatus"] in ("Open", "Delivered", "Cancelled")
    assert kinds["Item"] and kinds["Service"] and kinds["Charge"]
    shipped = {
        (ln["purchaseOrderNumber"], ln["purchaseOrderLinePosition"])
        for shipment in run.shipments.values()
        for ln in shipment_lines(loads_exact(run.shipment_json(shipment)))
    }
    for order in run.orders.values():
        for state in order.lines:
            if state.no_delivery:
                assert (order.number, state.position) not in shipped


# ---------------------------------------------------------------- texts, documents, details


def test_custom_fields_and_texts_on_both_sides_of_order_and_line(run: World) -> None:
    found: Counter[tuple[str, str]] = Counter()
    for order in run.orders.values():
        document = polled(run, order)
        parts = [
            ("buyerOrder", document["buyerOrder"]),
            ("supplierOrder", document["supplierOrder"]),
        ]
        for line in document["lines"]:
            parts += [("buyerLine", line["buyerLine"]), ("supplierLine", line["supplierLine"])]
        for name, part in parts:
            for key in ("properties", "notes", "labels", "customLabels", "description"):
                if part.get(key):
                    found[(name, key)] += 1
            for prop in part.get("properties", []):
                assert set(prop) == {"key", "value"} and all(
                    isinstance(v, str) for v in prop.values()
                )
    for name in ("buyerOrder", "supplierOrder", "buyerLine", "supplierLine"):
        for key in ("properties", "notes", "labels"):
            assert found[(name, key)], (name, key)
    assert found[("buyerOrder", "customLabels")] and found[("supplierOrder", "customLabels")]
    assert found[("buyerLine", "customLabels")]
    assert found[("buyerOrder", "description")] and found[("supplierOrder", "description")]


def test_the_supplier_s_texts_appear_with_its_first_answer() -> None:
    world = World(seed=106)
    order = issued(world, lines=2)
    assert "properties" not in polled(world, order)["supplierOrder"]
    assert world.orders[order.id].supplier_extra is None
    world.advance(order.id, "accept")
    extra = world.orders[order.id].supplier_extra
    assert extra is not None
    header = polled(world, order)["supplierOrder"]
    assert {k: header[k] for k in extra} == extra


def test_documents_on_both_sides_at_order_and_line_level(run: World) -> None:
    places: Counter[str] = Counter()
    with_url = 0
    for order in run.orders.values():
        document = polled(run, order)
        for place, attached in (
            ("buyerOrder", document["buyerOrder"]["documents"]),
            ("supplierOrder", document["supplierOrder"]["documents"]),
            *(("buyerLine", ln["buyerLine"]["documents"]) for ln in document["lines"]),
            *(("supplierLine", ln["supplierLine"]["documents"]) for ln in document["lines"]),
        ):
            for doc in attached:
                places[place] += 1
                with_url += "url" in doc
                assert {"code", "revision", "name", "objectId", "type", "description"} <= set(doc)
    assert all(places[p] for p in ("buyerOrder", "supplierOrder", "buyerLine", "supplierLine"))
    assert with_url, "some documents also give a url (the SDK sample has both)"


def test_documents_reach_order_documents_events_and_order_events() -> None:
    world = World(seed=107, documented=True)
    order = confirmed(world, lines=2)
    line_change = world.advance(order.id, "attach_document", StepOptions(by="buyer"))
    header_change = world.advance(order.id, "attach_order_document", StepOptions(by="supplier"))
    assert line_change is not None and header_change is not None
    line_event = pushed(world, line_change)["orderDocumentsEvent"]
    (doc,) = line_event["lines"][0]["buyerLine"]["documents"]
    assert doc["type"] == "Drawing" and doc["objectId"]
    header_event = pushed(world, header_change)["orderDocumentsEvent"]
    (header_doc,) = header_event["supplierOrder"]["documents"]
    assert header_doc["type"] == "OrderConfirmation"
    # The next order event carries the line's documents as the poll does.
    change = world.advance(order.id, "request_reconfirmation")
    assert change is not None
    for rendered in event_of(pushed(world, change), False)["lines"]:
        assert rendered == line_of(polled(world, order), rendered["id"])


def test_item_details_terms_numbers_indicators_and_transport_modes(run: World) -> None:
    details: Counter[str] = Counter()
    buyer: Counter[str] = Counter()
    modes: set[str] = set()
    for line in all_lines(run):
        for key in line.get("mergedItemDetails", {}):
            details[key] += 1
        if "mergedItemDetails" in line and "netWeight" in line["mergedItemDetails"]:
            assert isinstance(line["mergedItemDetails"]["netWeight"], Decimal)
        for key in ("terms", "projectNumber", "productionNumber"):
            buyer[key] += key in line["buyerLine"]
        if "terms" in line["buyerLine"]:
            assert set(line["buyerLine"]["terms"]) == {"contractNumber", "contractPosition"}
        assert set(line["buyerLine"]["indicators"]) == {"noDeliveryExpected", "delivered"}
        assert line["buyerLine"]["indicators"]["delivered"] == (
            line["status"]["logisticsStatus"] == "Delivered"
        )
        assert set(line["indicators"]) == {"deliveryOverdue"}
        entry = line["deliverySchedule"][0]
        if "transportMode" in entry:
            modes.add(entry["transportMode"])
            assert (
                line["buyerLine"]["deliverySchedule"][0]["transportMode"] == entry["transportMode"]
            )
    assert set(details) == {
        "countryOfOriginCodeIso2",
        "combinedNomenclatureCode",
        "netWeight",
        "netWeightUnitOfMeasureIso",
        "dangerousGoodsCodeUnece",
        "serialNumber",
        "batchNumber",
    }
    assert all(buyer.values()) and len(buyer) == 3
    assert len(modes) >= 3


def test_transport_mode_etd_and_eta_in_the_single_delivery_flavour(run: World) -> None:
    scheduled = [ln["statusLine"]["scheduledDelivery"] for ln in all_lines(run, single=True)]
    assert any("transportMode" in entry for entry in scheduled)
    planned = [entry for entry in scheduled if "etd" in entry]
    assert planned and all("position" not in entry for entry in scheduled)
    assert all(re.match(r"^\d{4}-\d\d-\d\d$", entry["etd"]) for entry in planned)


def test_a_line_past_its_date_is_overdue_once_touched() -> None:
    world = World(seed=111)
    order = confirmed(world, lines=2)
    assert not any(ln["indicators"]["deliveryOverdue"] for ln in polled(world, order)["lines"])
    late = parse_ms_of(max(line.date for line in order.lines)) + 86_400_000
    world.use_clock(lambda: late)
    world.advance(order.id, "produce")
    touched = {ln.id for ln in order.lines if ln.logistics == "Produced"}
    assert touched
    document = polled(world, order)
    for line in order.lines:
        assert line_of(document, line.id)["indicators"]["deliveryOverdue"] is (line.id in touched)


def parse_ms_of(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp() * 1000)


def test_event_dates_follow_what_happened() -> None:
    world = World(seed=108)
    order = issued(world, lines=1)
    document = polled(world, order)
    assert set(document["eventDates"]) == {"issuedAt"}
    assert set(document["lines"][0]["eventDates"]) == {"issuedAt"}
    world.advance(order.id, "accept")
    for step in ("produce", "ready", "ship", "deliver", "complete"):
        world.advance(order.id, step)
    document = polled(world, order)
    expected = {
        "issuedAt",
        "firstConfirmedAt",
        "lastConfirmedAt",
        "shippedAt",
        "deliveredAt",
        "completedAt",
    }
    assert set(document["lines"][0]["eventDates"]) == expected
    assert set(document["eventDates"]) == expected
    stamps = document["lines"][0]["eventDates"]
    assert stamps["issuedAt"] < stamps["firstConfirmedAt"] < stamps["completedAt"]
    assert stamps["completedAt"] == document["lines"][0]["lastUpdatedAt"]


def test_event_dates_are_zone_less_where_the_order_s_stamps_are() -> None:
    world = World(seed=109, documented=True)
    order = world.orders[world.issue_order(lines=1, zoneless=True).document_id]
    world.advance(order.id, "accept")
    document = polled(world, order)
    for stamp in (*document["eventDates"].values(), *document["lines"][0]["eventDates"].values()):
        assert not stamp.endswith("Z") and parse(stamp)
    world.set_zoneless(order.id, False)
    assert all(s.endswith("Z") for s in polled(world, order)["eventDates"].values())


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ---------------------------------------------------------------- splits


@FLAVOURS
def test_a_split_line_has_no_position_until_the_buyer_gives_it_one(single: bool) -> None:
    world = World(seed=110)
    order = issued(world, lines=1)
    original = order.lines[0]
    original.quantity = Decimal(100)
    change = world.advance(order.id, "split")
    assert change is not None and change.event_name == "OrderLinesConfirmedBySupplier"
    assert len(change.line_ids) == 2 and len(order.lines) == 2
    split = next(line for line in order.lines if line.original_position is not None)
    event = event_of(pushed(world, change, single), single)
    for document in (event, polled(world, order, single)):
        rendered = line_of(document, split.id)
        assert rendered["buyerLine"]["position"] == ""
        assert rendered["buyerLine"]["originalPosition"] == original.position
        quantities = [
            schedule(line_of(document, ln.id)["confirmedLine"], single)["quantity"]
            for ln in (original, split)
        ]
        assert sum(quantities) == 100 and all(q > 0 for q in quantities)
    normalized = tradecloud.normalize_polled_order(
        polled(world, order, single), received_at=NOW
    ).order
    assert normalized is not None
    (line,) = [ln for ln in normalized.lines if ln.line_id == split.id]
    assert (line.position, line.original_position) == (None, original.position)
    # It cannot ship before it has a position (a shipment line names it by position).
    split.logistics = "ReadyToShip"
    assert not RULES["ship"][1](split)
    world.advance(order.id, "assign_position")
    rendered = line_of(polled(world, order, single), split.id)
    assert rendered["buyerLine"]["position"] == "0020"
    assert rendered["buyerLine"]["originalPosition"] == original.position, "as in the SDK sample"
    assert RULES["ship"][1](split)


def test_splits_happen_in_a_long_run_and_some_stay_unassigned(run: World) -> None:
    splits = [ln for ln in all_lines(run) if "originalPosition" in ln["buyerLine"]]
    assert splits
    assert any(ln["buyerLine"]["position"] == "" for ln in splits)
    assert any(ln["buyerLine"]["position"] != "" for ln in splits)


# ---------------------------------------------------------------- shipments


def test_shipments_carry_parties_contacts_terms_locations_and_erp_meta(run: World) -> None:
    found: Counter[str] = Counter()
    for shipment in run.shipments.values():
        document = loads_exact(run.shipment_json(shipment))
        supplier, buyer = document["supplierShipment"], document["buyerShipment"]
        assert supplier["supplierParty"]["idScheme"] == "GLN"
        assert buyer["buyerParty"]["names"]
        assert supplier["contacts"] and set(supplier["contacts"][0]) == {
            "userId",
            "email",
            "firstName",
            "lastName",
            "position",
            "phoneNumber",
        }
        assert set(buyer["purchaseOrderTerms"]) == {
            "incotermsCode",
            "incoterms",
            "paymentTermsCode",
            "paymentTerms",
        }
        assert re.match(
            r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d$", document["meta"]["despatchAdviceErpIssueDateTime"]
        )
        departure = document["locations"]["departure"]
        assert departure["location"]["locationType"] == "AgreedPlace" and departure["etdDate"]
        for stop in document["locations"]["destinations"]:
            found.update(key for key in stop if key != "location")
            found[stop["location"]["locationType"]] += 1
            found["iso2" if "countryCodeIso2" in stop["location"] else "iso"] += 1
        found.update(key for key in departure if key != "location")
        found["invoiced"] += bool(supplier["invoiceNumbers"])
        found["buyer contacts"] += bool(buyer["contacts"])
        found["erp meta"] += "supplierErpMeta" in document["meta"]
        found["reason"] += "processStatusReason" in document["status"]
        found[document["status"]["processStatus"]] += 1
        found["carriers"] += bool(document["loadCarriers"])
        for carrier in document["loadCarriers"]:
            assert carrier["lines"]
            found["container" if "containerNumber" in carrier else "package"] += 1
        for line in shipment_lines(document):
            found["backorder"] += "backorderDate" in line["supplierLine"]
            assert line["purchaseOrderLinePosition"], "a split line ships once it has a position"
        found["sea"] += "billOfLadingNumber" in document["identifiers"]
    for key in (
        "etaStartDate",
        "etaStartTime",
        "etaEndDate",
        "etaEndTime",
        "ataDate",
        "etdDate",
        "atdDate",
        "PortOfDestination",
        "PlaceOfDestination",
        "iso",
        "iso2",
        "invoiced",
        "buyer contacts",
        "erp meta",
        "reason",
        "Issued",
        "Approved",
        "Rejected",
        "carriers",
        "container",
        "package",
        "backorder",
        "sea",
    ):
        assert found[key], key
    assert found["carriers"] < len(run.shipments), "load carriers for a share only"


def test_load_carrier_identifiers_carry_valid_check_digits() -> None:
    import random

    rng = random.Random(5)
    for _ in range(50):
        number = container_number(rng)
        assert re.match(r"^[A-Z]{4}\d{7}$", number)
    assert container_number(random.Random(0))[:4] in {"MSKU", "BICU", "TGHU", "CMAU"}
    # ISO 6346's own example: CSQU305438 has check digit 3.
    assert _iso6346("CSQU305438") == 3
    for serial in (1, 123, 9_999_999):
        code = sscc(serial)
        assert code.startswith("(00)") and len(code) == 22
        digits = code[4:]
        total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(reversed(digits)))
        assert total % 10 == 0, code


def _iso6346(owner_and_serial: str) -> int:
    """The check digit the way ``container_number`` computes it, on a known example."""
    import random

    class Fixed(random.Random):
        def choice(self, seq: Any) -> Any:
            return owner_and_serial[:4]

        def randrange(self, *args: Any, **kwargs: Any) -> int:
            return int(owner_and_serial[4:])

    return int(container_number(Fixed())[-1])


# ---------------------------------------------------------------- everything, everywhere


@pytest.mark.parametrize("documented", [False, True], ids=["default", "documented"])
def test_every_document_of_a_long_run_normalizes_in_both_flavours(documented: bool) -> None:
    world = long_run(12, documented=documented, orders=150, steps=1200)
    for change in world.changes:
        if change.kind == "shipment":
            body = pushed(world, change)
            tradecloud.normalize_shipment_webhook(body, received_at=NOW)
            continue
        if change.document_id not in world.orders:
            continue
        for single in (False, True):
            tradecloud.normalize_order_webhook(pushed(world, change, single), received_at=NOW)
    for order in world.orders.values():
        for single in (False, True):
            tradecloud.normalize_polled_order(polled(world, order, single), received_at=NOW)
    for shipment in world.shipments.values():
        tradecloud.normalize_polled_shipment(
            loads_exact(world.shipment_json(shipment)), received_at=NOW
        )


def test_pushed_lines_equal_polled_lines_when_nothing_changed_since() -> None:
    world = long_run(13, documented=False, orders=60, steps=400)
    last: dict[str, Change] = {}
    for change in world.changes:
        if change.kind == "order" and change.line_ids:
            last[change.document_id] = change
    for order_id, change in last.items():
        order = world.orders[order_id]
        if order.updated_ms != change.updated_ms:
            continue
        poll = polled(world, order)
        event = event_of(pushed(world, change), False)
        for rendered in event["lines"]:
            assert rendered == line_of(poll, rendered["id"])
        header = {k: v for k, v in event.items() if k not in ("orderId", "lines")}
        assert header == {k: v for k, v in poll.items() if k not in ("id", "lines", "meta")}
