"""The Tradecloud API v2 simulator: an aiohttp app over a ``World``.

API (api-facts §2): JWT login / refresh / logout with tokens in response
headers; ``POST /v2/order-search/poll`` (and ``/single-delivery``) and
``POST /v2/shipment/poll`` with ``filters.lastUpdatedAfter`` (strictly after;
the legacy ``lastUpdatedSince`` too), ``filters.status.*`` arrays, ``offset``
and ``limit`` (over 100 → 400), ascending by ``lastUpdatedAt``, answering
``{data, total, lastUpdatedAt}``; ``GET /v2/order/{id}`` and
``GET /v2/shipment/{id}`` (Bearer only: Basic is refused there, seed 000).
Basic auth is accepted on the poll endpoints. At most ``rate_limit`` requests
per second per user (a token bucket; 429 with ``Retry-After``), api-facts §2.6.

Polls are served from the world's ``lastUpdatedAt`` index and pre-rendered
documents, so the simulator is never the bottleneck (bench.simulator).

Control (``/_control/…``, no auth; for tests and demos): create orders, advance
lifecycles, resend orders, approve shipments, configure webhook targets (every
change is then pushed), inject faults (``services.simulators.faults``: status
codes, slow answers, connection resets, expired tokens) and read delivery
outcomes. ``TradecloudSimulator`` offers the same as a Python API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

from aiohttp import web

from services.simulators.faults import Fault, FaultBook, add_fault_routes
from services.simulators.limits import TokenBucket
from services.simulators.serving import Handler, problem, read_object, reply
from services.simulators.tradecloud.webhooks import Delivery, Kind, WebhookSender, WebhookTarget
from services.simulators.tradecloud.world import (
    RULES,
    Change,
    Order,
    Step,
    World,
    iso_ms,
    parse_ms,
)
from shared.errors import InvalidPayload
from shared.schema.codec import loads_exact

__all__ = ["Fault", "TradecloudSimulator", "create_app"]

MAX_LIMIT: Final = 100
STEPS: Final = frozenset((*RULES, "approve_shipment"))


@dataclass
class _Session:
    username: str
    expires: float


@dataclass
class TradecloudSimulator:
    """The simulated platform: world, users, tokens, faults, webhook sender."""

    world: World = field(default_factory=World)
    users: dict[str, str] = field(default_factory=lambda: {"integration@buyer.example": "secret"})
    access_ttl: float = 3600.0
    refresh_ttl: float = 86400.0
    rate_limit: float = 10.0
    sender: WebhookSender = field(default_factory=WebhookSender)
    requests: int = 0
    throttled: int = 0
    _access: dict[str, _Session] = field(default_factory=dict)
    _refresh: dict[str, _Session] = field(default_factory=dict)
    faults: FaultBook = field(init=False)
    limiter: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.faults = FaultBook(self.expire_tokens)
        self.limiter = TokenBucket(self.rate_limit)

    # ------------------------------------------------------------ Python control API

    def create_orders(
        self, count: int = 1, *, lines: int | None = None, single_delivery: bool = False
    ) -> list[str]:
        ids = []
        for _ in range(count):
            change = self.world.issue_order(lines=lines, single_delivery=single_delivery)
            self.push(change)
            ids.append(change.document_id)
        return ids

    def advance(self, order_id: str | None = None, step: Step | None = None) -> Change | None:
        """One lifecycle step of one order (a random order and step by default)."""
        if order_id is None:
            order_id = self._movable_order()
            if order_id is None:
                return None
        before = len(self.world.changes)
        change = self.world.advance(order_id, step)
        for extra in self.world.changes[before:]:
            self.push(extra)  # a shipment step also issues a shipment
        return change

    def _movable_order(self) -> str | None:
        """A random order that can still change (a few random draws, then a full scan)."""
        world = self.world
        ids = list(world.orders)
        for _ in range(min(20, len(ids))):
            order_id = world.rng.choice(ids)
            if world.possible_steps(world.orders[order_id]):
                return order_id
        movable = [o.id for o in world.orders.values() if world.possible_steps(o)]
        return world.rng.choice(movable) if movable else None

    def push(self, change: Change) -> Delivery | None:
        """Send ``change`` to the configured webhook target of its kind."""
        return self.sender.enqueue(
            change.kind,
            change.event_name,
            change.document_id,
            change.message_id,
            lambda target: self.world.webhook_body(
                change,
                single_delivery=target.single_delivery,
                meta=target.meta,
                legacy=target.legacy,
            ),
        )

    def resend(self, order_id: str) -> Delivery | None:
        """The buyer presses "Resend" in the portal: the whole order goes out again."""
        order = self.world.orders[order_id]
        change = Change(
            "order",
            "OrderResentByBuyer",
            order.id,
            tuple(line.id for line in order.lines),
            self.world.uuid(),
            order.updated_ms,
        )
        return self.push(change)

    def inject(self, fault: Fault) -> None:
        self.faults.inject(fault)

    def expire_tokens(self) -> None:
        for session in self._access.values():
            session.expires = 0.0

    async def drive(
        self, rate: float, *, new_order_share: float = 0.2, stop: asyncio.Event | None = None
    ) -> None:
        """Keep the world moving: ``rate`` changes per second until ``stop`` is set."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            if not self.world.orders or self.world.rng.random() < new_order_share:
                self.create_orders(1)
            else:
                self.advance()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0 / rate)

    # ------------------------------------------------------------ auth

    def _issue(self, username: str) -> tuple[str, str]:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.monotonic()
        self._access[access] = _Session(username, now + self.access_ttl)
        self._refresh[refresh] = _Session(username, now + self.refresh_ttl)
        return access, refresh

    def _basic_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.users.get(user) == password else None

    def _bearer_user(self, header: str | None) -> str | None:
        if not header or not header.startswith("Bearer "):
            return None
        session = self._access.get(header[7:].strip())
        if session is None or session.expires <= time.monotonic():
            return None
        return session.username

    def authenticate(self, request: web.Request, *, basic_allowed: bool) -> str:
        header = request.headers.get("Authorization")
        user = self._bearer_user(header)
        if user is None and basic_allowed:
            user = self._basic_user(header)
        if user is None:
            reason = (
                "Basic authentication is not supported here"
                if (header or "").startswith("Basic ") and not basic_allowed
                else "unauthorized"
            )
            raise web.HTTPUnauthorized(text=reason)
        return user

    def client_key(self, request: web.Request) -> str:
        """Whom the rate limit counts: the user behind the credentials, else the address."""
        header = request.headers.get("Authorization")
        user = self._bearer_user(header) or self._basic_user(header)
        return f"user:{user}" if user else f"addr:{request.remote}"


