from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.errors import InvalidPayload
from shared.normalize import apicbase
from tests.support.files import fixture

NOW = datetime(2026, 2, 9, 16, 22, 6, tzinfo=UTC)


def test_purchase_order_becomes_an_issued_open_order() -> None:
    event = apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.json"), received_at=NOW, channel="webhook"
    )
    assert (event.source, event.channel, event.kind) == ("apicbase", "webhook", "order")
    assert (event.process_status, event.logistics_status) == ("Issued", "Open")
    assert event.document_id == "f3e2d1c0-b9a8-4765-8432-10fedcba9876"
    assert event.document_number == "PO-2026-004711"
    assert event.version is None and event.message_id is None
    assert event.idempotency_key.startswith("apicbase:order:f3e2d1c0-b9a8-4765-8432-10fedcba9876:h")
    order = event.order
    assert order is not None and order.lines_complete
    assert order.buyer.account_number == "RESTO-0099"
    assert order.buyer.contact == "s.dubois"
    assert order.remarks is None
    assert order.total_amount == Decimal("1383.3678901234567890")
    assert order.expected_delivery_date == {"text": "2026-02-12", "kind": "date", "utc": None}
    assert order.ordered_on is not None
    assert order.ordered_on["utc"] == datetime(2026, 2, 9, 16, 22, 5, 118204, UTC)
    gruyere, creme, oil = order.lines
    assert gruyere.position == "1" and gruyere.item["name"] == "Gruyère AOP 1kg"
    assert gruyere.item["number"] == "KAAS-0031"
    assert gruyere.delivery_schedule[0]["quantity"] == Decimal(4)
    assert str(gruyere.total_amount) == "75.60"
    assert creme.prices is not None
    assert str(creme.prices["net"]["transaction"]["value"]) == "1234.5678901234567890"  # type: ignore[index]
    assert oil.item["name"] == "Naïve sésame oil 500ml"


def test_webhook_and_api_copies_share_the_idempotency_key() -> None:
    body = fixture("apicbase/purchase-order.json")
    from_api = dict(
        body,
        fetched_by_supplier=False,
        fetched_by_supplier_at=None,
        viewed_by_supplier=False,
        viewed_by_supplier_at=None,
    )
    by_webhook = apicbase.normalize_purchase_order(body, received_at=NOW, channel="webhook")
    by_api = apicbase.normalize_purchase_order(from_api, received_at=NOW, channel="api")
    assert by_webhook.idempotency_key == by_api.idempotency_key
    assert by_webhook.event_id != by_api.event_id


def test_pretty_utf8_copy_is_the_same_order() -> None:
    compact = apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.json"), received_at=NOW, channel="webhook"
    )
    pretty = apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.pretty-utf8.json"), received_at=NOW, channel="webhook"
    )
    assert pretty.idempotency_key == compact.idempotency_key
    assert pretty.order == compact.order


def test_a_changed_order_gets_another_key() -> None:
    body = fixture("apicbase/purchase-order.json")
    changed = dict(body, packages=body["packages"][:1])
    first = apicbase.normalize_purchase_order(body, received_at=NOW, channel="api")
    second = apicbase.normalize_purchase_order(changed, received_at=NOW, channel="api")
    assert first.idempotency_key != second.idempotency_key


def test_unknown_status_passes_through() -> None:
    body = dict(fixture("apicbase/purchase-order.json"), status="ON_HOLD")
    event = apicbase.normalize_purchase_order(body, received_at=NOW, channel="api")
    assert (event.process_status, event.logistics_status) == ("ON_HOLD", None)


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda b: b.pop("id"), "id"),
        (lambda b: b.pop("packages"), "packages"),
        (lambda b: b.update(theoretical_price="12,50"), "theoretical_price"),
        (lambda b: b["packages"][0].update(quantity_ordered="six"), "packages[0].quantity_ordered"),
        (lambda b: b["packages"].append("x"), "packages[3]"),
    ],
)
def test_invalid_orders_name_the_field(mutate: object, path: str) -> None:
    body = fixture("apicbase/purchase-order.json")
    mutate(body)  # type: ignore[operator]
    with pytest.raises(InvalidPayload) as info:
        apicbase.normalize_purchase_order(body, received_at=NOW, channel="webhook")
    assert info.value.path == path
