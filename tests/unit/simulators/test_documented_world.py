"""The Tradecloud world's documented mode: what the platform may do beyond our habits.

Each situation once on demand (a named step with its options) and all of them
at random (a long seeded run in documented mode). Pure: no network.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from services.simulators.tradecloud.world import (
    Change,
    Order,
    StepOptions,
    World,
    iso_ms,
    parse_ms,
)
from shared.schema.codec import dumps_exact, loads_exact

ZONELESS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}$")
ZONED = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _polled(world: World, order: Order) -> dict[str, Any]:
    document: dict[str, Any] = loads_exact(world.order_json(order))
    return document


def _body(world: World, change: Change) -> dict[str, Any]:
    body: dict[str, Any] = loads_exact(dumps_exact(world.webhook_body(change)))
    return body


def _confirmed_order(world: World, lines: int = 2) -> Order:
    order_id = world.issue_order(lines=lines, zoneless=False).document_id
    order = world.orders[order_id]
    while any(line.process == "Issued" for line in order.lines):
        world.advance(order_id, "accept")
    return order


def test_documented_mode_is_off_by_default_and_seeded_when_on() -> None:
    plain = World(seed=4)
    plain.generate(30)
    assert not plain.documented
    assert all(
        step not in ("reassign_contact", "resend")
        for order in plain.orders.values()
        for step in plain.possible_steps(order)
    )
    first, second = World(seed=4, documented=True), World(seed=4, documented=True)
    for world in (first, second):
        world.generate(120)
        for _ in range(300):
            world.advance(world.rng.choice(list(world.orders)))
    assert [first.order_json(o) for o in first.orders.values()] == [
        second.order_json(o) for o in second.orders.values()
    ]
    assert [c.message_id for c in first.changes] == [c.message_id for c in second.changes]


@pytest.mark.parametrize(
    ("step", "by", "event_name", "field"),
    [
        ("reassign_contact", "buyer", "OrderContactReassignedByBuyer", "buyerOrder"),
        ("reassign_contact", "supplier", "OrderContactReassignedBySupplier", "supplierOrder"),
        ("update_labels", "buyer", "OrderCustomLabelsUpdatedByBuyer", "buyerOrder"),
    ],
)
@pytest.mark.parametrize("lines", ["empty", "omit"])
def test_header_only_changes_move_the_order_but_no_line(
    step: Any, by: Any, event_name: str, field: str, lines: Any
) -> None:
    world = World(seed=31, documented=True)
    order = _confirmed_order(world, lines=3)
    before = _polled(world, order)
    change = world.advance(order.id, step, StepOptions(by=by, lines=lines))
    assert change is not None and change.event_name == event_name
    after = _polled(world, order)
    assert after["version"] > before["version"]
    assert parse_ms(after["lastUpdatedAt"]) > parse_ms(before["lastUpdatedAt"])
    assert [ln["lastUpdatedAt"] for ln in after["lines"]] == [
        ln["lastUpdatedAt"] for ln in before["lines"]
    ], "no line is re-stamped"
    if step == "reassign_contact":
        assert after[field]["contact"] != before[field]["contact"]
    else:
        assert after[field]["customLabels"] != before[field].get("customLabels")
        assert after[field]["customLabels"] == world.orders[order.id].buyer_labels
    event = _body(world, change)["orderEvent"]
    assert event["version"] == after["version"]
    assert event["lastUpdatedAt"] == after["lastUpdatedAt"]
    if lines == "empty":
        assert event["lines"] == []
    else:
        assert "lines" not in event
    assert _body(world, change)["meta"]["messageId"] == after["meta"]["messageId"]


def test_header_only_events_carry_no_lines_in_both_forms_at_random() -> None:
    world = World(seed=32, documented=True)
    order = _confirmed_order(world)
    forms: Counter[bool] = Counter()
    for _ in range(30):
        change = world.advance(order.id, "reassign_contact")
        assert change is not None
        forms["lines" in _body(world, change)["orderEvent"]] += 1
    assert forms[True] and forms[False], forms


def test_a_resend_shares_the_version_and_the_stamps_and_carries_every_line() -> None:
    world = World(seed=33, documented=True)
    order = _confirmed_order(world, lines=3)
    before = _polled(world, order)
    change = world.advance(order.id, "resend")
    assert change is not None and change.event_name == "OrderResentByBuyer"
    assert _polled(world, order) == before, "nothing changed"
    event = _body(world, change)
    assert event["orderEvent"]["version"] == before["version"]
    assert len(event["orderEvent"]["lines"]) == 3
    assert event["meta"]["messageId"] != before["meta"]["messageId"], "a new message"


@pytest.mark.parametrize("by", ["buyer", "supplier"])
def test_documents_events_do_not_bump_the_version(by: Any) -> None:
    world = World(seed=34, documented=True)
    order = _confirmed_order(world, lines=2)
    version = order.version
    line_change = world.advance(order.id, "attach_document", StepOptions(by=by))
    header_change = world.advance(
        order.id, "attach_order_document", StepOptions(by=by, lines="empty")
    )
    assert line_change is not None and header_change is not None
    for change in (line_change, header_change):
        assert change.kind == "order_documents"
        assert change.event_name == f"OrderDocumentsAttachedBy{by.title()}"
        assert change.version == version
    assert order.version == version
    line_event = _body(world, line_change)["orderDocumentsEvent"]
    ((line,),) = [line_event["lines"]]
    side = "buyerLine" if by == "buyer" else "supplierLine"
    assert line[side]["documents"][0]["objectId"]
    header_event = _body(world, header_change)["orderDocumentsEvent"]
    assert header_event["lines"] == [] and header_event["version"] == version
    attached = header_event[f"{by}Order"]["documents"][0]
    assert attached["name"].endswith(f"{order.number}.pdf") and attached["description"]
    polled = _polled(world, order)
    assert polled["version"] == version
    assert polled[f"{by}Order"]["documents"], "the poll shows the new document"


def test_one_command_makes_two_events_at_one_version() -> None:
    world = World(seed=35, documented=True)
    order = _confirmed_order(world, lines=2)
    before = len(world.changes)
    first = world.advance(order.id, "line_and_logistics_update")
    changes = world.changes[before:]
    assert first is changes[0] and len(changes) == 2
    update, logistics = changes
    assert update.event_name == "OrderLinesUpdatedBySupplier"
    assert logistics.event_name == "OrderLinesDeliveryScheduleLogisticsUpdatedBySupplier"
    assert update.version == logistics.version == order.version
    assert update.updated_ms == logistics.updated_ms == order.updated_ms
    assert update.message_id != logistics.message_id
    assert set(update.line_ids).isdisjoint(logistics.line_ids)
    bodies = [_body(world, change) for change in changes]
    assert {b["orderEvent"]["version"] for b in bodies} == {order.version}
    assert _polled(world, order)["meta"]["messageId"] == logistics.message_id


def test_an_unsubscribed_change_moves_the_order_but_not_its_message_meta() -> None:
    world = World(seed=36, documented=True)
    order = _confirmed_order(world, lines=2)
    before = _polled(world, order)
    change = world.advance(order.id, "change_item_details")
    assert change is not None and change.event_name == "OrderLinesItemDetailsChanged"
    assert not change.subscribed
    after = _polled(world, order)
    assert after["version"] > before["version"]
    assert parse_ms(after["lastUpdatedAt"]) > parse_ms(before["lastUpdatedAt"])
    (touched,) = [ln for ln in after["lines"] if ln["id"] in change.line_ids]
    assert touched["mergedItemDetails"]["batchNumber"]
    assert after["meta"] == before["meta"], "no message was sent: the poll shows the old one"
    indicators = world.advance(order.id, "update_indicators")
    assert indicators is not None and not indicators.subscribed and not indicators.line_ids
    assert _polled(world, order)["indicators"]["deliveryOverdue"] is True
    forced = world.advance(order.id, "reassign_contact", StepOptions(subscribed=False))
    assert forced is not None and not forced.subscribed
    assert _polled(world, order)["meta"]["messageId"] == before["meta"]["messageId"]


def test_any_step_can_be_unsubscribed_and_any_unsubscribed_event_subscribed() -> None:
    world = World(seed=37, documented=True)
    order_id = world.issue_order(lines=1).document_id
    meta = _polled(world, world.orders[order_id])["meta"]
    accept = world.advance(order_id, "accept", StepOptions(subscribed=False))
    assert accept is not None and not accept.subscribed
    assert _polled(world, world.orders[order_id])["meta"] == meta
    details = world.advance(order_id, "change_item_details", StepOptions(subscribed=True))
    assert details is not None and details.subscribed
    assert _polled(world, world.orders[order_id])["meta"]["messageId"] == details.message_id


def test_zoneless_documents_keep_zoned_cursors_and_parse_as_utc() -> None:
    world = World(seed=38, documented=True)
    zoneless = world.orders[world.issue_order(lines=2, zoneless=True).document_id]
    zoned = world.orders[world.issue_order(lines=2, zoneless=False).document_id]
    document = _polled(world, zoneless)
    stamps = [document["lastUpdatedAt"], *(ln["lastUpdatedAt"] for ln in document["lines"])]
    assert all(ZONELESS.match(stamp) for stamp in stamps), stamps
    assert parse_ms(document["lastUpdatedAt"]) == zoneless.updated_ms, "zone-less reads as UTC"
    assert ZONED.match(document["meta"]["createdDateTime"]), "meta keeps its zone"
    assert ZONED.match(_polled(world, zoned)["lastUpdatedAt"])
    world.set_zoneless(zoned.id)
    assert ZONELESS.match(_polled(world, zoned)["lastUpdatedAt"])
    event = _body(world, world.changes[0])["orderEvent"]
    assert ZONELESS.match(event["lastUpdatedAt"])
    # The documented world mixes both forms at random.
    world.generate(60)
    forms = {
        bool(ZONELESS.match(_polled(world, o)["lastUpdatedAt"])) for o in world.orders.values()
    }
    assert forms == {True, False}


def _shipment_lines(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every line of a shipment: loose ones and those inside load carriers."""
    inside = [line for carrier in document["loadCarriers"] for line in carrier["lines"]]
    return [*inside, *document["lines"]]


