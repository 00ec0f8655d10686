"""The legacy GET webhook's answers when the document is gone or the API is slow.

A GET webhook for a document the Tradecloud API no longer has must end the
platform's retries (4xx) *and* leave a trace an operator can act on (a warning,
a metric, a message in ``orderbridge.invalid``); a slow API must not hold the
webhook request past a small budget. Fakes only: the real client, simulator and
broker are in tests/integration/ingress/test_ingress_get_webhook.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest
from prometheus_client import generate_latest

from services.ingress import answers, openapi
from services.ingress import app as app_module
from services.ingress.testing import FakeFetcher, RecordingQuarantine
from shared.errors import (
    BrokerUnavailable,
    PublishTimeout,
    RetryableError,
    UpstreamRejected,
)
from shared.testing import RecordingPublisher
from tests.support.files import fixture
from tests.support.ingress import BEARER, client, serve, test_deps

GET_ORDER = fixture("tradecloud/get-order.json")
ERROR_SCHEMA = openapi.document(max_body_bytes=1)["components"]["schemas"]["Error"]

MISSING = "4c1a0f1e-gone-order"
"""An id the fake fetcher does not know: it answers like the API's 404 on the document."""


@dataclass
class RecordingLog:
    """Stands in for the app module's structlog logger: keeps (level, event, fields)."""

    lines: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, *args: Any, **fields: Any) -> None:
            self.lines.append((level, event, fields))

        return record


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher(orders={GET_ORDER["id"]: GET_ORDER})


@pytest.fixture
def quarantine() -> RecordingQuarantine:
    return RecordingQuarantine()


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> RecordingLog:
    recording = RecordingLog()
    monkeypatch.setattr(app_module, "log", recording)
    return recording


@pytest.fixture
async def base(
    publisher: RecordingPublisher, fetcher: FakeFetcher, quarantine: RecordingQuarantine
) -> AsyncIterator[str]:
    deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine)
    async with serve(deps) as (url, _):
        yield url


def assert_error(payload: dict[str, Any], status: int, error: str) -> None:
    jsonschema.validate(payload, ERROR_SCHEMA)
    assert (payload["status"], payload["error"]) == (status, error), payload


# ---------------------------------------------------------------- gone upstream


@pytest.mark.parametrize(
    ("path", "kind", "parameter"),
    [
        (f"/webhooks/tradecloud/orders/{MISSING}", "order", "orderId"),
        (f"/webhooks/tradecloud/orders?orderId={MISSING}", "order", "orderId"),
        (f"/webhooks/tradecloud/shipments/{MISSING}", "shipment", "shipmentId"),
        (f"/webhooks/tradecloud/shipments?shipmentId={MISSING}", "shipment", "shipmentId"),
    ],
)
async def test_a_document_gone_upstream_is_recorded_then_answered_404(
    base: str,
    publisher: RecordingPublisher,
    fetcher: FakeFetcher,
    quarantine: RecordingQuarantine,
    log: RecordingLog,
    path: str,
    kind: str,
    parameter: str,
) -> None:
    async with client(base) as session, session.get(path, headers=BEARER) as response:
        payload = await response.json()
        assert response.status == 404
        assert "Retry-After" not in response.headers
    assert_error(payload, 404, "document_not_found")
    assert MISSING in payload["message"] and payload["path"] == parameter
    assert publisher.events == []
    assert fetcher.fetched == [(kind, MISSING)] * 2, "asked twice, a pause apart"
    (record,) = quarantine.records
    assert record.kind == kind
    assert record.document["document_id"] == MISSING
    assert record.document["kind"] == kind
    assert record.document["upstream_status"] == 404
    assert MISSING in record.reason and "404" in record.reason
    assert record.reason.startswith("document_not_found")
    warnings = [fields for level, _, fields in log.lines if level == "warning"]
    assert {"kind": kind, "document_id": MISSING}.items() <= warnings[0].items()


async def test_gone_and_slow_fetches_are_counted(
    publisher: RecordingPublisher, fetcher: FakeFetcher, quarantine: RecordingQuarantine
) -> None:
    deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine, fetch_timeout_seconds=0.2)
    async with serve(deps) as (url, _), client(url) as session:
        await (await session.get(f"/webhooks/tradecloud/orders/{MISSING}", headers=BEARER)).read()
        fetcher.hang = True
        await (
            await session.get(f"/webhooks/tradecloud/shipments/{MISSING}", headers=BEARER)
        ).read()
    text = generate_latest(deps.registry).decode()
    for line in (
        'orderbridge_ingress_requests_total{endpoint="tradecloud_orders_get",'
        'outcome="document_not_found"} 1.0',
        'orderbridge_ingress_requests_total{endpoint="tradecloud_shipments_get",'
        'outcome="upstream_timeout"} 1.0',
    ):
        assert line in text, line
    assert {"document_not_found", "upstream_timeout", "quarantine_failed"} <= answers.OUTCOMES


@pytest.mark.parametrize(
    "failure",
    [
        BrokerUnavailable("no channel", retry_after=2),
        PublishTimeout("no confirm within 5s", retry_after=5),
    ],
)
async def test_a_miss_that_cannot_be_recorded_is_503_not_404(
    base: str,
    publisher: RecordingPublisher,
    quarantine: RecordingQuarantine,
    failure: RetryableError,
) -> None:
    quarantine.fail_with = failure
    async with (
        client(base) as session,
        session.get(f"/webhooks/tradecloud/orders/{MISSING}", headers=BEARER) as response,
    ):
        payload = await response.json()
        assert response.headers["Retry-After"] == str(int(failure.retry_after or 0))
    assert_error(payload, 503, "quarantine_failed")
    assert quarantine.records == [] and publisher.events == []