SIMULATOR: Final = web.AppKey("tradecloud_simulator", TradecloudSimulator)


# ---------------------------------------------------------------- app


def create_app(simulator: TradecloudSimulator) -> web.Application:
    app = web.Application(middlewares=[_api_middleware])
    app[SIMULATOR] = simulator
    r = app.router
    r.add_get("/v2/authentication/login", _login)
    r.add_get("/v2/authentication/refresh", _refresh)
    r.add_post("/v2/authentication/logout", _logout)
    r.add_post("/v2/order-search/poll", _poll_orders(single_delivery=False))
    r.add_post("/v2/order-search/poll/single-delivery", _poll_orders(single_delivery=True))
    r.add_post("/v2/shipment/poll", _poll_shipments)
    r.add_get("/v2/order/{order_id}", _get_order)
    r.add_get("/v2/shipment/{shipment_id}", _get_shipment)
    r.add_get("/_control/state", _state)
    r.add_post("/_control/orders", _create_orders)
    r.add_get("/_control/orders/{order_id}", _control_order)
    r.add_post("/_control/orders/{order_id}/advance", _advance_order)
    r.add_post("/_control/orders/{order_id}/resend", _resend_order)
    r.add_post("/_control/advance", _advance_many)
    r.add_post("/_control/shipments/{shipment_id}/approve", _approve_shipment)
    r.add_post("/_control/webhooks", _configure_webhook)
    r.add_delete("/_control/webhooks/{kind}", _remove_webhook)
    r.add_get("/_control/deliveries", _deliveries)
    r.add_post("/_control/tokens/expire", _expire_tokens)
    add_fault_routes(app, lambda request: request.app[SIMULATOR].faults, default_path="/v2/")
    app.cleanup_ctx.append(_close_sender)
    return app


async def _close_sender(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SIMULATOR].sender.close()