def _shipped(world: World, lines: int = 2) -> tuple[Order, str]:
    order = _confirmed_order(world, lines=lines)
    for line in order.lines:
        line.logistics = "ReadyToShip"
    while any(line.logistics != "Shipped" for line in order.lines):
        world.advance(order.id, "ship")
    shipment_ids = world._shipments_of[order.id]
    return order, shipment_ids[0]


@pytest.mark.parametrize("action", ["approve", "reject", "locations", "erp_meta"])
def test_shipment_status_and_header_changes_restamp_no_line(action: str) -> None:
    world = World(seed=39, documented=True)
    _, shipment_id = _shipped(world)
    shipment = world.shipments[shipment_id]
    world.set_zoneless(shipment_id, False)
    before = loads_exact(world.shipment_json(shipment))
    if action == "approve":
        change = world.approve_shipment(shipment_id)
    elif action == "reject":
        change = world.reject_shipment(shipment_id, "Wrong delivery address")
    else:
        change = world.update_shipment_header(shipment_id, action)  # type: ignore[arg-type]
    after = loads_exact(dumps_exact(world.webhook_body(change)))["shipment"]
    assert parse_ms(after["meta"]["lastUpdatedAt"]) > parse_ms(before["meta"]["lastUpdatedAt"])
    assert [ln["meta"]["lastUpdatedAt"] for ln in after["lines"]] == [
        ln["meta"]["lastUpdatedAt"] for ln in before["lines"]
    ]
    assert all(
        ln["meta"]["lastUpdatedAt"] != after["meta"]["lastUpdatedAt"] for ln in after["lines"]
    ), "no line counts as changed (api-facts §1.1)"
    assert change.line_ids == ()
    if action == "approve":
        assert after["status"] == {"processStatus": "Approved"}
    elif action == "reject":
        assert after["status"] == {
            "processStatus": "Rejected",
            "processStatusReason": "Wrong delivery address",
        }
    elif action == "locations":
        assert after["locations"]["departure"]["atdDate"]
        assert after["locations"]["destinations"][0]["etaStartDate"]
        assert after["locations"] != before["locations"]
    else:
        assert after["meta"]["supplierErpMeta"]["despatchAdviceRevision"] == "1"


