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
lifecycles (a request step with chosen content: ``{"step": "propose",
"request": {"reason": "capacity", "currency": "CNY", "decimals": 18, …}}``, or
``{"proposal": {…}}`` when creating orders), resend orders, approve shipments,
configure webhook targets (every
change is then pushed), inject faults (``services.simulators.faults``: status
codes, slow answers, connection resets, expired tokens) and read delivery
outcomes. ``TradecloudSimulator`` offers the same as a Python API.

Documented mode (``TradecloudSimulator(documented=True)``, ``--documented``)
turns on the world's documented situations (``world.World``), a webhook sender
that delivers in parallel and out of order (``webhooks.WebhookSender``), poll
answers without ``total`` for a share of polls (``{data, lastUpdatedAt}``
only), and random deletions while driving. Each situation can also be produced
on demand (control routes below), and the truth a test compares against is
readable: every order and shipment as the API returns it now
(``GET /_control/documents``) and every message, pushed or not
(``GET /_control/changes``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import random
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, Literal, cast

from aiohttp import web

from services.simulators.faults import Fault, FaultBook, add_fault_routes
from services.simulators.limits import TokenBucket
from services.simulators.serving import Handler, problem, read_object, reply
from services.simulators.tradecloud.content import RequestSpec
from services.simulators.tradecloud.webhooks import Delivery, Kind, WebhookSender, WebhookTarget
from services.simulators.tradecloud.world import (
    RULES,
    Change,
    Order,
    Shipment,
    Step,
    StepOptions,
    World,
    iso_ms,
    parse_ms,
)
from shared.errors import InvalidPayload
from shared.schema.codec import dumps_exact, loads_exact

__all__ = ["Fault", "TradecloudSimulator", "create_app"]

MAX_LIMIT: Final = 100
DOCUMENTED_STEPS: Final = frozenset(
    {
        "reassign_contact",
        "update_labels",
        "update_indicators",
        "change_item_details",
        "attach_order_document",
        "line_and_logistics_update",
        "resend",
        "reject_shipment",
        "update_shipment_header",
        "reissue_shipment",
    }
)
STEPS: Final = frozenset((*RULES, "approve_shipment", *DOCUMENTED_STEPS))
SHIPMENT_ACTIONS: Final = ("approve", "reject", "update-header", "reissue")
REQUEST_STEPS: Final = ("propose", "buyer_reopen", "supplier_reopen")
"""Steps a ``request`` spec gives content to."""


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
    documented: bool = False
    """Documented mode; also on when the world was built with ``documented=True``."""
    omit_total: bool | None = None
    """Poll answers without ``total``: True always, False never, None a share of them."""
    omit_total_share: float = 0.0
    """Share of poll answers without ``total`` when ``omit_total`` is None."""
    delete_share: float = 0.0
    """Share of driven steps that delete an order (documented mode)."""
    requests: int = 0
    throttled: int = 0
    polls_without_total: int = 0
    _access: dict[str, _Session] = field(default_factory=dict)
    _refresh: dict[str, _Session] = field(default_factory=dict)
    faults: FaultBook = field(init=False)
    limiter: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.faults = FaultBook(self.expire_tokens)
        self.limiter = TokenBucket(self.rate_limit)
        # Poll-answer draws have their own generator: polls never change the world.
        self._poll_rng = random.Random(self.world.seed * 15_485_863 + 3)
        if self.documented or self.world.documented:
            self.use_documented()

    def use_documented(self) -> None:
        """Documented mode: the world, the webhook sender and the poll answers."""
        self.documented = True
        if not self.world.documented:
            self.world.enable_documented()
        self.sender.use_documented(self.world.seed)
        self.omit_total_share = self.omit_total_share or 0.25
        self.delete_share = self.delete_share or 0.005

    # ------------------------------------------------------------ Python control API

    def create_orders(
        self,
        count: int = 1,
        *,
        lines: int | None = None,
        single_delivery: bool = False,
        zoneless: bool | None = None,
        proposal: RequestSpec | None = None,
    ) -> list[str]:
        """Issue ``count`` orders (``zoneless``: their stamps without a zone; None: the mode).

        ``proposal``: the supplier then proposes exactly that on each new order
        (its first line, or ``proposal.line``), pushed like any change.
        """
        ids = []
        for _ in range(count):
            change = self.world.issue_order(
                lines=lines, single_delivery=single_delivery, zoneless=zoneless
            )
            self.push(change)
            ids.append(change.document_id)
            if proposal is not None:
                self.advance_all(change.document_id, "propose", StepOptions(request=proposal))
        return ids

    def advance(
        self,
        order_id: str | None = None,
        step: Step | None = None,
        options: StepOptions | None = None,
    ) -> Change | None:
        """One lifecycle step of one order (a random order and step by default)."""
        changes = self.advance_all(order_id, step, options)
        return changes[0] if changes else None

    def advance_all(
        self,
        order_id: str | None = None,
        step: Step | None = None,
        options: StepOptions | None = None,
    ) -> list[Change]:
        """Like ``advance``, but every change the step made (a command can make two)."""
        if order_id is None:
            order_id = self._movable_order()
            if order_id is None:
                return []
        before = len(self.world.changes)
        self.world.advance(order_id, step, options)
        changes = self.world.changes[before:]
        for change in changes:
            self.push(change)  # a shipment step also issues a shipment
        return changes

    def _movable_order(self) -> str | None:
        """A random order that can still change (a few random draws, then a full scan)."""
        world = self.world
        ids = list(world.orders)
        for _ in range(min(20, len(ids))):
            order_id = world.rng.choice(ids)
            if world.can_move(world.orders[order_id]):
                return order_id
        movable = [o.id for o in world.orders.values() if world.can_move(o)]
        return world.rng.choice(movable) if movable else None

    def push(self, change: Change) -> Delivery | None:
        """Send ``change`` to the configured webhook target of its kind.

        Nothing goes out for an event the integration is not subscribed to,
        and a deletion goes out only to a legacy GET target (no POST event
        exists for it).
        """
        if not change.subscribed:
            return None
        target = self.sender.targets.get(change.kind)
        if change.get_only and (target is None or target.method != "GET"):
            return None
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

    def resend(
        self, order_id: str, *, by: Literal["buyer", "supplier"] = "buyer"
    ) -> Delivery | None:
        """The buyer presses "Resend" in the portal: the whole order goes out again."""
        return self.push(self.world.resend(order_id, by=by))

    def delete_order(self, order_id: str) -> tuple[Change, Delivery | None]:
        """The order is deleted; a legacy GET target is called for it (then ``GET`` → 404)."""
        change = self.world.delete_order(order_id)
        return change, self.push(change)

    def shipment_action(
        self, shipment_id: str, action: str, *, reason: str | None = None, what: str | None = None
    ) -> Change:
        """``approve``, ``reject`` (``reason``), ``update-header`` (``what``) or ``reissue``."""
        world = self.world
        if action == "approve":
            change = world.approve_shipment(shipment_id)
        elif action == "reject":
            change = world.reject_shipment(shipment_id, reason)
        elif action == "update-header":
            headers: dict[str | None, Literal["locations", "erp_meta"] | None] = {
                None: None,
                "locations": "locations",
                "erp_meta": "erp_meta",
            }
            if what not in headers:
                raise ValueError("what: locations or erp_meta")
            change = world.update_shipment_header(shipment_id, headers[what])
        elif action == "reissue":
            change = world.reissue_shipment(shipment_id)
        else:
            raise ValueError(f"action must be one of {SHIPMENT_ACTIONS}")
        self.push(change)
        return change

    def poll_with_total(self) -> bool:
        """Whether this poll answer carries ``total`` (documented: not always)."""
        if self.omit_total is not None:
            omitted = self.omit_total
        else:
            omitted = (
                bool(self.omit_total_share) and self._poll_rng.random() < self.omit_total_share
            )
        self.polls_without_total += omitted
        return not omitted

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
            elif self.delete_share and self.world.rng.random() < self.delete_share:
                self.delete_order(self.world.rng.choice(list(self.world.orders)))
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
    r.add_post("/_control/orders/{order_id}/delete", _delete_order)
    r.add_post("/_control/orders/{order_id}/zoneless", _zoneless)
    r.add_post("/_control/advance", _advance_many)
    r.add_get("/_control/shipments/{shipment_id}", _control_shipment)
    r.add_post("/_control/shipments/{shipment_id}/zoneless", _zoneless)
    r.add_post("/_control/shipments/{shipment_id}/{action}", _shipment_action)
    r.add_get("/_control/documents", _documents)
    r.add_get("/_control/changes", _changes)
    r.add_post("/_control/poll", _configure_poll)
    r.add_post("/_control/webhooks", _configure_webhook)
    r.add_post("/_control/webhooks/hold", _hold_webhooks)
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


def _page_body(items: list[bytes], total: int, newest_ms: int, with_total: bool = True) -> bytes:
    """``{data, total, lastUpdatedAt}`` from pre-rendered documents (no re-encoding).

    Without ``total`` (documented mode, for a share of answers): ``{data,
    lastUpdatedAt}``. The cursor always keeps ``…SSSZ``, whatever the documents'
    own stamps look like.
    """
    tail = [b'"total":%d' % total] if with_total else []
    if newest_ms >= 0:
        tail.append(b'"lastUpdatedAt":"' + iso_ms(newest_ms).encode() + b'"')
    return b'{"data":[' + b",".join([b",".join(items) + b"]", *tail]) + b"}"


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
        body = _page_body(items, total, newest, sim.poll_with_total())
        return web.Response(body=body, content_type="application/json")

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
        body=_page_body(items, len(matches), newest, sim.poll_with_total()),
        content_type="application/json",
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
            "documented": sim.documented,
            "deleted_orders": len(sim.world.deleted),
            "unsubscribed_changes": sum(not c.subscribed for c in sim.world.changes),
            "polls_without_total": sim.polls_without_total,
        }
    )


