"""The ingress aiohttp app: ``create_app(deps)`` and its handlers.

Each webhook handler is the same short pipeline: authenticate → read the raw
body (capped) → decode → normalize → publish with a confirm → 202 with the
event id. The parsing half (``_Parse``: everything from the raw bytes to the
event) is synchronous and pure; bodies above ``OFFLOAD_BYTES`` are parsed in a
worker thread so one huge order does not stall every other request.

The middleware gives every answer a request id (``X-Request-ID``, taken from
the caller when it is sane), turns every failure into the one JSON error
shape of ``answers``, counts requests by endpoint and outcome, and answers 503
while the server drains (SIGTERM).
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, NoReturn

import orjson
from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry

from services.ingress import answers, openapi
from services.ingress.answers import Problem
from services.ingress.fetch import (
    DEFAULT_FETCH_TIMEOUT_SECONDS,
    DocumentFetcher,
    DocumentNotFound,
    Kind,
    Quarantine,
)
from services.ingress.metrics import IngressMetrics
from services.ingress.singleflight import SingleFlight
from services.ingress.verify import ApicbaseSignature, TradecloudAuth
from shared.broker.publisher import Publisher
from shared.errors import InvalidPayload, RetryableError
from shared.logging import get_logger
from shared.normalize import apicbase, tradecloud
from shared.ops import add_health_routes
from shared.schema.codec import NestedTooDeep, loads_exact
from shared.schema.models import CanonicalEvent, EchoPolicy, Role

log = get_logger(__name__)

OFFLOAD_BYTES: Final = 256 * 1024
"""Bodies larger than this are decoded and normalized in a worker thread."""

REFETCH_PAUSE: Final = 1.0
"""Seconds before asking the API once more about a document it answered 404 for."""

SIGNATURE_HEADER: Final = "X-APIC-WEBHOOK-SIGNATURE"
REQUEST_ID_HEADER: Final = "X-Request-ID"
_SANE_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")

Clock = Callable[[], datetime]
ReadyCheck = Callable[[], str | None]
Headers = CIMultiDictProxy[str]


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _always_ready() -> str | None:
    return None


@dataclass(frozen=True)
class IngressDeps:
    """Everything the app needs, built by the composition root (or a test)."""

    publisher: Publisher
    registry: CollectorRegistry
    tradecloud: TradecloudAuth
    apicbase: ApicbaseSignature
    fetcher: DocumentFetcher | None = None
    quarantine: Quarantine | None = None
    """Records GET webhooks naming a document Tradecloud does not have (``orderbridge.invalid``).

    Without one such a webhook is answered 503 (nothing could be recorded), never 404."""
    fetch_timeout_seconds: float = DEFAULT_FETCH_TIMEOUT_SECONDS
    """Budget of one GET webhook's fetch from the Tradecloud API; past it, 503."""
    max_body_bytes: int = 16 * 1024 * 1024
    body_timeout_seconds: float = 30.0
    """A body that has not arrived completely this long after the headers gets 408 and the
    connection closes: a client trickling its body cannot hold a connection open forever."""
    role: Role | None = None
    echo_policy: EchoPolicy = "off"
    ready: ReadyCheck = _always_ready
    clock: Clock = _utc_now
    metrics: IngressMetrics | None = None


@dataclass
class IngressState:
    """Runtime state shared by the middleware and the shutdown sequence."""

    flights: SingleFlight = field(default_factory=SingleFlight)
    draining: bool = False
    in_flight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.idle.set()

    async def drain(self, seconds: float) -> bool:
        """Refuse new webhooks (503) and wait for those in flight; False on timeout."""
        self.draining = True
        try:
            async with asyncio.timeout(seconds):
                await self.idle.wait()
                await self.flights.drain()
        except TimeoutError:
            return False
        return True


DEPS: Final = web.AppKey("ingress_deps", IngressDeps)
STATE: Final = web.AppKey("ingress_state", IngressState)
METRICS: Final = web.AppKey("ingress_metrics", IngressMetrics)


