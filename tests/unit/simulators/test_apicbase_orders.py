"""The Apicbase order book alone: determinism, documented shapes, filters, signatures."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from services.ingress.verify import ApicbaseSignature, SignatureMismatch
from services.simulators.apicbase.orders import (
    ZONE,
    OrderBook,
    OrderGenerator,
    Query,
    QueryError,
    parse_query,
)
from services.simulators.apicbase.webhooks import pretty_form, signature, signed_form
from shared.clients.apicbase import ApicbaseSettings
from shared.normalize.apicbase import normalize_purchase_order
from tests.support.files import SAMPLES

RECEIVED = datetime(2026, 1, 6, 9, 0, tzinfo=UTC)


def _book(seed: int, count: int) -> OrderBook:
    book = OrderBook(OrderGenerator(seed))
    book.generate_history(count)
    return book


def test_the_seed_decides_every_order() -> None:
    first = [o.api_json() for o in _book(11, 60).orders.values()]
    again = [o.api_json() for o in _book(11, 60).orders.values()]
    other = [o.api_json() for o in _book(12, 60).orders.values()]
    assert first == again
    assert first != other
    assert len({o["id"] for o in first}) == 60
    assert len({o["order_number"] for o in first}) == 60


def test_orders_have_the_documented_shape_and_its_awkward_values() -> None:
    orders = [o.document() for o in _book(3, 300).orders.values()]
    keys = [
        "id",
        "order_number",
        "status",
        "ordered_on",
        "owned_by",
        "order_remarks",
        "packages",
        "expected_delivery_date",
        "theoretical_price",
        "supplier_customer_number",
    ]
    for order in orders:
        assert list(order) == keys, "§5.3 fields, in the documented order"
        total = Decimal(0)
        for package in order["packages"]:
            price = package["supplier_package"]["theoretical_price_per_package"]
            assert isinstance(price, str) and Decimal(price) == Decimal(price).quantize(
                Decimal("0.01")
            )
            assert type(package["quantity_ordered"]) is int
            line_total = package["total_theoretical_price"]
            assert Decimal(line_total) == Decimal(price) * package["quantity_ordered"]
            total += Decimal(line_total)
        assert isinstance(order["theoretical_price"], str)
        assert Decimal(order["theoretical_price"]) == total
        assert datetime.fromisoformat(order["ordered_on"]).tzinfo is not None
    names = {p["stock_item"]["name"] for o in orders for p in o["packages"]}
    assert any(not name.isascii() for name in names)
    assert any(any(ord(c) > 0xFFFF for c in name) for name in names), "a non-BMP character"
    assert any(o["order_remarks"] is None for o in orders)
    assert any(o["order_remarks"] is not None for o in orders)
    assert any(o["owned_by"] is None for o in orders)
    expected = [o["expected_delivery_date"] for o in orders]
    assert None in expected
    assert any(e is not None and "T" not in e for e in expected), "date-only"
    assert any(e is not None and "T" in e for e in expected), "date-time"
    for text in filter(None, expected):
        (date.fromisoformat if "T" not in text else datetime.fromisoformat)(text)


def test_history_has_delivered_fetched_orders_and_ordered_on_ties() -> None:
    book = _book(5, 300)
    orders = list(book.orders.values())
    delivered = [o for o in orders if o.status == "DELIVERED"]
    assert len(delivered) == 100
    assert all(o.fetched_at and o.viewed_at and o.viewed_at > o.fetched_at for o in delivered)
    waiting = [o for o in orders if o.status == "ORDERED"]
    assert all(o.fetched_at is None and o.viewed_at is None for o in waiting)
    stamps = [o.ordered_on for o in orders]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) < len(stamps), "some orders share one ordered_on"


def test_query_filters_and_orderings() -> None:
    book = _book(7, 90)
    orders = list(book.orders.values())
    assert [o.id for o in book.query(Query())] == [o.id for o in reversed(orders)]
    oldest_first = book.query(Query(ordering="ordered_on"))
    assert [o.id for o in oldest_first] == [o.id for o in orders]
    assert {o.status for o in book.query(Query(status="DELIVERED"))} == {"DELIVERED"}
    unfetched = book.query(Query(status="ORDERED", fetched_by_supplier=False))
    assert len(unfetched) == 60
    middle = orders[45].ordered_on
    after = book.query(Query(ordered_on_gt=middle))
    assert after and all(o.ordered_on > middle for o in after), "strictly after"
    by_number = book.query(Query(ordering="-order_number"))
    assert [o.order_number for o in by_number] == sorted(
        (o.order_number for o in orders), reverse=True
    )
    cart = book.add(RECEIVED)
    assert cart.status == "IN_PROGRESS"
    assert cart.id not in {o.id for o in book.query(Query())}, "carts are not sent"


def test_parse_query_validates_like_django_filter() -> None:
    query = parse_query(
        {
            "status": "ORDERED",
            "ordered_on__gt": "2026-01-05T10:00:00+01:00",
            "fetched_by_supplier": "false",
            "viewed_by_supplier": "True",
            "ordering": "ordered_on,order_number",
            "unknown": "ignored",
        }
    )
    assert query == Query(
        status="ORDERED",
        ordered_on_gt=datetime(2026, 1, 5, 9, 0, tzinfo=UTC),
        fetched_by_supplier=False,
        viewed_by_supplier=True,
        ordering="ordered_on",
    )
    naive = parse_query({"ordered_on__gt": "2026-01-05"}).ordered_on_gt
    assert naive == datetime(2026, 1, 5, tzinfo=ZONE), "a bare date is Brussels midnight"
    assert parse_query({"ordering": "price"}).ordering == "-ordered_on"
    for params, field in (
        ({"status": "IN_PROGRESS"}, "status"),
        ({"ordered_on__gt": "yesterday"}, "ordered_on__gt"),
        # An unencoded "+" arrives as a space: refused, as on the real server.
        ({"ordered_on__gt": "2026-01-05T10:00:00 01:00"}, "ordered_on__gt"),
        ({"fetched_by_supplier": "yes"}, "fetched_by_supplier"),
    ):
        with pytest.raises(QueryError) as info:
            parse_query(params)
        assert info.value.field == field


def test_marks_are_irreversible_and_keep_their_first_stamp() -> None:
    book = _book(2, 9)
    order = next(o for o in book.orders.values() if o.fetched_at is None)
    first = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    book.mark([order.id], fetched=True, viewed=False, now=first)
    book.mark([order.id], fetched=True, viewed=True, now=first.replace(hour=13))
    item = order.api_json()
    assert item["fetched_by_supplier"] is True and item["viewed_by_supplier"] is True
    assert datetime.fromisoformat(item["fetched_by_supplier_at"]) == first
    assert datetime.fromisoformat(item["viewed_by_supplier_at"]) == first.replace(hour=13)


def test_webhook_and_api_copies_normalize_to_one_idempotency_key() -> None:
    for order in _book(9, 120).orders.values():
        pushed = normalize_purchase_order(
            json.loads(signed_form(order.document())), received_at=RECEIVED, channel="webhook"
        )
        listed = normalize_purchase_order(order.api_json(), received_at=RECEIVED, channel="api")
        assert pushed.idempotency_key == listed.idempotency_key
        assert pushed.event_id != listed.event_id, "one delivery per channel"
        assert pushed.document_id == order.id
        assert len(pushed.order.lines) == len(order.packages)  # type: ignore[union-attr]


def test_both_body_forms_verify_with_the_ingress_signature_check() -> None:
    secret = b"test-client-secret"
    check = ApicbaseSignature.of([secret])
    for order in _book(4, 40).orders.values():
        document = order.document()
        header = signature(secret, document)
        compact, pretty = signed_form(document), pretty_form(document)
        assert compact == json.dumps(document).encode() and compact.isascii()
        assert pretty != compact and json.loads(pretty) == document
        assert check.check(compact, header) == "raw"
        assert check.check(pretty, header) == "reserialized"
        with pytest.raises(SignatureMismatch):
            ApicbaseSignature.of([b"other"]).check(compact, header)


def test_the_sample_test_vector_signs_as_the_simulator_does() -> None:
    sample = SAMPLES / "constructed" / "apicbase-purchase-order.constructed.json"
    if not sample.exists():
        pytest.skip(f"steering-kit sample {sample} absent; the vector check needs it")
    document = json.loads(sample.read_bytes())
    assert signed_form(document) == sample.read_bytes()
    digest = "2b93dd5065b46d2aca8097a09c0cd2a59b4a4333dee0dc243f74e89885bad34c"
    assert signature(b"test-client-secret", document) == digest


def test_client_settings_read_the_environment_and_hide_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERBRIDGE_APICBASE_CLIENT_ID", "my-client")
    monkeypatch.setenv("ORDERBRIDGE_APICBASE_CLIENT_SECRET", "s3cret-value")
    monkeypatch.setenv("ORDERBRIDGE_APICBASE_REFRESH_TOKEN", "r3fresh-value")
    settings = ApicbaseSettings()
    assert settings.apicbase_api_url == "https://api.apicbase.com"
    assert settings.configured()
    assert settings.apicbase_client_id == "my-client"
    shown = repr(settings) + str(settings.model_dump())
    assert "s3cret-value" not in shown and "r3fresh-value" not in shown
    assert settings.apicbase_refresh_token is not None
    assert settings.apicbase_refresh_token.get_secret_value() == "r3fresh-value"