async def _create_orders(request: web.Request) -> web.Response:
    """``{count, lines, single_delivery, zoneless, proposal}``.

    ``proposal`` (a request spec, see ``_advance_order``) makes the supplier
    propose exactly that on each new order; the answer then lists those
    changes too.
    """
    body = await read_object(request)
    lines = body.get("lines")
    if lines is not None and (not isinstance(lines, int) or not 1 <= lines <= 500):
        return problem(400, "lines: 1..500 (Tradecloud's cap per order)")
    zoneless = body.get("zoneless")
    if zoneless is not None and not isinstance(zoneless, bool):
        return problem(400, "zoneless: true, false or null (the mode decides)")
    proposal = None
    if body.get("proposal") is not None:
        try:
            proposal = RequestSpec.from_json(body["proposal"])
        except ValueError as exc:
            return problem(400, str(exc).replace("request", "proposal", 1))
    sim = _sim(request)
    before = len(sim.world.changes)
    try:
        ids = sim.create_orders(
            int(body.get("count", 1)),
            lines=lines,
            single_delivery=bool(body.get("single_delivery", False)),
            zoneless=zoneless,
            proposal=proposal,
        )
    except ValueError as exc:
        return problem(409, str(exc))
    answer: dict[str, Any] = {"order_ids": ids}
    if proposal is not None:
        answer["changes"] = [_change_json(c) for c in sim.world.changes[before:]]
    return reply(answer, status=201)