class Reject(Exception):
    """Raised by handlers to answer with a ``Problem``."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_Parse = Callable[[bytes, Headers], CanonicalEvent]


def create_app(deps: IngressDeps) -> web.Application:
    metrics = deps.metrics or IngressMetrics(deps.registry)
    state = IngressState()
    handlers = _Handlers(deps, state, metrics)
    app = web.Application(
        client_max_size=deps.max_body_bytes,
        middlewares=[_middleware(state, metrics, handlers.endpoints)],
    )
    app[DEPS] = deps
    app[STATE] = state
    app[METRICS] = metrics
    handlers.add_routes(app.router)
    # /metrics is served on ORDERBRIDGE_METRICS_PORT only (``__main__``), never here.
    add_health_routes(app, ready_check(app))
    document = orjson.dumps(openapi.document(max_body_bytes=deps.max_body_bytes))

    async def openapi_json(_: web.Request) -> web.Response:
        return web.Response(body=document, content_type="application/json")

    app.router.add_get("/openapi.json", openapi_json)
    app.cleanup_ctx.append(_finish_publishes)
    return app


def ready_check(app: web.Application) -> ReadyCheck:
    """/readyz of this app: not while draining, else what the deps say (the publisher)."""
    state, deps = app[STATE], app[DEPS]

    def ready() -> str | None:
        return "draining: shutting down" if state.draining else deps.ready()

    return ready


async def _finish_publishes(app: web.Application) -> AsyncIterator[None]:
    """On cleanup, let publishes still in flight reach their confirm (or deadline)."""
    yield
    state = app[STATE]
    state.draining = True
    await state.flights.drain()


class _Handlers:
    def __init__(self, deps: IngressDeps, state: IngressState, metrics: IngressMetrics) -> None:
        self._deps = deps
        self._publisher = deps.publisher
        self._flights = state.flights
        self._metrics = metrics
        self._max = deps.max_body_bytes
        self._body_timeout = deps.body_timeout_seconds
        self._clock = deps.clock
        self._debug = logging.getLogger(__name__).isEnabledFor(logging.DEBUG)
        self.endpoints: dict[Callable[..., Awaitable[web.StreamResponse]], str] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        orders, shipments = "/webhooks/tradecloud/orders", "/webhooks/tradecloud/shipments"
        routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.Response]], str]] = [
            ("POST", orders, self.tradecloud_order, "tradecloud_orders"),
            ("PUT", orders, self.tradecloud_order, "tradecloud_orders"),
            ("GET", orders, self.order_get, "tradecloud_orders_get"),
            ("GET", orders + "/{orderId}", self.order_get, "tradecloud_orders_get"),
            ("POST", shipments, self.tradecloud_shipment, "tradecloud_shipments"),
            ("PUT", shipments, self.tradecloud_shipment, "tradecloud_shipments"),
            ("GET", shipments, self.shipment_get, "tradecloud_shipments_get"),
            ("GET", shipments + "/{shipmentId}", self.shipment_get, "tradecloud_shipments_get"),
            ("POST", "/webhooks/apicbase/orders", self.apicbase_order, "apicbase_orders"),
        ]
        for method, path, handler, endpoint in routes:
            router.add_route(method, path, handler)
            self.endpoints[handler] = endpoint

    # ------------------------------------------------------------ handlers

    async def tradecloud_order(self, request: web.Request) -> web.Response:
        self._deps.tradecloud.check(request.headers.get(hdrs.AUTHORIZATION))
        return await self._webhook(request, "tradecloud_orders", self._parse_tradecloud_order)

    async def tradecloud_shipment(self, request: web.Request) -> web.Response:
        self._deps.tradecloud.check(request.headers.get(hdrs.AUTHORIZATION))
        return await self._webhook(request, "tradecloud_shipments", self._parse_tradecloud_shipment)

    async def apicbase_order(self, request: web.Request) -> web.Response:
        # The signature covers the body, so it is verified in the parse; an unsigned
        # call is refused before its body is read.
        self._deps.apicbase.precheck(request.headers.get(SIGNATURE_HEADER))
        return await self._webhook(request, "apicbase_orders", self._parse_apicbase_order)

    async def order_get(self, request: web.Request) -> web.Response:
        self._deps.tradecloud.check(request.headers.get(hdrs.AUTHORIZATION))
        order_id = _document_id(request, "orderId")
        fetcher = self._fetcher()
        document = await self._fetch("order", order_id, "orderId", fetcher.fetch_order)
        # A whole order (up to 500 lines) is normalized off the loop; this path is rare.
        event = await asyncio.to_thread(
            tradecloud.normalize_fetched_order,
            document,
            received_at=self._clock(),
            role=self._deps.role,
            echo_policy=self._deps.echo_policy,
        )
        return await self._accept(request, event)

    async def shipment_get(self, request: web.Request) -> web.Response:
        self._deps.tradecloud.check(request.headers.get(hdrs.AUTHORIZATION))
        shipment_id = _document_id(request, "shipmentId")
        fetcher = self._fetcher()
        document = await self._fetch("shipment", shipment_id, "shipmentId", fetcher.fetch_shipment)
        event = await asyncio.to_thread(
            tradecloud.normalize_fetched_shipment, document, received_at=self._clock()
        )
        return await self._accept(request, event)

    # ------------------------------------------------------------ pipeline

    async def _webhook(self, request: web.Request, endpoint: str, parse: _Parse) -> web.Response:
        _require_json(request, _TXML_HINT if endpoint.startswith("tradecloud") else "")
        body = await self._read(request)
        self._metrics.endpoints[endpoint].body_bytes.observe(len(body))
        if len(body) > OFFLOAD_BYTES:
            event = await asyncio.to_thread(parse, body, request.headers)
        else:
            event = parse(body, request.headers)
        return await self._accept(request, event)

    async def _read(self, request: web.Request) -> bytes:
        declared = request.content_length
        if declared is not None and declared > self._max:
            raise Reject(answers.too_large(self._max))
        try:
            async with asyncio.timeout(self._body_timeout):
                return await request.read()
        except TimeoutError:
            raise Reject(answers.body_timeout(self._body_timeout)) from None
        except web.HTTPRequestEntityTooLarge:
            raise Reject(answers.too_large(self._max)) from None
        except ConnectionResetError:  # aiohttp: "Connection lost" before the declared length
            raise Reject(answers.client_disconnected()) from None

    async def _accept(self, request: web.Request, event: CanonicalEvent) -> web.Response:
        publish = self._publisher.publish
        if await self._flights.run(event.event_id, lambda: publish(event)):
            self._metrics.coalesced.inc()
        if self._debug:
            log.debug(
                "accepted",
                request_id=_REQUEST_ID.get(),
                event_id=event.event_id,
                idempotency_key=event.idempotency_key,
            )
        return web.Response(
            body=b'{"event_id":"' + event.event_id.encode() + b'"}',
            status=202,
            content_type="application/json",
        )

    async def _fetch(
        self, kind: Kind, document_id: str, parameter: str, fetch: Callable[[str], Awaitable[Any]]
    ) -> Any:
        """The GET webhook's document, fetched within ``fetch_timeout_seconds``.

        The budget bounds the whole fetch (login, the API client's own retries
        and backoff, a 429's ``Retry-After``) well inside the platform's webhook
        timeout; when it runs out the fetch is cancelled and the answer is 503,
        which Tradecloud retries later. A document the API does not have is
        recorded, then answered 404 (``_missing``): once the API said so twice,
        ``REFETCH_PAUSE`` apart, as a webhook may reach us before the document
        it announces is readable through the API (read-after-write), and a 404
        ends the platform's retries for good.
        """
        budget = self._deps.fetch_timeout_seconds
        scope = asyncio.timeout(budget)
        try:
            async with scope:
                try:
                    return await fetch(document_id)
                except DocumentNotFound:
                    await asyncio.sleep(min(REFETCH_PAUSE, budget / 4))
                    return await fetch(document_id)
        except TimeoutError:
            if not scope.expired():
                raise  # not our budget: the middleware answers it like any other error
            raise Reject(answers.upstream_timeout(kind, document_id, budget)) from None
        except DocumentNotFound as exc:
            await self._missing(kind, document_id, parameter, exc)

    async def _missing(
        self, kind: Kind, document_id: str, parameter: str, exc: DocumentNotFound
    ) -> NoReturn:
        """Record a GET webhook that names nothing, then answer 404; 503 if not recorded.

        The platform stops retrying at a 4xx, so the 404 is only sent once the
        miss is durable in ``orderbridge.invalid`` (a confirmed publish): an
        operator sees there which GET webhooks pointed at nothing (the
        integration may be sending ids of another company or environment).
        """
        request_id = _REQUEST_ID.get()
        reason = (
            f"document_not_found: GET webhook for Tradecloud {kind} {document_id!r}: "
            f"{exc.detail}; the document does not exist upstream"
        )
        log.warning(
            "GET webhook names a document the Tradecloud API does not have",
            request_id=request_id,
            kind=kind,
            document_id=document_id,
            detail=exc.detail,
        )
        quarantine = self._deps.quarantine
        if quarantine is None:
            raise Reject(
                answers.quarantine_failed(kind, document_id, "no quarantine is configured", 60)
            )
        record = {
            "source": "tradecloud",
            "channel": "webhook",
            "method": "GET",
            "kind": kind,
            "document_id": document_id,
            "upstream_status": exc.status,
            "reason": reason,
        }
        try:
            await quarantine.put(record, reason, kind=kind)
        except RetryableError as failure:
            retry_after = failure.retry_after if failure.retry_after is not None else 5
            raise Reject(
                answers.quarantine_failed(kind, document_id, str(failure), retry_after)
            ) from None
        raise Reject(answers.document_not_found(kind, document_id, parameter))

    def _fetcher(self) -> DocumentFetcher:
        if self._deps.fetcher is None:
            raise Reject(answers.upstream_not_configured())
        return self._deps.fetcher

    # ------------------------------------------------------------ parsing (pure, sync)

    def _parse_tradecloud_order(self, body: bytes, _: Headers) -> CanonicalEvent:
        return tradecloud.normalize_order_webhook(
            _decode(body),
            received_at=self._clock(),
            role=self._deps.role,
            echo_policy=self._deps.echo_policy,
        )

    def _parse_tradecloud_shipment(self, body: bytes, _: Headers) -> CanonicalEvent:
        return tradecloud.normalize_shipment_webhook(_decode(body), received_at=self._clock())

    def _parse_apicbase_order(self, body: bytes, headers: Headers) -> CanonicalEvent:
        form = self._deps.apicbase.check(body, headers.get(SIGNATURE_HEADER))
        self._metrics.signatures.labels(form).inc()
        return apicbase.normalize_purchase_order(
            _decode(body), received_at=self._clock(), channel="webhook"
        )


def _decode(body: bytes) -> Any:
    try:
        return loads_exact(body)
    except NestedTooDeep as exc:
        raise Reject(answers.invalid_payload(exc)) from None
    except InvalidPayload as exc:
        raise Reject(answers.malformed_json(exc)) from None


_TXML_HINT: Final = "in the Tradecloud portal choose the JSON format, not tXML"


def _require_json(request: web.Request, hint: str) -> None:
    """JSON bodies only; a missing Content-Type is taken as JSON (lenient senders)."""
    if hdrs.CONTENT_TYPE not in request.headers:
        return
    content_type = request.content_type
    if content_type == "application/json" or content_type.endswith("+json"):
        return
    raise Reject(answers.unsupported_media_type(content_type, hint))


def _document_id(request: web.Request, name: str) -> str:
    value = request.match_info.get(name) or request.query.get(name, "").strip()
    if not value:
        raise Reject(answers.missing_parameter(name))
    return value


# ---------------------------------------------------------------- middleware

_REQUEST_ID: Final[ContextVar[str]] = ContextVar("ingress_request_id", default="")


def _request_id(headers: Mapping[str, str]) -> str:
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _middleware(
    state: IngressState,
    metrics: IngressMetrics,
    endpoints: Mapping[Callable[..., Awaitable[web.StreamResponse]], str],
) -> Middleware:
    requests = metrics.requests
    in_flight = metrics.in_flight
    counters: dict[tuple[str, str], Any] = {}

    def count(endpoint: str, outcome: str) -> None:
        counter = counters.get((endpoint, outcome))
        if counter is None:
            counter = counters[(endpoint, outcome)] = requests.labels(endpoint, outcome)
        counter.inc()

    @web.middleware
    async def middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
        request_id = _request_id(request.headers)
        _REQUEST_ID.set(request_id)
        endpoint = endpoints.get(request.match_info.route.handler)
        if endpoint is None:
            return await _ops(request, handler, request_id, count)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if state.draining:
            refusal = _problem_response(answers.shutting_down(), request_id)
            refusal.force_close()
            count(endpoint, "shutting_down")
            return refusal
        state.in_flight += 1
        state.idle.clear()
        in_flight.inc()
        response: web.StreamResponse
        try:
            response = await handler(request)
            outcome = answers.ACCEPTED
        except Exception as exc:  # every failure becomes one JSON answer
            problem = _problem(exc, request, endpoint, request_id)
            response = _problem_response(problem, request_id)
            if problem.status == 408:  # the rest of that body must not be read as a request
                response.force_close()
            outcome = problem.error
        finally:
            state.in_flight -= 1
            in_flight.dec()
            if state.in_flight == 0:
                state.idle.set()
        response.headers[REQUEST_ID_HEADER] = request_id
        metrics.endpoints[endpoint].duration.observe(loop.time() - started)
        count(endpoint, outcome)
        return response

    return middleware


async def _ops(
    request: web.Request,
    handler: _Handler,
    request_id: str,
    count: Callable[[str, str], None],
) -> web.StreamResponse:
    """Ops endpoints and unmatched paths: same request id and error shape, no body work."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        problem = _http_problem(exc)
        count("unmatched", problem.error)
        response = _problem_response(problem, request_id)
        if exc.status == 405:
            response.headers[hdrs.ALLOW] = exc.headers.get(hdrs.ALLOW, "")
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _http_problem(exc: web.HTTPException) -> Problem:
    if exc.status == 404:
        return Problem(404, "not_found", "no such endpoint; see /openapi.json")
    if exc.status == 405:
        allowed = exc.headers.get(hdrs.ALLOW, "")
        return Problem(405, "method_not_allowed", f"method not allowed here; allowed: {allowed}")
    if exc.status == 413:
        return Problem(413, "payload_too_large", "the body is too large")
    return Problem(exc.status, "bad_request", exc.text or exc.reason)


def _problem(exc: Exception, request: web.Request, endpoint: str, request_id: str) -> Problem:
    if isinstance(exc, Reject):
        problem = exc.problem
    elif isinstance(exc, web.HTTPException):
        problem = _http_problem(exc)
    else:
        problem = answers.problem_for(exc)
    if problem.error == "internal_error":
        log.exception(
            "unexpected error; answered 503 so the sender retries",
            request_id=request_id,
            endpoint=endpoint,
        )
    elif problem.status >= 500:
        log.warning(
            "webhook not accepted: transient",
            request_id=request_id,
            endpoint=endpoint,
            status=problem.status,
            error=problem.error,
            reason=problem.message,
        )
    else:
        log.info(
            "webhook rejected",
            request_id=request_id,
            endpoint=endpoint,
            method=request.method,
            status=problem.status,
            error=problem.error,
            path=problem.path,
            reason=problem.message,
        )
    return problem


def _problem_response(problem: Problem, request_id: str) -> web.Response:
    response = web.Response(
        body=problem.body(request_id),
        status=problem.status,
        content_type="application/json",
        headers=problem.headers(),
    )
    response.headers[REQUEST_ID_HEADER] = request_id
    return response
