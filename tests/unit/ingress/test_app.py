"""The ingress app over loopback HTTP with the recording publisher and the fake fetcher.

The broker itself is exercised in tests/integration/ingress; here the wiring:
statuses, the error shape, what is (not) published, draining, the GET path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from services.ingress import openapi
from services.ingress.app import DEPS, STATE, create_app
from services.ingress.testing import FakeFetcher
from services.ingress.verify import TradecloudAuth, sign
from shared.errors import (
    Backpressure,
    BrokerUnavailable,
    PublishNacked,
    PublishTimeout,
    PublishUnroutable,
    RetryableError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.normalize import apicbase, tradecloud
from shared.schema.codec import loads_exact
from shared.schema.models import CanonicalEvent
from shared.testing import RecordingPublisher
from tests.support.files import fixture, fixture_bytes
from tests.support.ingress import (
    APICBASE_SECRET,
    BASIC,
    BEARER,
    JSON_CT,
    NOW,
    SIGNATURES,
    client,
    post,
    serve,
    test_deps,
)

ORDER = fixture_bytes("tradecloud/order-webhook-proposal.json")
SHIPMENT = fixture_bytes("tradecloud/shipment-webhook.json")
APICBASE = fixture_bytes("apicbase/purchase-order.json")
APICBASE_PRETTY = fixture_bytes("apicbase/purchase-order.pretty-utf8.json")
GET_ORDER = fixture("tradecloud/get-order.json")
GET_SHIPMENT = fixture("tradecloud/poll-shipments-page.json")["data"][0]
ERROR_SCHEMA = openapi.document(max_body_bytes=1)["components"]["schemas"]["Error"]


class GatedPublisher(RecordingPublisher):
    """Holds every publish until ``gate`` opens; counts calls."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.calls = 0

    async def publish(self, event: CanonicalEvent) -> None:
        self.calls += 1
        await self.gate.wait()
        await super().publish(event)


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher(
        orders={GET_ORDER["id"]: GET_ORDER}, shipments={GET_SHIPMENT["id"]: GET_SHIPMENT}
    )


@pytest.fixture
async def base(publisher: RecordingPublisher, fetcher: FakeFetcher) -> AsyncIterator[str]:
    async with serve(test_deps(publisher, fetcher=fetcher)) as (url, _):
        yield url


def assert_error(payload: dict[str, Any], status: int, error: str) -> None:
    jsonschema.validate(payload, ERROR_SCHEMA)
    assert (payload["status"], payload["error"]) == (status, error), payload


# ---------------------------------------------------------------- accepted


@pytest.mark.parametrize(
    ("path", "body", "headers", "method", "expected"),
    [
        (
            "/webhooks/tradecloud/orders",
            ORDER,
            BEARER,
            "POST",
            lambda: tradecloud.normalize_order_webhook(loads_exact(ORDER), received_at=NOW),
        ),
        (
            "/webhooks/tradecloud/orders",
            ORDER,
            BASIC,
            "PUT",
            lambda: tradecloud.normalize_order_webhook(loads_exact(ORDER), received_at=NOW),
        ),
        (
            "/webhooks/tradecloud/orders",
            fixture_bytes("tradecloud/single-delivery-webhook-legacy.json"),
            BEARER,
            "POST",
            lambda: tradecloud.normalize_order_webhook(
                fixture("tradecloud/single-delivery-webhook-legacy.json"), received_at=NOW
            ),
        ),
        (
            "/webhooks/tradecloud/orders",
            fixture_bytes("tradecloud/order-documents-webhook.json"),
            BASIC,
            "POST",
            lambda: tradecloud.normalize_order_webhook(
                fixture("tradecloud/order-documents-webhook.json"), received_at=NOW
            ),
        ),
        (
            "/webhooks/tradecloud/shipments",
            SHIPMENT,
            BEARER,
            "POST",
            lambda: tradecloud.normalize_shipment_webhook(loads_exact(SHIPMENT), received_at=NOW),
        ),
        (
            "/webhooks/tradecloud/shipments",
            SHIPMENT,
            BASIC,
            "PUT",
            lambda: tradecloud.normalize_shipment_webhook(loads_exact(SHIPMENT), received_at=NOW),
        ),
        (
            "/webhooks/apicbase/orders",
            APICBASE,
            {"X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"]},
            "POST",
            lambda: apicbase.normalize_purchase_order(
                loads_exact(APICBASE), received_at=NOW, channel="webhook"
            ),
        ),
        (
            "/webhooks/apicbase/orders",
            APICBASE_PRETTY,
            {"X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"]},
            "POST",
            lambda: apicbase.normalize_purchase_order(
                loads_exact(APICBASE_PRETTY), received_at=NOW, channel="webhook"
            ),
        ),
    ],
    ids=[
        "order POST bearer",
        "order PUT basic",
        "single delivery (simpleOrderEvent)",
        "order documents",
        "shipment POST",
        "shipment PUT",
        "apicbase raw signature",
        "apicbase reserialized signature",
    ],
)
async def test_webhooks_are_published_then_answered_202(
    base: str,
    publisher: RecordingPublisher,
    path: str,
    body: bytes,
    headers: dict[str, str],
    method: str,
    expected: Callable[[], CanonicalEvent],
) -> None:
    async with client(base) as session:
        status, payload, response = await post(
            session, path, body, {**headers, **JSON_CT}, method=method
        )
    assert status == 202, payload
    event = expected()
    assert payload == {"event_id": event.event_id}
    assert publisher.events == [event]
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["X-Request-ID"]