def _known_order(request: web.Request) -> Order:
    sim = _sim(request)
    order_id = request.match_info["order_id"]
    order = sim.world.orders.get(order_id)
    if order is None:
        if order_id in sim.world.deleted:
            raise web.HTTPNotFound(
                text='{"detail": "order deleted", "deleted": true}',
                content_type="application/json",
            )
        raise web.HTTPNotFound(text="order not found")
    return order


def _known_shipment(request: web.Request) -> Shipment:
    shipment = _sim(request).world.shipments.get(request.match_info["shipment_id"])
    if shipment is None:
        raise web.HTTPNotFound(text="shipment not found")
    return shipment


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
    """One step; the first change's fields, and ``changes``: every change it made.

    ``{step, subscribed, by, lines, request}``; ``request`` gives a request
    step (``propose``, ``buyer_reopen``, ``supplier_reopen``) its content:
    ``{reason, currency, decimals, price, quantity, date | days, base_price,
    charge_lines, prices_including_requests, line}``, every field optional
    (``content.RequestSpec``). 409 when the step or the line cannot be done now.
    """
    body = await read_object(request)
    sim = _sim(request)
    order = _known_order(request)
    step = body.get("step")
    if step is not None and step not in STEPS:
        return problem(400, f"step must be one of {sorted(STEPS)}")
    subscribed, by, lines = body.get("subscribed"), body.get("by"), body.get("lines")
    if subscribed is not None and not isinstance(subscribed, bool):
        return problem(400, "subscribed: true, false or null")
    if by not in (None, "buyer", "supplier"):
        return problem(400, "by: buyer or supplier")
    if lines not in (None, "empty", "omit"):
        return problem(400, "lines: empty or omit (a header-only event's lines)")
    spec = None
    if body.get("request") is not None:
        if step not in REQUEST_STEPS:
            return problem(400, f"request: only with step {' or '.join(REQUEST_STEPS)}")
        try:
            spec = RequestSpec.from_json(body["request"])
        except ValueError as exc:
            return problem(400, str(exc))
    try:
        changes = sim.advance_all(order.id, step, StepOptions(subscribed, by, lines, spec))
    except ValueError as exc:
        return problem(409, str(exc))
    if not changes:
        return reply(None)
    return reply(_change_json(changes[0]) | {"changes": [_change_json(c) for c in changes]})


