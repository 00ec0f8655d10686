"""The simulated world alone: determinism, shapes the normalizers accept, lifecycles."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from services.simulators.tradecloud.world import (
    BUYER_COMPANY,
    MetaPlacement,
    World,
    aggregate_logistics,
    aggregate_process,
    iso_ms,
    parse_ms,
)
from shared.normalize import tradecloud
from shared.schema.codec import dumps_exact, loads_exact

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_same_seed_same_world() -> None:
    first, second = World(seed=42), World(seed=42)
    first.generate(200)
    second.generate(200)
    assert [first.order_json(o) for o in first.orders.values()] == [
        second.order_json(o) for o in second.orders.values()
    ]
    other = World(seed=43)
    other.generate(200)
    assert list(other.orders) != list(first.orders)


def test_timestamps_have_milliseconds_and_ties_exist() -> None:
    world = World(seed=5)
    world.generate(500)
    stamps = [order.updated_ms for order in world.orders_after(-1)]
    assert stamps == sorted(stamps)
    runs = [len(list(group)) for _, group in itertools.groupby(stamps)]
    assert max(runs) >= 3, "several orders must share one millisecond"
    text = iso_ms(stamps[0])
    assert text.endswith("Z") and len(text) == 24 and parse_ms(text) == stamps[0]


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        (["Confirmed", "Confirmed"], "Confirmed"),
        (["Confirmed", "Issued"], "InProgress"),
        (["Confirmed", "Cancelled"], "Confirmed"),
        (["Issued", "Issued"], "Issued"),
        (["Cancelled", "Cancelled"], "Cancelled"),
        (["Completed", "Cancelled"], "Completed"),
        (["Rejected"], "Rejected"),
    ],
)
def test_order_process_status_aggregates_lines(statuses: list[str], expected: str) -> None:
    assert aggregate_process(statuses) == expected


def test_logistics_status_is_the_least_advanced_live_line() -> None:
    assert aggregate_logistics(["Shipped", "Delivered"]) == "Shipped"
    assert aggregate_logistics(["Cancelled", "Delivered"]) == "Delivered"


def test_every_change_bumps_the_version_and_webhooks_carry_only_touched_lines() -> None:
    world = World(seed=9)
    order_id = world.issue_order(lines=4).document_id
    order = world.orders[order_id]
    assert order.version == 1
    versions = [1]
    change = world.advance(order_id, "propose")
    assert change is not None
    versions.append(order.version)
    body = loads_exact(dumps_exact(world.webhook_body(change)))
    event = tradecloud.normalize_order_webhook(body, received_at=NOW)
    assert event.version == order.version > 1
    assert len(event.order.lines) == len(change.line_ids) <= 4  # type: ignore[union-attr]
    assert all(line.in_progress_status == "OpenSupplierProposal" for line in event.order.lines)  # type: ignore[union-attr]
    polled = tradecloud.normalize_polled_order(
        loads_exact(world.order_json(order)), received_at=NOW
    )
    assert polled.version == event.version
    assert polled.idempotency_key == event.idempotency_key
    assert len(polled.order.lines) == 4  # type: ignore[union-attr]
    assert body["meta"]["messageId"] == change.message_id


def test_a_lifecycle_to_delivery_makes_a_shipment_the_normalizer_accepts() -> None:
    world = World(seed=11)
    order_id = world.issue_order(lines=1).document_id
    for step in ("accept", "produce", "ready", "ship"):
        world.advance(order_id, step)
    (shipment,) = world.shipments.values()
    shipment_change = world.changes[-1]
    assert shipment_change.kind == "shipment"
    event = tradecloud.normalize_shipment_webhook(
        loads_exact(dumps_exact(world.webhook_body(shipment_change))), received_at=NOW
    )
    assert event.document_id == shipment.id
    assert event.shipment is not None and event.shipment.lines[0].changed is True
    assert world.orders[order_id].logistics_status == "Shipped"
    world.advance(order_id, "deliver")
    assert world.orders[order_id].logistics_status == "Delivered"


def test_single_delivery_rendering_normalizes() -> None:
    world = World(seed=2)
    order_id = world.issue_order(lines=2, single_delivery=True).document_id
    order = world.orders[order_id]
    event = tradecloud.normalize_polled_order(
        loads_exact(world.order_json(order, single_delivery=True)), received_at=NOW
    )
    assert all(len(line.delivery_schedule) == 1 for line in event.order.lines)  # type: ignore[union-attr]
    assert "statusLine" in loads_exact(world.order_json(order, single_delivery=True))["lines"][0]


def test_impossible_steps_are_refused() -> None:
    world = World(seed=3)
    order_id = world.issue_order(lines=1).document_id
    with pytest.raises(ValueError, match="not possible"):
        world.advance(order_id, "deliver")


def test_a_run_of_same_millisecond_orders_straddles_every_page_boundary() -> None:
    world = World(seed=21)
    world.generate(1000)
    stamps = [order.updated_ms for order in world.orders_after(-1)]
    assert len(stamps) == 1000
    for boundary in range(100, 1000, 100):
        tied = stamps[boundary - 3 : boundary + 2]
        assert len(set(tied)) == 1, f"five orders share one millisecond around {boundary}"
        assert stamps[boundary - 4] < tied[0] < stamps[boundary + 2] or boundary + 2 >= 1000


def test_generate_spreads_the_history_over_a_span() -> None:
    world = World(seed=22)
    world.generate(200, span=timedelta(days=2))
    stamps = [order.updated_ms for order in world.orders_after(-1)]
    assert timedelta(hours=20) < timedelta(milliseconds=stamps[-1] - stamps[0]) < timedelta(days=3)


def test_every_change_renders_a_webhook_body_the_normalizers_accept() -> None:
    world = World(seed=23)
    world.generate(40)
    names = set()
    for _ in range(600):
        order_id = world.rng.choice(list(world.orders))
        before = len(world.changes)
        if world.advance(order_id) is None:
            continue
        for change in world.changes[before:]:
            names.add(change.event_name)
            assert change.line_ids or change.kind == "shipment", "no step touches zero lines"
            body = loads_exact(dumps_exact(world.webhook_body(change)))
            if change.kind == "shipment":
                event = tradecloud.normalize_shipment_webhook(body, received_at=NOW)
            else:
                event = tradecloud.normalize_order_webhook(body, received_at=NOW)
                assert event.version == world.orders[order_id].version
                assert event.event_name == change.event_name
            assert event.message_id == change.message_id
    for order in world.orders.values():
        polled = tradecloud.normalize_polled_order(
            loads_exact(world.order_json(order)), received_at=NOW
        )
        assert polled.process_status == order.process_status
    expected = {
        "OrderLinesAcceptedBySupplier",
        "OrderChangesProposedBySupplier",
        "OrderChangesProposalApprovedByBuyer",
        "OrderLinesReopenRequestedByBuyer",
        "OrderLinesReopenRequestedBySupplier",
        "OrderLinesReconfirmationRequestedByBuyer",
        "OrderLinesCancelledByBuyer",
        "OrderLinesMarkedAsDeliveredByBuyer",
        "ShipmentIssuedBySupplier",
        "ShipmentApprovedByBuyer",
        "OrderDocumentsAttachedBySupplier",
    }
    assert expected <= names, expected - names


def test_open_requests_show_in_progress_statuses_and_only_in_including_requests() -> None:
    world = World(seed=24)
    order_id = world.issue_order(lines=1).document_id
    world.advance(order_id, "accept")
    plain = loads_exact(world.order_json(world.orders[order_id]))["lines"][0]
    world.advance(order_id, "supplier_reopen")
    line = loads_exact(world.order_json(world.orders[order_id]))["lines"][0]
    assert line["status"] == {
        "processStatus": "InProgress",
        "logisticsStatus": "Open",
        "inProgressStatus": "OpenSupplierReopenRequest",
    }
    request = line["supplierLine"]["requests"]["reopenRequest"]
    assert request["status"] == "Open"
    assert line["deliverySchedule"] == plain["deliverySchedule"], "plain values stay as confirmed"
    assert (
        line["deliveryScheduleIncludingRequests"][0]["date"]
        == request["deliverySchedule"][0]["date"]
    )
    world.advance(order_id, "reject_supplier_reopen")
    line = loads_exact(world.order_json(world.orders[order_id]))["lines"][0]
    assert line["status"]["processStatus"] == "Confirmed"
    if world.orders[order_id].lines[0].keep_answered:  # still readable, answered
        assert line["supplierLine"]["requests"]["reopenRequest"]["status"] == "Rejected"
    else:
        assert "requests" not in line["supplierLine"]
    assert line["deliverySchedule"] == plain["deliverySchedule"]
    world.advance(order_id, "buyer_reopen")
    line = loads_exact(world.order_json(world.orders[order_id]))["lines"][0]
    assert line["status"]["inProgressStatus"] == "OpenBuyerReopenRequest"
    assert "reopenRequest" in line["buyerLine"]["requests"]
    world.advance(order_id, "approve_buyer_reopen")
    world.advance(order_id, "request_reconfirmation")
    line = loads_exact(world.order_json(world.orders[order_id]))["lines"][0]
    assert line["status"]["inProgressStatus"] == "OpenBuyerReconfirmationRequest"
    shown = line["buyerLine"].get("requests", {})
    assert all(r["status"] != "Open" for r in shown.values()), "a reconfirmation asks nothing new"
    world.advance(order_id, "reconfirm")
    assert world.orders[order_id].process_status == "Confirmed"


def test_versions_only_rise_and_sometimes_skip() -> None:
    world = World(seed=25)
    order_id = world.issue_order(lines=3).document_id
    versions = [world.orders[order_id].version]
    while (change := world.advance(order_id)) is not None and len(versions) < 40:
        if change.kind != "shipment":  # approving a shipment leaves the order as it is
            versions.append(world.orders[order_id].version)
    steps = [b - a for a, b in itertools.pairwise(versions)]
    assert all(step >= 1 for step in steps)
    assert any(step > 1 for step in steps), "versions skip (other lines, unsubscribed events)"


@pytest.mark.parametrize("meta", ["top", "inside", "both"])
@pytest.mark.parametrize(
    ("single_delivery", "legacy"), [(False, False), (True, False), (True, True)]
)
def test_webhook_body_flavours_all_normalize_to_the_same_message(
    meta: MetaPlacement, single_delivery: bool, legacy: bool
) -> None:
    world = World(seed=26)
    change = world.issue_order(lines=2, single_delivery=single_delivery)
    body = loads_exact(
        dumps_exact(
            world.webhook_body(change, single_delivery=single_delivery, meta=meta, legacy=legacy)
        )
    )
    field = "orderEvent"
    if single_delivery:
        field = "simpleOrderEvent" if legacy else "singleDeliveryOrderEvent"
    assert field in body and ("meta" in body) == (meta != "inside")
    assert ("meta" in body[field]) == (meta != "top")
    event = tradecloud.normalize_order_webhook(body, received_at=NOW)
    assert event.message_id == change.message_id
    assert event.trace_id == world.orders[change.document_id].trace_id


def test_a_document_renders_the_same_whenever_it_is_rendered() -> None:
    world = World(seed=27)
    world.generate(50)
    order = next(iter(world.orders.values()))
    before = world.order_json(order)
    for other in list(world.orders)[1:20]:
        world.advance(other)
    assert dumps_exact(world.order_document(order)) == before
    meta = loads_exact(before)["meta"]
    assert meta["createdDateTime"] == loads_exact(before)["lastUpdatedAt"]
    assert meta["source"]["companyId"] == BUYER_COMPANY, "the buyer started the order's flow"
