"""Ingress over loopback HTTP against the real RabbitMQ (private vhost).

A queue bound to ``orderbridge.events`` with ``#`` sees exactly what was
accepted, byte for byte, with the documented routing key; refused input
publishes nothing (proved with a sentinel: a later accepted event arrives
first).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
from aio_pika.abc import AbstractRobustConnection

from services.ingress.testing import FakeFetcher, RecordingQuarantine
from services.ingress.verify import ApicbaseSignature, sign
from shared.broker.publisher import RabbitPublisher
from shared.normalize import apicbase, tradecloud
from shared.schema.codec import encode_event, loads_exact
from shared.schema.models import CanonicalEvent
from tests.support.files import SAMPLES, fixture, fixture_bytes, samples_available
from tests.support.ingress import (
    APICBASE_SECRET,
    BASIC,
    BEARER,
    JSON_CT,
    NOW,
    SIGNATURES,
    EventTap,
    client,
    post,
    serve,
    test_deps,
)

pytestmark = pytest.mark.integration

GET_ORDER = fixture("tradecloud/get-order.json")
GET_SHIPMENT = fixture("tradecloud/poll-shipments-page.json")["data"][0]
SAMPLE_KEY = b"test-client-secret"


@pytest.fixture
async def tap(connection: AbstractRobustConnection) -> AsyncIterator[EventTap]:
    events = await EventTap.open(connection)
    yield events
    await events.close()


@pytest.fixture
async def base(publisher: RabbitPublisher) -> AsyncIterator[str]:
    fetcher = FakeFetcher(
        orders={GET_ORDER["id"]: GET_ORDER}, shipments={GET_SHIPMENT["id"]: GET_SHIPMENT}
    )
    apicbase_keys = ApicbaseSignature.of([APICBASE_SECRET.encode(), SAMPLE_KEY])
    deps = test_deps(
        publisher, fetcher=fetcher, apicbase=apicbase_keys, quarantine=RecordingQuarantine()
    )
    async with serve(deps) as (url, _):
        yield url


def _order(name: str) -> tuple[bytes, CanonicalEvent]:
    body = fixture_bytes(f"tradecloud/{name}.json")
    return body, tradecloud.normalize_order_webhook(loads_exact(body), received_at=NOW)


ORDER, ORDER_EVENT = _order("order-webhook-proposal")
SINGLE, SINGLE_EVENT = _order("single-delivery-webhook-legacy")
DOCUMENTS, DOCUMENTS_EVENT = _order("order-documents-webhook")
SHIPMENT = fixture_bytes("tradecloud/shipment-webhook.json")
APICBASE = fixture_bytes("apicbase/purchase-order.json")
APICBASE_PRETTY = fixture_bytes("apicbase/purchase-order.pretty-utf8.json")
APICBASE_EVENT = apicbase.normalize_purchase_order(
    loads_exact(APICBASE), received_at=NOW, channel="webhook"
)

# (what, method, path, body, headers, expected event, documented routing key)
ACCEPTED: list[tuple[str, str, str, bytes, dict[str, str], CanonicalEvent, str]] = [
    (
        "order POST",
        "POST",
        "/webhooks/tradecloud/orders",
        ORDER,
        BEARER,
        ORDER_EVENT,
        "tradecloud.order.InProgress.Open",
    ),
    (
        "single delivery PUT",
        "PUT",
        "/webhooks/tradecloud/orders",
        SINGLE,
        BASIC,
        SINGLE_EVENT,
        "tradecloud.order.Confirmed.Open",
    ),
    (
        "order documents",
        "POST",
        "/webhooks/tradecloud/orders",
        DOCUMENTS,
        BASIC,
        DOCUMENTS_EVENT,
        "tradecloud.order_documents.InProgress.Open",
    ),
    (
        "shipment",
        "POST",
        "/webhooks/tradecloud/shipments",
        SHIPMENT,
        BEARER,
        tradecloud.normalize_shipment_webhook(loads_exact(SHIPMENT), received_at=NOW),
        "tradecloud.shipment.Issued.Shipped",
    ),
    (
        "apicbase raw",
        "POST",
        "/webhooks/apicbase/orders",
        APICBASE,
        {"X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"]},
        APICBASE_EVENT,
        "apicbase.order.Issued.Open",
    ),
    (
        "apicbase pretty, signed re-serialized",
        "POST",
        "/webhooks/apicbase/orders",
        APICBASE_PRETTY,
        {"X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"]},
        apicbase.normalize_purchase_order(
            loads_exact(APICBASE_PRETTY), received_at=NOW, channel="webhook"
        ),
        "apicbase.order.Issued.Open",
    ),
    (
        "GET order by path",
        "GET",
        f"/webhooks/tradecloud/orders/{GET_ORDER['id']}",
        b"",
        BEARER,
        tradecloud.normalize_fetched_order(GET_ORDER, received_at=NOW),
        "tradecloud.order.Confirmed.Open",
    ),
    (
        "GET shipment by query",
        "GET",
        f"/webhooks/tradecloud/shipments?shipmentId={GET_SHIPMENT['id']}",
        b"",
        BASIC,
        tradecloud.normalize_fetched_shipment(GET_SHIPMENT, received_at=NOW),
        "tradecloud.shipment.Approved.unknown",
    ),
]


async def _accept(
    base: str, method: str, path: str, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    async with client(base) as session:
        status, payload, _ = await post(session, path, body, headers | JSON_CT, method=method)
    assert status == 202, payload
    return payload


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "expected", "routing_key"),
    [case[1:] for case in ACCEPTED],
    ids=[case[0] for case in ACCEPTED],
)
async def test_each_endpoint_publishes_exactly_the_accepted_event(
    base: str,
    tap: EventTap,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    expected: CanonicalEvent,
    routing_key: str,
) -> None:
    payload = await _accept(base, method, path, body, headers)
    assert payload == {"event_id": expected.event_id}
    [message] = await tap.until(expected.event_id)
    assert message.routing_key == routing_key
    assert message.body == encode_event(expected)
    assert message.message_id == expected.event_id
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert message.headers["document_id"] == expected.document_id


async def test_refused_input_publishes_nothing(base: str, tap: EventTap) -> None:
    refused = [
        ("/webhooks/tradecloud/orders", ORDER, JSON_CT, 401),
        ("/webhooks/tradecloud/orders", ORDER, {"Authorization": "Bearer x"} | JSON_CT, 401),
        ("/webhooks/tradecloud/orders", b"<xml/>", BEARER | {"Content-Type": "text/xml"}, 415),
        ("/webhooks/tradecloud/orders", b'{"orderEvent": ', BEARER | JSON_CT, 400),
        ("/webhooks/tradecloud/orders", b'{"orderEvent": {"lines": []}}', BEARER | JSON_CT, 422),
        ("/webhooks/tradecloud/shipments", b'{"shipment": 7}', BEARER | JSON_CT, 422),
        (
            "/webhooks/apicbase/orders",
            APICBASE,
            {"X-APIC-WEBHOOK-SIGNATURE": "0" * 64} | JSON_CT,
            403,
        ),
        ("/webhooks/apicbase/orders", APICBASE, JSON_CT, 401),
        (
            "/webhooks/apicbase/orders",
            b'{"id": "1"}',
            {"X-APIC-WEBHOOK-SIGNATURE": sign(APICBASE_SECRET.encode(), b'{"id": "1"}')} | JSON_CT,
            422,
        ),
    ]
    async with client(base) as session:
        for path, body, headers, status in refused:
            got, payload, _ = await post(session, path, body, headers)
            assert got == status, (path, payload)
        # Gone upstream: recorded (orderbridge.invalid, see test_ingress_get_webhook), not published.
        async with session.get("/webhooks/tradecloud/orders/missing", headers=BEARER) as answer:
            assert answer.status == 404
    sentinel = await _accept(base, "POST", "/webhooks/tradecloud/orders", ORDER, BEARER)
    published = await tap.until(sentinel["event_id"])
    assert [m.message_id for m in published] == [sentinel["event_id"]]


async def test_redeliveries_get_202_and_one_event_id(base: str, tap: EventTap) -> None:
    async with client(base) as session:
        results = await asyncio.gather(
            *(
                post(session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT)
                for _ in range(10)
            )
        )
    assert {status for status, _, _ in results} == {202}
    assert {payload["event_id"] for _, payload, _ in results} == {ORDER_EVENT.event_id}
    first = await tap.until(ORDER_EVENT.event_id)
    assert [m.message_id for m in first] == [ORDER_EVENT.event_id]
    # Concurrent copies shared one publish; the rest (if any) are the same message again.
    await asyncio.sleep(0.2)
    while (extra := await tap.queue.get(no_ack=True, fail=False)) is not None:
        assert extra.message_id == ORDER_EVENT.event_id


@pytest.mark.skipif(not samples_available(), reason=f"steering-kit samples not found at {SAMPLES}")
async def test_the_steering_kit_samples(base: str, tap: EventTap) -> None:
    constructed = SAMPLES / "constructed"
    sources = (SAMPLES / "SOURCES.md").read_text()
    digests = re.findall(r"`([0-9a-f]{64})`", sources)
    assert f"key = `{SAMPLE_KEY.decode()}`" in sources and len(digests) >= 2
    cases = [
        (
            "/webhooks/tradecloud/orders",
            "tradecloud-order-webhook-body",
            BEARER,
            "tradecloud.order.Confirmed.Open",
        ),
        (
            "/webhooks/tradecloud/shipments",
            "tradecloud-shipment-webhook-body",
            BASIC,
            "tradecloud.shipment.Issued.unknown",
        ),
        (
            "/webhooks/apicbase/orders",
            "apicbase-purchase-order",
            {"X-APIC-WEBHOOK-SIGNATURE": digests[0]},
            "apicbase.order.Issued.Open",
        ),
        (
            "/webhooks/apicbase/orders",
            "apicbase-purchase-order.pretty-utf8",
            {"X-APIC-WEBHOOK-SIGNATURE": digests[1]},
            "apicbase.order.Issued.Open",
        ),
        (  # the pretty body under the signature of its json.dumps form (api-facts §5.6)
            "/webhooks/apicbase/orders",
            "apicbase-purchase-order.pretty-utf8",
            {"X-APIC-WEBHOOK-SIGNATURE": digests[0]},
            "apicbase.order.Issued.Open",
        ),
    ]
    for path, name, headers, routing_key in cases:
        body = (constructed / f"{name}.constructed.json").read_bytes()
        payload = await _accept(base, "POST", path, body, headers)
        [message] = await tap.until(payload["event_id"])
        assert message.routing_key == routing_key, name
        assert loads_exact(message.body)["raw"] == loads_exact(body)