async def _resend_order(request: web.Request) -> web.Response:
    body = await read_object(request)
    by = body.get("by", "buyer")
    if by not in ("buyer", "supplier"):
        return problem(400, "by: buyer or supplier")
    delivery = _sim(request).resend(_known_order(request).id, by=by)
    return reply(delivery.as_json() if delivery is not None else None, status=202)


async def _delete_order(request: web.Request) -> web.Response:
    change, delivery = _sim(request).delete_order(_known_order(request).id)
    return reply(
        {
            "change": _change_json(change),
            "delivery": delivery.as_json() if delivery is not None else None,
        },
        status=202,
    )


async def _zoneless(request: web.Request) -> web.Response:
    """``{zoneless: bool}``: render the document's ``lastUpdatedAt`` stamps without a zone."""
    body = await read_object(request)
    zoneless = body.get("zoneless", True)
    if not isinstance(zoneless, bool):
        return problem(400, "zoneless: true or false")
    sim = _sim(request)
    if "order_id" in request.match_info:
        document_id = _known_order(request).id
    else:
        document_id = _known_shipment(request).id
    sim.world.set_zoneless(document_id, zoneless)
    return reply({"document_id": document_id, "zoneless": zoneless})


async def _advance_many(request: web.Request) -> web.Response:
    body = await read_object(request)
    sim = _sim(request)
    changes = [sim.advance() for _ in range(int(body.get("count", 1)))]
    return reply({"changes": [_change_json(c) for c in changes if c is not None]})


async def _control_shipment(request: web.Request) -> web.Response:
    sim = _sim(request)
    shipment = _known_shipment(request)
    return reply(
        {
            "shipment": loads_exact(sim.world.shipment_json(shipment)),
            "order_id": shipment.order_id,
            "order_deleted": shipment.order_id in sim.world.deleted,
        }
    )