async def test_missing_content_type_is_taken_as_json(
    base: str, publisher: RecordingPublisher
) -> None:
    async with (
        client(base) as session,
        session.post(
            "/webhooks/tradecloud/orders",
            data=ORDER,
            headers=BEARER,
            skip_auto_headers=["Content-Type"],
        ) as response,
    ):
        assert response.status == 202
    assert len(publisher.events) == 1


async def test_a_redelivery_gets_202_and_the_same_event_id(
    base: str, publisher: RecordingPublisher
) -> None:
    async with client(base) as session:
        first = await post(session, "/webhooks/tradecloud/orders", ORDER, {**BEARER, **JSON_CT})
        again = await post(session, "/webhooks/tradecloud/orders", ORDER, {**BASIC, **JSON_CT})
    assert first[0] == again[0] == 202
    assert first[1] == again[1]
    assert [e.event_id for e in publisher.events] == [first[1]["event_id"]] * 2


async def test_concurrent_duplicates_share_one_publish() -> None:
    publisher = GatedPublisher()
    async with serve(test_deps(publisher)) as (url, app), client(url) as session:
        requests = [
            asyncio.ensure_future(
                post(session, "/webhooks/tradecloud/orders", ORDER, {**BEARER, **JSON_CT})
            )
            for _ in range(4)
        ]
        while publisher.calls == 0 or app[STATE].in_flight < 4:
            await asyncio.sleep(0.01)
        assert not any(request.done() for request in requests)  # nothing before the confirm
        publisher.gate.set()
        results = await asyncio.gather(*requests)
        metrics = generate_latest(app[DEPS].registry).decode()
    assert {status for status, _, _ in results} == {202}
    assert publisher.calls == 1 and len(publisher.events) == 1
    assert "orderbridge_ingress_coalesced_total 3.0" in metrics


async def test_echo_settings_reach_the_order_normalizer() -> None:
    publisher = RecordingPublisher()
    deps = test_deps(publisher, role="supplier", echo_policy="own-open-requests")
    async with serve(deps) as (url, _), client(url) as session:
        status, _, _ = await post(
            session, "/webhooks/tradecloud/orders", ORDER, {**BEARER, **JSON_CT}
        )
    assert status == 202
    echo = publisher.events[0].echo
    assert (echo.role, echo.policy) == ("supplier", "own-open-requests")
    assert echo.lines  # the proposal line is the supplier's own open request


async def test_a_large_body_is_parsed_off_the_event_loop_and_accepted() -> None:
    document = json.loads(ORDER)
    line = document["orderEvent"]["lines"][0]
    document["orderEvent"]["lines"] = [
        {**line, "id": f"line-{i}", "buyerLine": {**line["buyerLine"], "position": str(i)}}
        for i in range(200)
    ]
    body = json.dumps(document).encode()
    assert len(body) > 256 * 1024
    publisher = RecordingPublisher()
    async with serve(test_deps(publisher)) as (url, _), client(url) as session:
        status, _, _ = await post(session, "/webhooks/tradecloud/orders", body, BEARER | JSON_CT)
    assert status == 202
    assert publisher.events[0].order is not None
    assert len(publisher.events[0].order.lines) == 200


# ---------------------------------------------------------------- refused: nothing published

SIGNED_NOT_JSON = b'{"id": "x", '
SIGNED_INVALID = b'{"id": "po-1", "packages": "none"}'