def test_a_reissued_shipment_restamps_only_the_changed_line() -> None:
    world = World(seed=40, documented=True)
    order = _confirmed_order(world, lines=3)
    for line in order.lines:
        line.logistics = "ReadyToShip"
    world.advance(order.id, "ship")
    (shipment_id,) = world._shipments_of[order.id]
    assert len(world.shipments[shipment_id].lines) >= 2, "the seed ships several lines at once"
    change = world.reissue_shipment(shipment_id)
    document = loads_exact(world.shipment_json(world.shipments[shipment_id]))
    own = document["meta"]["lastUpdatedAt"]
    changed = [ln for ln in _shipment_lines(document) if ln["meta"]["lastUpdatedAt"] == own]
    assert len(changed) == 1 and len(change.line_ids) == 1


def test_the_default_world_still_stamps_every_shipment_line_with_the_shipment() -> None:
    world = World(seed=41)
    order_id = world.issue_order(lines=1).document_id
    for step in ("accept", "produce", "ship"):
        world.advance(order_id, step)
    (shipment,) = world.shipments.values()
    change = world.approve_shipment(shipment.id)
    document = loads_exact(world.shipment_json(shipment))
    assert (
        _shipment_lines(document)[0]["meta"]
        == {"lastUpdatedAt": document["meta"]["lastUpdatedAt"]}
        == {"lastUpdatedAt": iso_ms(change.updated_ms)}
    )