@web.middleware
async def _api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults first, then the per-user rate limit (429 with ``Retry-After``)."""
    if not request.path.startswith("/v2/"):
        return await handler(request)
    sim = request.app[SIMULATOR]
    sim.requests += 1
    answer = await sim.faults.intercept(request)
    if answer is not None:
        return answer
    wait = sim.limiter.take(sim.client_key(request), time.monotonic())
    if wait is not None:
        sim.throttled += 1
        return reply(
            {"error": "Too many requests: at most 10 requests per second"},
            status=429,
            headers={"Retry-After": str(max(1, round(wait)))},
        )
    return await handler(request)


def _sim(request: web.Request) -> TradecloudSimulator:
    return request.app[SIMULATOR]


async def _login(request: web.Request) -> web.Response:
    sim = _sim(request)
    user = sim._basic_user(request.headers.get("Authorization"))
    if user is None:
        raise web.HTTPUnauthorized(text="invalid credentials")
    access, refresh = sim._issue(user)
    return web.Response(
        status=200, headers={"Set-Authorization": access, "Set-Refresh-Token": refresh}
    )


async def _refresh(request: web.Request) -> web.Response:
    sim = _sim(request)
    token = request.headers.get("Refresh-Token", "")
    session = sim._refresh.pop(token, None)  # the old refresh token dies either way
    if session is None or session.expires <= time.monotonic():
        raise web.HTTPUnauthorized(text="invalid refresh token")
    access, refresh = sim._issue(session.username)
    return web.Response(
        status=200, headers={"Set-Authorization": access, "Set-Refresh-Token": refresh}
    )


async def _logout(request: web.Request) -> web.Response:
    _sim(request)._refresh.pop(request.headers.get("Refresh-Token", ""), None)
    return web.Response(status=200)


async def _poll_request(request: web.Request) -> tuple[int, int, int, dict[str, list[str]]]:
    try:
        body = loads_exact(await request.read()) if request.can_read_body else {}
    except InvalidPayload as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    filters = body.get("filters") or {}
    if not isinstance(filters, dict):
        raise web.HTTPBadRequest(text="filters must be an object")
    since = filters.get("lastUpdatedAfter") or filters.get("lastUpdatedSince")
    try:
        since_ms = parse_ms(since) if since else -1
    except (TypeError, ValueError):
        raise web.HTTPBadRequest(text="filters.lastUpdatedAfter: not an ISO date-time") from None
    limit, offset = body.get("limit", MAX_LIMIT), body.get("offset", 0)
    if not isinstance(limit, int) or not 0 < limit <= MAX_LIMIT:
        raise web.HTTPBadRequest(text=f"limit must be between 1 and {MAX_LIMIT}")
    if not isinstance(offset, int) or offset < 0:
        raise web.HTTPBadRequest(text="offset must be a non-negative integer")
    status = filters.get("status") or {}
    if not isinstance(status, dict) or not all(isinstance(v, list) for v in status.values()):
        raise web.HTTPBadRequest(text="filters.status.* must be arrays")
    return since_ms, offset, limit, status


def _order_matches(order: Order, status: dict[str, list[str]]) -> bool:
    if (wanted := status.get("processStatus")) and order.process_status not in wanted:
        return False
    if (wanted := status.get("logisticsStatus")) and order.logistics_status not in wanted:
        return False
    if (wanted := status.get("inProgressStatus")) and not any(
        line.in_progress in wanted for line in order.lines
    ):
        return False
    wanted = status.get("deliveryLineStatus")
    return not wanted or any(line.logistics in wanted for line in order.lines)


def _page_body(items: list[bytes], total: int, newest_ms: int) -> bytes:
    """``{data, total, lastUpdatedAt}`` from pre-rendered documents (no re-encoding)."""
    tail = b'"total":%d' % total
    if newest_ms >= 0:
        tail += b',"lastUpdatedAt":"' + iso_ms(newest_ms).encode() + b'"'
    return b'{"data":[' + b",".join(items) + b"]," + tail + b"}"


def _poll_orders(*, single_delivery: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        sim = _sim(request)
        sim.authenticate(request, basic_allowed=True)
        since_ms, offset, limit, status = await _poll_request(request)
        world = sim.world
        if status:
            matches = [o for o in world.orders_after(since_ms) if _order_matches(o, status)]
            page, total = matches[offset : offset + limit], len(matches)
            newest = matches[-1].updated_ms if matches else -1
        else:
            page, total, newest = world.orders_page(since_ms, offset, limit)
        items = [world.order_json(order, single_delivery=single_delivery) for order in page]
        return web.Response(body=_page_body(items, total, newest), content_type="application/json")

    return handler


async def _poll_shipments(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.authenticate(request, basic_allowed=True)
    since_ms, offset, limit, status = await _poll_request(request)
    wanted = status.get("processStatus")
    matches = [s for s in sim.world.shipments_after(since_ms) if not wanted or s.status in wanted]
    items = [sim.world.shipment_json(shipment) for shipment in matches[offset : offset + limit]]
    newest = matches[-1].updated_ms if matches else -1
    return web.Response(
        body=_page_body(items, len(matches), newest), content_type="application/json"
    )


async def _get_order(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.authenticate(request, basic_allowed=False)
    order = sim.world.orders.get(request.match_info["order_id"])
    if order is None:
        raise web.HTTPNotFound(text="order not found")
    body = sim.world.order_json(order, single_delivery=False)
    return web.Response(body=body, content_type="application/json")


async def _get_shipment(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.authenticate(request, basic_allowed=False)
    shipment = sim.world.shipments.get(request.match_info["shipment_id"])
    if shipment is None:
        raise web.HTTPNotFound(text="shipment not found")
    return web.Response(body=sim.world.shipment_json(shipment), content_type="application/json")


# ---------------------------------------------------------------- control routes


async def _state(request: web.Request) -> web.Response:
    sim = _sim(request)
    deliveries = sim.sender.deliveries
    return reply(
        {
            "orders": len(sim.world.orders),
            "shipments": len(sim.world.shipments),
            "changes": len(sim.world.changes),
            "requests": sim.requests,
            "throttled": sim.throttled,
            "faults_pending": len(sim.faults.pending),
            "deliveries": len(deliveries),
            "deliveries_by_state": {
                state: sum(d.state == state for d in deliveries)
                for state in ("pending", "delivered", "failed", "gave_up")
            },
            "webhooks": {kind: target.url for kind, target in sim.sender.targets.items()},
        }
    )


async def _create_orders(request: web.Request) -> web.Response:
    body = await read_object(request)
    lines = body.get("lines")
    if lines is not None and (not isinstance(lines, int) or not 1 <= lines <= 500):
        return problem(400, "lines: 1..500 (Tradecloud's cap per order)")
    ids = _sim(request).create_orders(
        int(body.get("count", 1)),
        lines=lines,
        single_delivery=bool(body.get("single_delivery", False)),
    )
    return reply({"order_ids": ids}, status=201)


def _known_order(request: web.Request) -> Order:
    order = _sim(request).world.orders.get(request.match_info["order_id"])
    if order is None:
        raise web.HTTPNotFound(text="order not found")
    return order


async def _control_order(request: web.Request) -> web.Response:
    sim = _sim(request)
    order = _known_order(request)
    return reply(
        {
            "order": loads_exact(sim.world.order_json(order)),
            "possible_steps": sorted(set(sim.world.possible_steps(order))),
        }
    )


async def _advance_order(request: web.Request) -> web.Response:
    body = await read_object(request)
    sim = _sim(request)
    order = _known_order(request)
    step = body.get("step")
    if step is not None and step not in STEPS:
        return problem(400, f"step must be one of {sorted(STEPS)}")
    try:
        change = sim.advance(order.id, step)
    except ValueError as exc:
        return problem(409, str(exc))
    return reply(_change_json(change))


async def _resend_order(request: web.Request) -> web.Response:
    delivery = _sim(request).resend(_known_order(request).id)
    return reply(delivery.as_json() if delivery is not None else None, status=202)


async def _advance_many(request: web.Request) -> web.Response:
    body = await read_object(request)
    sim = _sim(request)
    changes = [sim.advance() for _ in range(int(body.get("count", 1)))]
    return reply({"changes": [_change_json(c) for c in changes if c is not None]})


async def _approve_shipment(request: web.Request) -> web.Response:
    sim = _sim(request)
    shipment_id = request.match_info["shipment_id"]
    if shipment_id not in sim.world.shipments:
        raise web.HTTPNotFound(text="shipment not found")
    change = sim.world.approve_shipment(shipment_id)
    sim.push(change)
    return reply(_change_json(change))


def _change_json(change: Change | None) -> Any:
    if change is None:
        return None
    return {
        "kind": change.kind,
        "event_name": change.event_name,
        "document_id": change.document_id,
        "message_id": change.message_id,
        "line_ids": list(change.line_ids),
        "last_updated_at": iso_ms(change.updated_ms),
    }


async def _configure_webhook(request: web.Request) -> web.Response:
    body = await read_object(request)
    kind: Kind = body.get("kind", "order")
    if kind not in ("order", "order_documents", "shipment"):
        return problem(400, "kind: order, order_documents or shipment")
    if not isinstance(body.get("url"), str):
        return problem(400, "url: the receiver's URL")
    meta = body.get("meta", "top")
    if meta not in ("top", "inside", "both"):
        return problem(400, "meta: top, inside or both")
    _sim(request).sender.configure(
        WebhookTarget(
            kind=kind,
            url=body["url"],
            username=body.get("username"),
            password=body.get("password"),
            token=body.get("token"),
            single_delivery=bool(body.get("single_delivery", False)),
            method="PUT" if body.get("method") == "PUT" else "POST",
            meta=meta,
            legacy=bool(body.get("legacy", False)),
        )
    )
    return reply({"configured": kind})


async def _remove_webhook(request: web.Request) -> web.Response:
    kind = request.match_info["kind"]
    if kind not in ("order", "order_documents", "shipment"):
        raise web.HTTPNotFound(text="kind: order, order_documents or shipment")
    removed = _sim(request).sender.targets.pop(cast(Kind, kind), None)
    return reply({"removed": removed.url if removed is not None else None})


async def _deliveries(request: web.Request) -> web.Response:
    state = request.query.get("state")
    kind = request.query.get("kind")
    return reply(
        [
            d.as_json()
            for d in _sim(request).sender.deliveries
            if (state is None or d.state == state) and (kind is None or d.kind == kind)
        ]
    )


async def _expire_tokens(request: web.Request) -> web.Response:
    _sim(request).expire_tokens()
    return reply({"expired": True})