REFUSALS: list[tuple[str, str, bytes, dict[str, str], int, str, str | None]] = [
    ("no credentials", "/webhooks/tradecloud/orders", ORDER, JSON_CT, 401, "unauthorized", None),
    (
        "wrong token",
        "/webhooks/tradecloud/shipments",
        SHIPMENT,
        {"Authorization": "Bearer nope", **JSON_CT},
        401,
        "unauthorized",
        None,
    ),
    (
        "tXML",
        "/webhooks/tradecloud/orders",
        b"<order/>",
        {**BEARER, "Content-Type": "application/xml"},
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "form",
        "/webhooks/apicbase/orders",
        APICBASE,
        {
            "X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"],
            "Content-Type": "application/x-www-form-urlencoded",
        },
        415,
        "unsupported_media_type",
        None,
    ),
    (
        "not JSON",
        "/webhooks/tradecloud/orders",
        b"{",
        {**BEARER, **JSON_CT},
        400,
        "malformed_json",
        "body",
    ),
    (
        "not an object",
        "/webhooks/tradecloud/orders",
        b"[]",
        {**BEARER, **JSON_CT},
        422,
        "invalid_payload",
        "body",
    ),
    (
        "no order event",
        "/webhooks/tradecloud/orders",
        b'{"eventName": "OrderIssuedByBuyer"}',
        {**BEARER, **JSON_CT},
        422,
        "invalid_payload",
        "orderEvent",
    ),
    (
        "bad line",
        "/webhooks/tradecloud/orders",
        b'{"eventName": "X", "orderEvent": {"orderId": "o1", "lines": [5]}}',
        {**BEARER, **JSON_CT},
        422,
        "invalid_payload",
        "orderEvent.lines[0]",
    ),
    (
        "no shipment",
        "/webhooks/tradecloud/shipments",
        b'{"eventName": "ShipmentIssuedBySupplier"}',
        {**BASIC, **JSON_CT},
        422,
        "invalid_payload",
        "shipment",
    ),
    ("unsigned", "/webhooks/apicbase/orders", APICBASE, JSON_CT, 401, "unauthorized", None),
    (
        "wrongly signed",
        "/webhooks/apicbase/orders",
        APICBASE,
        {"X-APIC-WEBHOOK-SIGNATURE": sign(b"another-secret", APICBASE), **JSON_CT},
        403,
        "bad_signature",
        None,
    ),
    (
        "signed but not JSON",
        "/webhooks/apicbase/orders",
        SIGNED_NOT_JSON,
        {"X-APIC-WEBHOOK-SIGNATURE": sign(APICBASE_SECRET.encode(), SIGNED_NOT_JSON), **JSON_CT},
        400,
        "malformed_json",
        "body",
    ),
    (
        "signed but invalid",
        "/webhooks/apicbase/orders",
        SIGNED_INVALID,
        {"X-APIC-WEBHOOK-SIGNATURE": sign(APICBASE_SECRET.encode(), SIGNED_INVALID), **JSON_CT},
        422,
        "invalid_payload",
        "packages",
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "error", "field"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
async def test_refused_input_publishes_nothing(
    base: str,
    publisher: RecordingPublisher,
    path: str,
    body: bytes,
    headers: dict[str, str],
    status: int,
    error: str,
    field: str | None,
) -> None:
    async with client(base) as session:
        got, payload, response = await post(session, path, body, headers)
    assert got == status
    assert_error(payload, status, error)
    assert payload["path"] == field
    assert payload["request_id"] == response.headers["X-Request-ID"]
    if status == 401:
        assert response.headers["WWW-Authenticate"]
    assert publisher.events == []


async def test_bodies_over_the_limit_get_413_declared_or_streamed() -> None:
    publisher = RecordingPublisher()
    body = b'{"eventName": "x", "pad": "' + b"x" * 4096 + b'"}'
    async with serve(test_deps(publisher, max_body_bytes=2048)) as (url, _), client(url) as s:
        status, payload, _ = await post(s, "/webhooks/tradecloud/orders", body, BEARER | JSON_CT)
        assert_error(payload, 413, "payload_too_large")

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 512):
                yield body[start : start + 512]

        async with s.post(
            "/webhooks/tradecloud/orders", data=chunks(), headers=BEARER | JSON_CT
        ) as response:
            assert response.status == 413
            assert_error(json.loads(await response.read()), 413, "payload_too_large")
    assert status == 413
    assert publisher.events == []


