from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import orjson
import pytest

from shared.errors import InvalidPayload
from shared.normalize import apicbase, tradecloud
from shared.schema import codec
from shared.schema.codec import (
    decode_event,
    dumps_exact,
    encode_event,
    encode_event_reference,
    loads_exact,
)
from tests.support.files import fixture, fixture_bytes

NOW = datetime(2026, 2, 10, 9, 0, tzinfo=UTC)


def test_huge_decimals_never_pass_through_float() -> None:
    body = b'{"quantity": 1234.5678901234567890, "price": 78.90, "n": 3}'
    decoded = loads_exact(body)
    assert decoded == {
        "quantity": Decimal("1234.5678901234567890"),
        "price": Decimal("78.90"),
        "n": 3,
    }
    assert str(decoded["quantity"]) == "1234.5678901234567890"
    assert orjson.loads(body)["quantity"] != decoded["quantity"], "orjson alone would lose digits"
    assert dumps_exact(decoded) == b'{"quantity":1234.5678901234567890,"price":78.90,"n":3}'


def test_malformed_json_is_invalid_payload() -> None:
    with pytest.raises(InvalidPayload, match="not valid JSON"):
        loads_exact(b'{"eventName": ')
    with pytest.raises(InvalidPayload):
        loads_exact(b"NaN")


def test_event_round_trip_keeps_raw_numbers_exact() -> None:
    event = tradecloud.normalize_order_webhook(
        fixture("tradecloud/order-webhook-proposal.json"), received_at=NOW
    )
    body = encode_event(event)
    assert decode_event(body) == event
    wire = orjson.loads(body)
    line = wire["order"]["lines"][0]
    assert line["delivery_schedule"][0]["quantity"] == "1234.5678901234567890"  # normalized: string
    assert b'"quantity":1234.5678901234567890' in body  # raw: the exact JSON number
    assert b'"value":78.90' in body
    assert list(wire)[-1] == "raw"


def test_apicbase_event_round_trip() -> None:
    event = apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.pretty-utf8.json"), received_at=NOW, channel="webhook"
    )
    assert decode_event(encode_event(event)) == event


def test_decode_rejects_non_events_with_a_path() -> None:
    with pytest.raises(InvalidPayload) as info:
        decode_event(b'{"schema_version": 1}')
    assert info.value.path  # names the first missing field


def test_raw_is_lossless_against_the_original_bytes() -> None:
    original = fixture_bytes("tradecloud/order-webhook-proposal.json")
    event = tradecloud.normalize_order_webhook(loads_exact(original), received_at=NOW)
    raw_again = orjson.loads(dumps_exact(event.raw))
    # Same structure; every number identical as text when compared exactly.
    assert loads_exact(dumps_exact(event.raw)) == loads_exact(original)
    assert raw_again["orderEvent"]["orderId"] == "b7e2c1d0-4f3a-4e8b-9c1d-2a3b4c5d6e7f"


@pytest.mark.parametrize(
    "received_at",
    [
        NOW,
        datetime(2026, 2, 10, 9, 0, 0, 123400, tzinfo=UTC),
        datetime(2026, 2, 10, 9, 0, 0, 1, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 2, 10, 9, 0, tzinfo=timezone(timedelta(0))),
        datetime(2026, 2, 10, 9, 0, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    ],
    ids=["utc", "utc-micros", "plus-one-micro", "zero-offset", "minus-three-thirty"],
)
def test_fast_encoding_is_byte_equal_to_pydantic(received_at: datetime) -> None:
    """The fast path must write exactly what pydantic's serializer (the reference) writes."""
    for name, normalize in [
        ("tradecloud/order-webhook-proposal.json", tradecloud.normalize_order_webhook),
        ("tradecloud/shipment-webhook.json", tradecloud.normalize_shipment_webhook),
    ]:
        event = normalize(fixture(name), received_at=received_at)
        assert encode_event(event) == encode_event_reference(event)
    event = apicbase.normalize_purchase_order(
        fixture("apicbase/purchase-order.pretty-utf8.json"), received_at=received_at, channel="api"
    )
    assert encode_event(event) == encode_event_reference(event)


def test_integers_beyond_64_bits_in_raw_are_written_as_their_digits() -> None:
    document = fixture("tradecloud/order-webhook-proposal.json")
    document["orderEvent"]["futureCounter"] = 2**70
    event = tradecloud.normalize_order_webhook(document, received_at=NOW)
    body = encode_event(event)
    assert body == encode_event_reference(event)
    assert decode_event(body).raw["orderEvent"]["futureCounter"] == 2**70


def test_a_version_beyond_64_bits_is_refused() -> None:
    """The version travels in an AMQP header, a signed 64-bit integer."""
    document = fixture("tradecloud/order-webhook-proposal.json")
    document["orderEvent"]["version"] = 2**70
    with pytest.raises(InvalidPayload) as caught:
        tradecloud.normalize_order_webhook(document, received_at=NOW)
    assert caught.value.path == "orderEvent.version"


# --- nesting depth (issue 14) ----------------------------------------------------------


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [1, 10, codec.MAX_DEPTH])
def test_documents_nested_up_to_the_bound_decode(depth: int) -> None:
    assert codec.loads_exact(_nested(depth)) is not None
    assert codec.loads_exact(_nested(depth).decode()) is not None


@pytest.mark.parametrize(
    "body",
    [
        _nested(codec.MAX_DEPTH + 1),
        _nested(300),
        b"[" * 5000 + b"]" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
        b'{"lines":[' + b'{"a":1},' * 200 + b"[" * 70 + b"]" * 70 + b"]}",
    ],
    ids=["bound+1", "300 objects", "5000 arrays", "100000 arrays", "deep after many flat"],
)
def test_documents_nested_beyond_the_bound_are_refused(body: bytes) -> None:
    with pytest.raises(codec.NestedTooDeep) as caught:
        codec.loads_exact(body)
    assert caught.value.path == "body"


def test_a_wide_flat_document_is_not_mistaken_for_a_deep_one() -> None:
    body = b"[" + b",".join(b'{"a":[1,{"b":2}]}' for _ in range(5000)) + b"]"
    assert len(codec.loads_exact(body)) == 5000
