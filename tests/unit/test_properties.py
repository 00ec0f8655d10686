"""Properties over arbitrary and mutated JSON: only InvalidPayload, and lossless round trips."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import InvalidPayload
from shared.normalize import apicbase, tradecloud
from shared.normalize.fields import MAX_EXPONENT
from shared.schema.codec import (
    decode_event,
    dumps_exact,
    encode_event,
    encode_event_reference,
    loads_exact,
)
from shared.schema.models import CanonicalEvent
from tests.support.files import fixture

NOW = datetime(2026, 1, 1, tzinfo=UTC)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)

Normalizer = Callable[[Any], CanonicalEvent]
NORMALIZERS: dict[str, Normalizer] = {
    "order webhook": lambda d: tradecloud.normalize_order_webhook(d, received_at=NOW),
    "polled order": lambda d: tradecloud.normalize_polled_order(
        d,
        received_at=NOW,
        since="2026-01-01T00:00:00.000Z",
        role="buyer",
        echo_policy="own-open-requests",
    ),
    "shipment webhook": lambda d: tradecloud.normalize_shipment_webhook(d, received_at=NOW),
    "polled shipment": lambda d: tradecloud.normalize_polled_shipment(d, received_at=NOW),
    "apicbase": lambda d: apicbase.normalize_purchase_order(d, received_at=NOW, channel="api"),
}
SEEDS: dict[str, Any] = {
    "order webhook": fixture("tradecloud/order-webhook-proposal.json"),
    "polled order": fixture("tradecloud/poll-orders-page.json")["data"][1],
    "shipment webhook": fixture("tradecloud/shipment-webhook.json"),
    "polled shipment": fixture("tradecloud/poll-shipments-page.json")["data"][0],
    "apicbase": fixture("apicbase/purchase-order.json"),
}


def _normalize_or_reject(name: str, document: Any) -> CanonicalEvent | None:
    try:
        return NORMALIZERS[name](document)
    except InvalidPayload as exc:
        assert exc.path is not None
        return None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(NORMALIZERS)), document=json_values)
def test_arbitrary_json_yields_an_event_or_invalid_payload(name: str, document: Any) -> None:
    _normalize_or_reject(name, document)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SEEDS)), data=st.data(), replacement=json_values)
def test_mutated_documents_yield_an_event_or_invalid_payload(
    name: str, data: st.DataObject, replacement: Any
) -> None:
    document = copy.deepcopy(SEEDS[name])
    paths = [p for p in _paths(document) if p]
    target = data.draw(st.sampled_from(paths))
    parent = document
    for step in target[:-1]:
        parent = parent[step]
    parent[target[-1]] = replacement
    event = _normalize_or_reject(name, document)
    if event is not None:
        assert encode_event(event) == encode_event_reference(event)
        assert decode_event(encode_event(event)) == event


@settings(max_examples=200)
@given(
    # Every decimal the normalizers accept: at most 30 digits on either side of the point.
    quantity=st.decimals(
        allow_nan=False, allow_infinity=False, min_value=Decimal("-1e20"), max_value=Decimal("1e20")
    ).filter(lambda d: d.is_zero() or d.adjusted() >= -MAX_EXPONENT),
    number=st.text(min_size=1, max_size=20),
)
def test_encode_decode_round_trips(quantity: Decimal, number: str) -> None:
    document = copy.deepcopy(SEEDS["order webhook"])
    document["orderEvent"]["buyerOrder"]["purchaseOrderNumber"] = number
    document["orderEvent"]["lines"][0]["deliverySchedule"][0]["quantity"] = quantity
    document = loads_exact(dumps_exact(document))  # as if it had arrived over HTTP
    event = tradecloud.normalize_order_webhook(document, received_at=NOW)
    assert encode_event(event) == encode_event_reference(event)
    decoded = decode_event(encode_event(event))
    assert decoded == event
    assert decoded.order is not None
    assert decoded.order.lines[0].delivery_schedule[0]["quantity"] == quantity
    assert decoded.raw == document