async def _shipment_action(request: web.Request) -> web.Response:
    """``approve``, ``reject {reason}``, ``update-header {what}``, ``reissue``."""
    action = request.match_info["action"]
    if action not in SHIPMENT_ACTIONS:
        raise web.HTTPNotFound(text=f"shipment actions: {', '.join(SHIPMENT_ACTIONS)}")
    body = await read_object(request)
    shipment = _known_shipment(request)
    try:
        change = _sim(request).shipment_action(
            shipment.id, action, reason=body.get("reason"), what=body.get("what")
        )
    except ValueError as exc:
        return problem(400, str(exc))
    return reply(_change_json(change))


async def _documents(request: web.Request) -> web.Response:
    """The final truth: every order and shipment exactly as the API returns it now."""
    world = _sim(request).world
    orders = b",".join(
        b'"%s":%s' % (order_id.encode(), world.order_json(order))
        for order_id, order in world.orders.items()
    )
    shipments = b",".join(
        b'"%s":%s' % (shipment_id.encode(), world.shipment_json(shipment))
        for shipment_id, shipment in world.shipments.items()
    )
    deleted = dumps_exact(list(world.deleted))
    body = b'{"orders":{%s},"shipments":{%s},"deleted_orders":%s}' % (orders, shipments, deleted)
    return web.Response(body=body, content_type="application/json")


async def _changes(request: web.Request) -> web.Response:
    """Every message the platform made, pushed or not (``?document_id=`` narrows it)."""
    document_id = request.query.get("document_id")
    return reply(
        [
            _change_json(change)
            for change in _sim(request).world.changes
            if document_id is None or change.document_id == document_id
        ]
    )


async def _configure_poll(request: web.Request) -> web.Response:
    """``{omit_total: true|false|null, omit_total_share}``: poll answers without ``total``."""
    body = await read_object(request)
    sim = _sim(request)
    omit = body.get("omit_total", sim.omit_total)
    if omit is not None and not isinstance(omit, bool):
        return problem(400, "omit_total: true, false or null (a share of answers)")
    share = body.get("omit_total_share", sim.omit_total_share)
    if not isinstance(share, (int, float, Decimal)) or not 0 <= share <= 1:
        return problem(400, "omit_total_share: between 0 and 1")
    sim.omit_total, sim.omit_total_share = omit, float(share)
    return reply({"omit_total": sim.omit_total, "omit_total_share": sim.omit_total_share})


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
        "version": change.version,
        "subscribed": change.subscribed,
        "lines_key": change.lines_key,
        "get_only": change.get_only,
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
    method = body.get("method", "POST")
    if method not in ("POST", "PUT", "GET"):
        return problem(400, "method: POST, PUT or GET (legacy, the id in a {orderId} placeholder)")
    parallel = body.get("parallel")
    if parallel is not None and (not isinstance(parallel, int) or parallel < 1):
        return problem(400, "parallel: deliveries in flight at once, at least 1")
    _sim(request).sender.configure(
        WebhookTarget(
            kind=kind,
            url=body["url"],
            username=body.get("username"),
            password=body.get("password"),
            token=body.get("token"),
            single_delivery=bool(body.get("single_delivery", False)),
            method=method,
            meta=meta,
            legacy=bool(body.get("legacy", False)),
            parallel=parallel,
        )
    )
    return reply({"configured": kind})


async def _hold_webhooks(request: web.Request) -> web.Response:
    """``{kind, seconds, count}``: the next deliveries of ``kind`` wait; later ones overtake."""
    body = await read_object(request)
    kind = body.get("kind", "order")
    if kind not in ("order", "order_documents", "shipment"):
        return problem(400, "kind: order, order_documents or shipment")
    seconds, count = float(body.get("seconds", 1.0)), int(body.get("count", 1))
    if seconds <= 0 or count < 1:
        return problem(400, "seconds > 0 and count >= 1")
    _sim(request).sender.hold(kind, seconds, count)
    return reply({"kind": kind, "seconds": seconds, "count": count})


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