# ---------------------------------------------------------------- transient: 503, never 500


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (Backpressure("too many", retry_after=1), "backpressure"),
        (BrokerUnavailable("down", retry_after=2), "broker_unavailable"),
        (PublishTimeout("no confirm", retry_after=5), "publish_timeout"),
        (PublishNacked("nack", retry_after=5), "publish_nacked"),
        (PublishUnroutable("no queue", retry_after=30), "publish_unroutable"),
    ],
)
async def test_publish_failures_answer_503_with_retry_after(
    base: str, publisher: RecordingPublisher, failure: RetryableError, error: str
) -> None:
    publisher.fail_with = failure
    async with client(base) as session:
        status, payload, response = await post(
            session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT
        )
    assert status == 503
    assert_error(payload, 503, error)
    assert int(response.headers["Retry-After"]) >= 1
    assert publisher.events == []


class ExplodingPublisher(RecordingPublisher):
    async def publish(self, event: CanonicalEvent) -> None:
        raise RuntimeError("a bug")


async def test_an_unexpected_error_is_503_not_500() -> None:
    async with serve(test_deps(ExplodingPublisher())) as (url, _), client(url) as session:
        status, payload, response = await post(
            session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT
        )
    assert status == 503
    assert_error(payload, 503, "internal_error")
    assert "a bug" not in payload["message"]
    assert response.headers["Retry-After"]


# ---------------------------------------------------------------- legacy GET webhook


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        (f"/webhooks/tradecloud/orders/{GET_ORDER['id']}", "order"),
        (f"/webhooks/tradecloud/orders?orderId={GET_ORDER['id']}", "order"),
        (f"/webhooks/tradecloud/shipments/{GET_SHIPMENT['id']}", "shipment"),
        (f"/webhooks/tradecloud/shipments?shipmentId={GET_SHIPMENT['id']}", "shipment"),
    ],
)
async def test_get_webhook_fetches_the_whole_document(
    base: str, publisher: RecordingPublisher, fetcher: FakeFetcher, path: str, kind: str
) -> None:
    async with client(base) as session, session.get(path, headers=BASIC) as response:
        assert response.status == 202
        payload = await response.json()
    expected = (
        tradecloud.normalize_fetched_order(GET_ORDER, received_at=NOW)
        if kind == "order"
        else tradecloud.normalize_fetched_shipment(GET_SHIPMENT, received_at=NOW)
    )
    assert publisher.events == [expected]
    assert payload == {"event_id": expected.event_id}
    assert expected.channel == "webhook" and expected.event_name is None
    assert fetcher.fetched == [(kind, expected.document_id)]


async def test_get_webhook_failures(
    base: str, publisher: RecordingPublisher, fetcher: FakeFetcher
) -> None:
    async with client(base) as session:
        async with session.get("/webhooks/tradecloud/orders", headers=BEARER) as response:
            assert_error(await response.json(), 400, "missing_parameter")
        async with session.get("/webhooks/tradecloud/orders/o-1") as response:
            assert_error(await response.json(), 401, "unauthorized")
        fetcher.fail_with = UpstreamRejected("our API credentials are refused", status=403)
        async with session.get("/webhooks/tradecloud/orders/o-2", headers=BEARER) as response:
            assert_error(await response.json(), 502, "upstream_rejected")
            assert response.headers["Retry-After"]
        # A document gone upstream (404 on it) is tests/unit/ingress/test_get_webhook.py.
        fetcher.fail_with = UpstreamUnavailable("API down", retry_after=30)
        async with session.get(
            f"/webhooks/tradecloud/shipments/{GET_SHIPMENT['id']}", headers=BEARER
        ) as response:
            assert_error(await response.json(), 503, "upstream_unavailable")
            assert response.headers["Retry-After"] == "30"
    assert publisher.events == []
    assert fetcher.fetched == [("order", "o-2"), ("shipment", GET_SHIPMENT["id"])]


async def test_get_webhook_without_an_api_client_is_503() -> None:
    publisher = RecordingPublisher()
    async with (
        serve(test_deps(publisher)) as (url, _),
        client(url) as session,
        session.get("/webhooks/tradecloud/orders/o-1", headers=BEARER) as response,
    ):
        assert_error(await response.json(), 503, "upstream_not_configured")
    assert publisher.events == []


# ---------------------------------------------------------------- draining, ids, contract


async def test_draining_refuses_new_webhooks_and_waits_for_those_in_flight() -> None:
    publisher = GatedPublisher()
    async with serve(test_deps(publisher)) as (url, app), client(url) as session:
        in_flight = asyncio.ensure_future(
            post(session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT)
        )
        while publisher.calls == 0:
            await asyncio.sleep(0.01)
        drain = asyncio.ensure_future(app[STATE].drain(5))
        await asyncio.sleep(0)
        async with client(url) as other:
            _status, payload, response = await post(
                other, "/webhooks/apicbase/orders", APICBASE, JSON_CT
            )
            assert_error(payload, 503, "shutting_down")
            assert response.headers["Retry-After"] == "1"
            async with other.get("/readyz") as ready:
                assert ready.status == 503
                assert "draining" in (await ready.json())["reason"]
        assert not drain.done() and not in_flight.done()
        publisher.gate.set()
        assert (await in_flight)[0] == 202
        assert await drain is True
    assert len(publisher.events) == 1