async def test_without_a_quarantine_a_miss_is_503() -> None:
    publisher = RecordingPublisher()
    deps = test_deps(publisher, fetcher=FakeFetcher())
    async with (
        serve(deps) as (url, _),
        client(url) as session,
        session.get(f"/webhooks/tradecloud/orders/{MISSING}", headers=BEARER) as response,
    ):
        assert_error(await response.json(), 503, "quarantine_failed")
        assert response.headers["Retry-After"]
    assert publisher.events == []


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (401, "the integration user's credentials are refused"),
        (403, "the integration user may not read orders"),
        (404, "the login answered 404: the API base URL is wrong"),
    ],
)
async def test_other_refusals_stay_502_and_record_nothing(
    base: str,
    publisher: RecordingPublisher,
    fetcher: FakeFetcher,
    quarantine: RecordingQuarantine,
    status: int,
    why: str,
) -> None:
    """Only ``DocumentNotFound`` means "gone": a plain 404 may be a misconfigured base URL."""
    fetcher.fail_with = UpstreamRejected(why, status=status)
    async with (
        client(base) as session,
        session.get(f"/webhooks/tradecloud/orders/{GET_ORDER['id']}", headers=BEARER) as response,
    ):
        assert_error(await response.json(), 502, "upstream_rejected")
        assert response.headers["Retry-After"]
    assert quarantine.records == [] and publisher.events == []


# ---------------------------------------------------------------- fetch budget


async def test_a_hanging_fetch_answers_503_within_the_budget(
    publisher: RecordingPublisher, fetcher: FakeFetcher, quarantine: RecordingQuarantine
) -> None:
    budget = 0.2
    fetcher.hang = True
    deps = test_deps(
        publisher, fetcher=fetcher, quarantine=quarantine, fetch_timeout_seconds=budget
    )
    async with serve(deps) as (url, _), client(url) as session:
        started = time.monotonic()
        async with session.get(
            f"/webhooks/tradecloud/orders/{GET_ORDER['id']}", headers=BEARER
        ) as response:
            payload = await response.json()
        elapsed = time.monotonic() - started
        assert_error(payload, 503, "upstream_timeout")
        assert response.headers["Retry-After"] == str(answers.UPSTREAM_RETRY_AFTER)
        assert GET_ORDER["id"] in payload["message"]
    assert budget <= elapsed < budget + 1.0, elapsed  # not the 30 s of the HTTP client
    assert fetcher.cancelled == 1, "the fetch must be cancelled, not left running"
    assert publisher.events == [] and quarantine.records == []


async def test_a_timeout_raised_inside_the_fetcher_is_not_taken_for_the_budget(
    publisher: RecordingPublisher,
) -> None:
    """Only our own budget answers ``upstream_timeout``; a stray TimeoutError is a bug (503)."""

    class StrayTimeout(FakeFetcher):
        async def fetch_order(self, order_id: str) -> Any:
            raise TimeoutError("from deep inside")

    async with (
        serve(test_deps(publisher, fetcher=StrayTimeout())) as (url, _),
        client(url) as session,
        session.get("/webhooks/tradecloud/orders/o-1", headers=BEARER) as response,
    ):
        assert_error(await response.json(), 503, "internal_error")


async def test_a_fetch_within_the_budget_is_published(
    publisher: RecordingPublisher, fetcher: FakeFetcher, quarantine: RecordingQuarantine
) -> None:
    deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine, fetch_timeout_seconds=5)
    async with (
        serve(deps) as (url, _),
        client(url) as session,
        session.get(f"/webhooks/tradecloud/orders/{GET_ORDER['id']}", headers=BEARER) as response,
    ):
        assert response.status == 202
    assert [event.document_id for event in publisher.events] == [GET_ORDER["id"]]
    assert quarantine.records == []


async def test_budget_cancellation_leaves_the_server_serving(
    publisher: RecordingPublisher, fetcher: FakeFetcher, quarantine: RecordingQuarantine
) -> None:
    """Concurrent hanging fetches all end at the budget; the next fetch works again."""
    fetcher.hang = True
    deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine, fetch_timeout_seconds=0.2)
    async with serve(deps) as (url, _), client(url) as session:

        async def one() -> int:
            async with session.get(
                f"/webhooks/tradecloud/orders/{GET_ORDER['id']}", headers=BEARER
            ) as response:
                return response.status

        assert await asyncio.gather(*(one() for _ in range(5))) == [503] * 5
        fetcher.hang = False
        assert await one() == 202
    assert fetcher.cancelled == 5


async def test_a_document_the_api_shows_a_moment_later_is_published_not_refused(
    publisher: RecordingPublisher, quarantine: RecordingQuarantine
) -> None:
    """Read-after-write: the webhook may come before the API shows the document."""

    class LaggingFetcher(FakeFetcher):
        async def fetch_order(self, order_id: str) -> Any:
            try:
                return await super().fetch_order(order_id)
            finally:
                self.orders[order_id] = {**GET_ORDER, "id": order_id}

    fetcher = LaggingFetcher()
    deps = test_deps(publisher, fetcher=fetcher, quarantine=quarantine)
    async with (
        serve(deps) as (url, _),
        client(url) as session,
        session.get(f"/webhooks/tradecloud/orders/{MISSING}", headers=BEARER) as response,
    ):
        assert response.status == 202, await response.text()
    assert fetcher.fetched == [("order", MISSING)] * 2
    assert [event.document_id for event in publisher.events] == [MISSING]
    assert quarantine.records == []