def test_a_deleted_order_leaves_polls_and_gets_a_get_only_change() -> None:
    world = World(seed=42, documented=True)
    order, shipment_id = _shipped(world, lines=1)
    change = world.delete_order(order.id)
    assert change.get_only and change.line_ids == ()
    assert order.id not in world.orders and order.id in world.deleted
    assert order.id not in {o.id for o in world.orders_after(-1)}
    # Its shipment still renders (it names the order by number, not id).
    shipment = loads_exact(world.shipment_json(world.shipments[shipment_id]))
    assert _shipment_lines(shipment)[0]["purchaseOrderNumber"] == order.number


def test_every_documented_situation_occurs_in_a_long_random_run() -> None:
    world = World(seed=43, documented=True)
    world.generate(150)
    for _ in range(2500):
        order_id = world.rng.choice(list(world.orders))
        world.advance(order_id)
    changes = world.changes
    names = Counter(change.event_name for change in changes)
    for name in (
        "OrderContactReassignedByBuyer",
        "OrderContactReassignedBySupplier",
        "OrderCustomLabelsUpdatedByBuyer",
        "OrderResentByBuyer",
        "OrderDocumentsAttachedByBuyer",
        "OrderDocumentsAttachedBySupplier",
        "OrderLinesUpdatedBySupplier",
        "OrderLinesItemDetailsChanged",
        "OrderIndicatorsUpdated",
        "ShipmentApprovedByBuyer",
        "ShipmentRejectedByBuyer",
        "ShipmentHeaderUpdatedBySupplier",
        "ShipmentReissuedBySupplier",
    ):
        assert names[name], name
    header_only = [c for c in changes if c.kind == "order" and not c.line_ids and c.subscribed]
    assert {c.lines_key for c in header_only if c.event_name != "OrderResentByBuyer"} == {
        True,
        False,
    }
    assert any(not c.subscribed for c in changes)
    # Several messages at one version of one order: documents, resends, two-event commands.
    at_version = Counter((c.document_id, c.version) for c in changes if c.kind != "shipment")
    assert sum(count > 1 for count in at_version.values()) > 20
    pairs = Counter(
        (c.document_id, c.version, c.updated_ms)
        for c in changes
        if c.event_name.startswith("OrderLines") and c.subscribed
    )
    assert any(count > 1 for count in pairs.values()), "two events of one command"
    zoneless = [o for o in world.orders.values() if o.zoneless]
    assert 0 < len(zoneless) < len(world.orders)
    assert any(s.zoneless for s in world.shipments.values())
    # Everything still renders.
    for change in changes:
        if change.kind != "shipment" and change.document_id in world.orders:
            _body(world, change)