async def test_every_answer_carries_a_request_id(base: str) -> None:
    async with client(base) as session:
        for method, path in [
            ("GET", "/healthz"),
            ("GET", "/readyz"),
            ("GET", "/openapi.json"),
            ("GET", "/nowhere"),
            ("DELETE", "/webhooks/tradecloud/orders"),
            ("POST", "/webhooks/tradecloud/orders"),
        ]:
            async with session.request(method, path) as response:
                assert len(response.headers["X-Request-ID"]) == 32, path
                if response.status >= 400:
                    payload = await response.json()
                    jsonschema.validate(payload, ERROR_SCHEMA)
                    assert payload["request_id"] == response.headers["X-Request-ID"]
        async with session.get("/healthz", headers={"X-Request-ID": "lb-7f3a:42"}) as response:
            assert response.headers["X-Request-ID"] == "lb-7f3a:42"
        async with session.get("/healthz", headers={"X-Request-ID": "x\u00e9 y"}) as response:
            assert response.headers["X-Request-ID"] != "x\u00e9 y"
        async with session.delete("/webhooks/apicbase/orders") as response:
            assert response.status == 405
            assert response.headers["Allow"] == "POST"


def _app_routes(app: web.Application) -> set[tuple[str, str]]:
    routes = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if route.method != "HEAD":
            routes.add((route.method.lower(), str(path)))
    return routes


async def test_openapi_document_lists_exactly_the_routes(base: str) -> None:
    async with client(base) as session, session.get("/openapi.json") as response:
        document = await response.json()
    assert document["openapi"].startswith("3.1")
    published = {(method, path) for path, item in document["paths"].items() for method in item}
    app = create_app(test_deps(RecordingPublisher()))
    assert published == _app_routes(app)


async def test_metrics_count_requests_by_endpoint_and_outcome(
    publisher: RecordingPublisher,
) -> None:
    async with serve(test_deps(publisher)) as (base, app), client(base) as session:
        await post(session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT)
        await post(session, "/webhooks/tradecloud/orders", b"{", BEARER | JSON_CT)
        await post(
            session,
            "/webhooks/apicbase/orders",
            APICBASE_PRETTY,
            {"X-APIC-WEBHOOK-SIGNATURE": SIGNATURES["purchase-order.json"], **JSON_CT},
        )
        assert (await session.get("/metrics")).status == 404  # metrics never on the public port
    text = generate_latest(app[DEPS].registry).decode()
    for line in (
        'orderbridge_ingress_requests_total{endpoint="tradecloud_orders",outcome="accepted"} 1.0',
        'orderbridge_ingress_requests_total{endpoint="tradecloud_orders",outcome="malformed_json"} 1.0',
        'orderbridge_ingress_requests_total{endpoint="apicbase_orders",outcome="accepted"} 1.0',
        'orderbridge_ingress_apicbase_signatures_total{form="reserialized"} 1.0',
        'orderbridge_ingress_request_body_bytes_count{endpoint="tradecloud_orders"} 2.0',
        'orderbridge_ingress_request_duration_seconds_count{endpoint="tradecloud_orders"} 2.0',
        "orderbridge_ingress_requests_in_flight 0.0",
    ):
        assert line in text, line


async def test_insecure_mode_accepts_unauthenticated_calls() -> None:
    publisher = RecordingPublisher()
    deps = test_deps(publisher, tradecloud=TradecloudAuth(allow_anonymous=True))
    async with serve(deps) as (url, _), client(url) as session:
        status, _, _ = await post(session, "/webhooks/tradecloud/orders", ORDER, JSON_CT)
    assert status == 202


async def test_unauthenticated_calls_are_refused_before_the_body_is_read() -> None:
    publisher = RecordingPublisher()
    body = b'{"pad": "' + b"x" * 8192 + b'"}'
    async with (
        serve(test_deps(publisher, max_body_bytes=2048)) as (url, _),
        client(url) as session,
    ):
        for path in ("/webhooks/apicbase/orders", "/webhooks/tradecloud/orders"):
            status, payload, _ = await post(session, path, body, JSON_CT)
            assert (status, payload["error"]) == (401, "unauthorized"), path
    assert publisher.events == []
