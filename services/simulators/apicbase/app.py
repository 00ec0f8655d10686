"""The Apicbase supplier-ordering simulator: an aiohttp app over an ``OrderBook``.

API (api-facts §5.4, §5.5), answered the way Django REST framework and
django-oauth-toolkit answer:

* ``POST /oauth/token/`` (form fields; client id and secret as fields or HTTP
  Basic): ``authorization_code`` (codes live one minute) and ``refresh_token``
  grants → ``{access_token, token_type, expires_in, refresh_token, scope}``.
  Access tokens live a week (``access_ttl``); a refresh revokes the old access
  token and, with ``rotate_refresh_tokens`` (default), the old refresh token too.
  Errors are OAuth2's: 400 ``invalid_grant`` / ``invalid_request`` /
  ``unsupported_grant_type``, 401 ``invalid_client``.
* ``GET /api/v2/integrations/suppliers/purchase_orders/`` (Bearer): filters
  ``status``, ``ordered_on__gt``, ``fetched_by_supplier``, ``viewed_by_supplier``,
  ``ordering``; ``page`` / ``page_size`` (default 10, larger sizes cut to 200,
  a page past the end is 404 ``Invalid page.``); envelope
  ``{count, next, previous, results}`` with absolute ``next``/``previous`` URLs.
* ``PATCH`` on the same URL: ``{"ids": [...], "fetched_by_supplier": true,
  "viewed_by_supplier": true}`` sets the flags and their ``*_at`` stamps once;
  ``false`` is refused (400), unknown ids refuse the whole request (400).
  The real body shape was not captured (§5.4); this one is the simulator's.
* At most ``rate_limit`` requests per ``rate_window`` seconds per OAuth client
  over a sliding window, as DRF's throttles count: beyond, 429 with
  ``Retry-After``. 401 comes before 429; refused requests do not count.

Control (``/_control/…``, no auth) and ``ApicbaseSimulator`` as a Python API:
create orders (placed for the API, or pushed by webhook as the customer's
checkout does), push again, mark delivered, configure the webhook, inject
faults (statuses, 429s, slow answers, connection resets), issue or expire
tokens, read delivery outcomes, and drive a flow by itself.

Documented mode (``ApicbaseSimulator(documented=True)``, ``--documented``)
does what the documentation allows beyond our convenient assumptions: the
webhook and API copies of a share of orders differ in formatting only
(``orders.Style``: ``"26.1"`` against ``"26.10"``, microseconds and
``+01:00`` against milliseconds and ``Z``), and a share of webhook pushes lose
their answer, so the order stays in the cart and the customer places it again
later: the supplier receives the **same id** twice, with a new ``ordered_on``.
Orders whose push failed are placed again the same way. ``GET
/_control/orders`` is the final truth: every order as the API returns it, and
every body the webhook actually sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import random
import secrets
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, Literal
from urllib.parse import unquote

from aiohttp import web
from yarl import URL

from services.simulators.apicbase.orders import (
    DIFFERING_STYLES,
    OrderBook,
    OrderGenerator,
    PurchaseOrder,
    QueryError,
    Style,
    parse_query,
)
from services.simulators.apicbase.webhooks import Delivery, WebhookSender, WebhookTarget
from shared.errors import InvalidPayload
from shared.logging import get_logger
from shared.schema.codec import dumps_exact, loads_exact

log = get_logger(__name__)

ORDERS_PATH: Final = "/api/v2/integrations/suppliers/purchase_orders/"
TOKEN_PATH: Final = "/oauth/token/"  # noqa: S105 (a path, not a secret)
DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE_SIZE: Final = 200
WEEK: Final = 7 * 24 * 3600.0
SCOPE: Final = "accounts library inventory procurement"

FaultKind = Literal["status", "delay", "reset"]


@dataclass
class Fault:
    """Applied to the next ``count`` requests whose path starts with ``path``."""

    kind: FaultKind
    path: str = "/api/"
    count: int = 1
    status: int = 503
    retry_after: float | None = None
    seconds: float = 5.0


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def __repr__(self) -> str:  # never print tokens
        return f"TokenPair(expires_in={self.expires_in})"

    def as_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
            "scope": SCOPE,
        }


@dataclass
class _Access:
    client_id: str
    expires: float


@dataclass
class _Refresh:
    client_id: str
    access_token: str


@dataclass
class ApicbaseSimulator:
    """The simulated platform: one supplier's orders, OAuth clients, tokens, faults, webhook."""

    book: OrderBook = field(default_factory=OrderBook)
    clients: dict[str, str] = field(default_factory=lambda: {"orderbridge": "secret"})
    """OAuth client id → client secret."""
    access_ttl: float = WEEK
    code_ttl: float = 60.0
    rotate_refresh_tokens: bool = True
    rate_limit: int = 100
    rate_window: float = 60.0
    webhook: WebhookTarget | None = None
    sender: WebhookSender = field(default_factory=WebhookSender)
    faults: list[Fault] = field(default_factory=list)
    clock: Callable[[], float] = time.time
    """Wall clock for token expiry and order stamps (injectable in tests)."""
    documented: bool = False
    """Documented mode; also on when the book was built with ``documented=True``."""
    lose_answer_share: float = 0.0
    """Share of placements whose answer gets lost when the caller leaves it open (documented)."""
    replace_after: float | None = None
    """Seconds (±50 %) after which the customer places a failed order again by itself;
    None: never (documented mode: 1 s)."""
    replace_attempts: int = 5
    """How many times the customer places one order again before giving up."""
    awaiting_replace: list[str] = field(default_factory=list)
    """Orders whose push failed or lost its answer: still in the cart, not sent."""
    requests: int = 0
    throttled: int = 0
    token_requests: int = 0
    accepted: dict[str, list[float]] = field(default_factory=dict)
    """Per client, the monotonic time of every API request that got past the throttle."""
    _access: dict[str, _Access] = field(default_factory=dict)
    _refresh: dict[str, _Refresh] = field(default_factory=dict)
    _codes: dict[str, tuple[str, float]] = field(default_factory=dict)
    _windows: dict[str, deque[float]] = field(default_factory=dict)
    _customer_rng: random.Random = field(init=False, repr=False)
    _timers: set[asyncio.Task[None]] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        # The customers' whims have their own generator: the orders stay what the seed makes.
        self._customer_rng = random.Random(self.book.generator.seed * 1_299_709 + 9)
        if self.documented or self.book.documented:
            self.use_documented()

    def use_documented(self) -> None:
        """Documented mode from now on (orders already made keep their copies' styles).

        One placement in ten loses its answer, and a customer whose order was
        not sent places it again about a second later (same id, usually a new
        ``ordered_on``), up to ``replace_attempts`` times.
        """
        self.documented = self.book.documented = True
        self.lose_answer_share = self.lose_answer_share or 0.1
        if self.replace_after is None:
            self.replace_after = 1.0

    async def close(self) -> None:
        """Stop the customers' pending re-placements and the webhook sender."""
        timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        for timer in timers:
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        await self.sender.close()

    # ------------------------------------------------------------ orders

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def create_orders(self, count: int = 1, *, lines: int | None = None) -> list[str]:
        """Orders placed by customers of a supplier that fetches through the API.

        Placing one sets it ``ORDERED`` at once and irreversibly (§5.1).
        """
        ids = []
        for _ in range(count):
            order = self.book.add(self.now(), lines=lines)
            order.status = "ORDERED"
            ids.append(order.id)
        return ids

    async def place_orders(
        self,
        count: int = 1,
        *,
        lines: int | None = None,
        pretty: bool | None = None,
        lose_answer: bool | None = None,
        styles: tuple[Style, Style] | None = None,
    ) -> list[Delivery]:
        """Orders placed at checkout with the webhook configured: each is pushed once.

        ``lose_answer``: the supplier gets the order but its answer never comes
        back, so the order stays in the cart (None: a ``lose_answer_share`` of
        them). ``styles``: (webhook, API) copy styles of the new orders.
        """
        target = self._target()
        deliveries = []
        for _ in range(count):
            order = self.book.add(self.now(), lines=lines)
            if styles is not None:
                order.webhook_style, order.api_style = styles
            deliveries.append(await self._push(order, target, pretty, lose_answer))
        return deliveries

    def _lose(self, lose_answer: bool | None) -> bool:
        if lose_answer is not None:
            return lose_answer
        share = self.lose_answer_share
        return bool(share) and self._customer_rng.random() < share

    async def push(
        self,
        order_id: str,
        *,
        pretty: bool | None = None,
        lose_answer: bool | None = False,
        keep_ordered_on: bool = False,
    ) -> Delivery:
        """The customer places an order again after a failed push (its cart is kept).

        Same id; a new ``ordered_on`` unless ``keep_ordered_on``. The answer
        is not lost unless ``lose_answer`` (None: the mode's share decides).
        """
        order = self.order(order_id)
        if order.status != "IN_PROGRESS":
            raise ValueError(f"order {order.order_number} was already sent ({order.status})")
        if not keep_ordered_on:
            order.ordered_on = self.now().astimezone(order.ordered_on.tzinfo)
        return await self._push(order, self._target(), pretty, lose_answer)

    async def _push(
        self,
        order: PurchaseOrder,
        target: WebhookTarget,
        pretty: bool | None,
        lose_answer: bool | None = False,
    ) -> Delivery:
        delivery = await self.sender.send(
            order.document(), target, pretty=pretty, lose_answer=self._lose(lose_answer)
        )
        if delivery.state == "sent":
            order.status = "ORDERED"  # only a 2xx sends the order (§5.2)
            if order.id in self.awaiting_replace:
                self.awaiting_replace.remove(order.id)
            return delivery
        if order.id not in self.awaiting_replace:
            self.awaiting_replace.append(order.id)
        self._replace_later(order)
        return delivery

    def _replace_later(self, order: PurchaseOrder) -> None:
        """The customer sees the error and, a little later, places the order again."""
        pushes = sum(1 for d in self.deliveries if d.order_id == order.id)
        if self.replace_after is None or pushes > self.replace_attempts:
            return
        delay = self.replace_after * self._customer_rng.uniform(0.5, 1.5)
        keep = self._customer_rng.random() < 0.25

        async def again() -> None:
            await asyncio.sleep(delay)
            if order.status != "IN_PROGRESS" or self.webhook is None:
                return  # placed again by hand meanwhile, or nowhere to send it
            try:  # same id; usually a new ordered_on
                await self.push(order.id, lose_answer=None, keep_ordered_on=keep)
            except Exception as exc:  # a background customer must not crash
                log.warning("placing the order again failed", order=order.id, error=str(exc))

        timer = asyncio.create_task(again())
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    def set_styles(self, order_id: str, *, webhook: Style, api: Style) -> PurchaseOrder:
        """How the order's webhook and API copies are written from now on."""
        order = self.order(order_id)
        order.webhook_style, order.api_style = webhook, api
        return order

    def _target(self) -> WebhookTarget:
        if self.webhook is None:
            raise LookupError("no webhook configured: configure_webhook(url) first")
        return self.webhook

    def configure_webhook(
        self, url: str, *, key: str | None = None, pretty: bool = False, timeout: float = 30.0
    ) -> WebhookTarget:
        """Sign with ``key``, by default the (first) client's secret, as Apicbase does."""
        secret = key if key is not None else next(iter(self.clients.values()))
        self.webhook = WebhookTarget(url, secret.encode(), pretty=pretty, timeout=timeout)
        return self.webhook

    def deliver(self, order_id: str) -> PurchaseOrder:
        """The customer records delivery (the order then shows ``DELIVERED``)."""
        order = self.order(order_id)
        if not order.visible:
            raise ValueError(f"order {order.order_number} was never sent")
        order.status = "DELIVERED"
        return order

    def order(self, order_id: str) -> PurchaseOrder:
        try:
            return self.book.orders[order_id]
        except KeyError:
            raise KeyError(f"no order {order_id}") from None

    @property
    def deliveries(self) -> list[Delivery]:
        return self.sender.deliveries

    def inject(self, fault: Fault) -> None:
        self.faults.append(fault)

    async def drive(
        self,
        interval: float,
        *,
        webhook_share: float = 0.5,
        stop: asyncio.Event | None = None,
        pretty_share: float = 0.0,
    ) -> None:
        """One new order every ``interval`` seconds until ``stop`` is set.

        A ``webhook_share`` of them is pushed to the configured webhook (a
        ``pretty_share`` of those pretty-printed); the rest is placed for the
        API. Without a webhook, every order is left for the API. In documented
        mode a ``lose_answer_share`` of pushes loses its answer, and customers
        place orders that were not sent again by themselves (``replace_after``).
        """
        stop = stop or asyncio.Event()
        rng = self.book.generator.rng
        while not stop.is_set():
            if self.webhook is not None and rng.random() < webhook_share:
                await self.place_orders(1, pretty=rng.random() < pretty_share)
            else:
                self.create_orders(1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)

    # ------------------------------------------------------------ OAuth2

    def issue_tokens(self, client_id: str | None = None) -> TokenPair:
        """A token pair as the Apicbase UI generates one (no OAuth dance, §5.5)."""
        client_id = client_id if client_id is not None else next(iter(self.clients))
        if client_id not in self.clients:
            raise KeyError(f"no OAuth client {client_id}")
        return self._issue(client_id)

    def add_refresh_token(self, refresh_token: str, client_id: str | None = None) -> None:
        """Accept ``refresh_token`` as if issued earlier (a known token for rehearsals)."""
        client_id = client_id if client_id is not None else next(iter(self.clients))
        self._refresh[refresh_token] = _Refresh(client_id, access_token="")

    def authorization_code(self, client_id: str | None = None) -> str:
        """A code as the authorize page shows it; valid ``code_ttl`` seconds, once."""
        client_id = client_id if client_id is not None else next(iter(self.clients))
        code = secrets.token_urlsafe(18)
        self._codes[code] = (client_id, self.clock() + self.code_ttl)
        return code

    def expire_tokens(self) -> None:
        """Every access token expires now (refresh tokens still work, as on Apicbase)."""
        for grant in self._access.values():
            grant.expires = 0.0

    def revoke_refresh_tokens(self) -> None:
        self._refresh.clear()

    def refresh_token_valid(self, token: str) -> bool:
        return token in self._refresh

    def _issue(self, client_id: str, refresh_token: str | None = None) -> TokenPair:
        access = secrets.token_urlsafe(24)
        self._access[access] = _Access(client_id, self.clock() + self.access_ttl)
        refresh = refresh_token or secrets.token_urlsafe(24)
        self._refresh[refresh] = _Refresh(client_id, access)
        return TokenPair(access, refresh, round(self.access_ttl))

    def _grant_refresh(self, client_id: str, refresh_token: str) -> TokenPair:
        grant = self._refresh.get(refresh_token)
        if grant is None or grant.client_id != client_id:
            raise _OAuthError(400, "invalid_grant", "Invalid refresh token")
        self._access.pop(grant.access_token, None)  # the old access token is revoked
        if self.rotate_refresh_tokens:
            del self._refresh[refresh_token]  # dead from now on
            return self._issue(client_id)
        return self._issue(client_id, refresh_token)

    def _grant_code(self, client_id: str, code: str) -> TokenPair:
        issued = self._codes.pop(code, None)  # a code works once
        if issued is None or issued[0] != client_id or issued[1] <= self.clock():
            raise _OAuthError(400, "invalid_grant", "Invalid or expired authorization code")
        return self._issue(client_id)

    def _client_of(self, authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        grant = self._access.get(authorization[7:].strip())
        if grant is None or grant.expires <= self.clock():
            return None
        return grant.client_id

    # ------------------------------------------------------------ throttle

    def _throttle(self, client_id: str) -> float | None:
        """None when the request may pass (and is counted), else seconds to wait."""
        now = time.monotonic()
        window = self._windows.setdefault(client_id, deque())
        while window and window[0] <= now - self.rate_window:
            window.popleft()
        if len(window) >= self.rate_limit:
            return window[0] + self.rate_window - now
        window.append(now)
        self.accepted.setdefault(client_id, []).append(now)
        return None

    def busiest_window(self, client_id: str | None = None) -> int:
        """The most requests one client got through within any ``rate_window`` (tests)."""
        best = 0
        for client, stamps in self.accepted.items():
            if client_id is not None and client != client_id:
                continue
            start = 0
            for end, stamp in enumerate(stamps):
                while stamps[start] <= stamp - self.rate_window:
                    start += 1
                best = max(best, end - start + 1)
        return best


class _OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description


SIMULATOR: Final = web.AppKey("apicbase_simulator", ApicbaseSimulator)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(simulator: ApicbaseSimulator) -> web.Application:
    app = web.Application(middlewares=[_middleware])
    app[SIMULATOR] = simulator
    r = app.router
    r.add_post(TOKEN_PATH, _token)
    r.add_get(ORDERS_PATH, _list_orders)
    r.add_patch(ORDERS_PATH, _mark_orders)
    r.add_get("/_control/state", _state)
    r.add_get("/_control/orders", _all_orders)
    r.add_post("/_control/orders", _create_orders)
    r.add_post("/_control/orders/{order_id}/styles", _set_styles)
    r.add_get("/_control/orders/{order_id}", _get_order)
    r.add_post("/_control/orders/{order_id}/push", _push_order)
    r.add_post("/_control/orders/{order_id}/deliver", _deliver_order)
    r.add_post("/_control/webhook", _configure_webhook)
    r.add_post("/_control/customer", _configure_customer)
    r.add_post("/_control/faults", _inject_fault)
    r.add_delete("/_control/faults", _clear_faults)
    r.add_post("/_control/tokens", _issue_tokens)
    r.add_post("/_control/tokens/expire", _expire_tokens)
    r.add_post("/_control/authorization-codes", _authorization_code)
    r.add_get("/_control/deliveries", _deliveries)
    app.cleanup_ctx.append(_close_sender)
    return app


async def _close_sender(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[SIMULATOR].close()


def _sim(request: web.Request) -> ApicbaseSimulator:
    return request.app[SIMULATOR]


def _reply(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=dumps_exact(value), status=status, content_type="application/json", headers=headers
    )


@web.middleware
async def _middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        if not request.path.startswith("/_control/"):
            return await _with_faults(request, handler)
        try:
            return await handler(request)
        except (TypeError, ValueError) as exc:  # e.g. {"count": "many"}
            raise _control_error(400, f"bad control request: {exc}") from None
    except _Refusal as refusal:
        return _reply(refusal.body, refusal.status, refusal.headers)


async def _with_faults(request: web.Request, handler: Handler) -> web.StreamResponse:
    sim = _sim(request)
    sim.requests += 1
    for fault in sim.faults:
        if fault.count > 0 and request.path.startswith(fault.path):
            fault.count -= 1
            if fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
                break
            if fault.kind == "reset":
                if request.transport is not None:
                    request.transport.abort()
                raise web.HTTPServiceUnavailable()  # never reaches the client
            headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after else {}
            return _reply({"detail": "Injected fault."}, fault.status, headers)
    return await handler(request)


# ---------------------------------------------------------------- OAuth2


async def _token(request: web.Request) -> web.Response:
    sim = _sim(request)
    sim.token_requests += 1
    try:
        pair = _token_grant(sim, request, await request.post())
    except _OAuthError as exc:
        headers = {"WWW-Authenticate": 'Basic realm="oauth"'} if exc.status == 401 else None
        return _reply(
            {"error": exc.error, "error_description": exc.description}, exc.status, headers
        )
    return _reply(pair.as_json(), headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _token_grant(sim: ApicbaseSimulator, request: web.Request, form: Any) -> TokenPair:
    content_type = request.content_type
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise _OAuthError(400, "invalid_request", "Send the token request as form fields")
    client_id, client_secret = _client_credentials(request, form)
    if not client_id or sim.clients.get(client_id) != client_secret:
        raise _OAuthError(401, "invalid_client", "Client authentication failed")
    grant_type = form.get("grant_type")
    if grant_type == "refresh_token":
        token = form.get("refresh_token")
        if not token:
            raise _OAuthError(400, "invalid_request", "Missing refresh_token parameter")
        return sim._grant_refresh(client_id, str(token))
    if grant_type == "authorization_code":
        code = form.get("code")
        if not code:
            raise _OAuthError(400, "invalid_request", "Missing code parameter")
        return sim._grant_code(client_id, str(code))
    if not grant_type:
        raise _OAuthError(400, "invalid_request", "Missing grant_type parameter")
    raise _OAuthError(400, "unsupported_grant_type", f"Unsupported grant type {grant_type}")


def _client_credentials(request: web.Request, form: Any) -> tuple[str | None, str | None]:
    """Client id and secret from form fields, else HTTP Basic (RFC 6749 §2.3.1)."""
    if form.get("client_id"):
        secret = form.get("client_secret")
        return str(form["client_id"]), str(secret) if secret is not None else None
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        user, _, password = decoded.partition(":")
        return unquote(user), unquote(password)
    return None, None


# ---------------------------------------------------------------- supplier orders


class _Refusal(Exception):
    """An API answer other than success, rendered as DRF renders errors (JSON body)."""

    def __init__(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers


def _authorize(sim: ApicbaseSimulator, request: web.Request) -> str:
    """The calling OAuth client, after the throttle; refuses with 401 or 429 as DRF does."""
    client_id = sim._client_of(request.headers.get("Authorization"))
    if client_id is None:
        raise _Refusal(
            401,
            {"detail": "Authentication credentials were not provided."},
            {"WWW-Authenticate": 'Bearer realm="api"'},
        )
    wait = sim._throttle(client_id)
    if wait is not None:
        sim.throttled += 1
        seconds = max(1, int(wait + 0.999))
        raise _Refusal(
            429,
            {"detail": f"Request was throttled. Expected available in {seconds} seconds."},
            {"Retry-After": str(seconds)},
        )
    return client_id


def _bad_request(errors: dict[str, Any]) -> _Refusal:
    return _Refusal(400, errors)


INVALID_PAGE: Final = {"detail": "Invalid page."}


def _page_number(value: str | None) -> int:
    if value is None:
        return 1
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _Refusal(404, INVALID_PAGE)
    return number


def _page_size(value: str | None) -> int:
    """DRF's rule: a positive integer, cut to the maximum; anything else means the default."""
    try:
        size = int(value) if value is not None else DEFAULT_PAGE_SIZE
    except ValueError:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE) if size > 0 else DEFAULT_PAGE_SIZE


async def _list_orders(request: web.Request) -> web.Response:
    sim = _sim(request)
    _authorize(sim, request)
    params = dict(request.query)
    try:
        query = parse_query(params)
    except QueryError as exc:
        raise _bad_request({exc.field: [exc.message]}) from None
    page, size = _page_number(params.get("page")), _page_size(params.get("page_size"))
    found = sim.book.query(query)
    pages = max(1, -(-len(found) // size))
    if page > pages:
        raise _Refusal(404, INVALID_PAGE)
    items = found[(page - 1) * size : page * size]
    url = request.url
    return _reply(
        {
            "count": len(found),
            "next": _page_url(url, page + 1) if page < pages else None,
            "previous": _page_url(url, page - 1) if page > 1 else None,
            "results": [order.api_json() for order in items],
        }
    )


def _page_url(url: URL, page: int) -> str:
    """DRF's links: the same query with ``page`` replaced (removed for page 1)."""
    query = {key: value for key, value in url.query.items() if key != "page"}
    if page > 1:
        query["page"] = str(page)
    return str(url.with_query(query))


async def _mark_orders(request: web.Request) -> web.Response:
    sim = _sim(request)
    _authorize(sim, request)
    try:
        body = loads_exact(await request.read())
    except InvalidPayload as exc:
        raise _bad_request({"detail": str(exc)}) from None
    if not isinstance(body, dict):
        raise _bad_request({"non_field_errors": ["Expected a JSON object."]})
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise _bad_request({"ids": ["A non-empty list of purchase order ids is required."]})
    flags: dict[str, bool] = {}
    for name in ("fetched_by_supplier", "viewed_by_supplier"):
        if name in body:
            if body[name] is not True:
                raise _bad_request({name: ["Can only be set to true; it cannot be reverted."]})
            flags[name] = True
    if not flags:
        raise _bad_request(
            {"non_field_errors": ["Set fetched_by_supplier and/or viewed_by_supplier."]}
        )
    unknown = [i for i in ids if i not in sim.book.orders or not sim.book.orders[i].visible]
    if unknown:
        raise _bad_request({"ids": [f"Unknown purchase order: {i}" for i in unknown]})
    marked = sim.book.mark(
        list(dict.fromkeys(ids)),
        fetched=flags.get("fetched_by_supplier", False),
        viewed=flags.get("viewed_by_supplier", False),
        now=sim.now(),
    )
    return _reply({"count": len(marked), "results": [order.api_json() for order in marked]})


# ---------------------------------------------------------------- control routes


def _control_error(status: int, message: str) -> _Refusal:
    return _Refusal(status, {"error": message})


async def _json(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = loads_exact(await request.read())
    except InvalidPayload as exc:
        raise _control_error(400, str(exc)) from None
    if not isinstance(body, dict):
        raise _control_error(400, "expected a JSON object")
    return body


def _control_order(request: web.Request) -> PurchaseOrder:
    try:
        return _sim(request).order(request.match_info["order_id"])
    except KeyError:
        raise _control_error(404, "order not found") from None


def _order_state(sim: ApicbaseSimulator, order: PurchaseOrder) -> dict[str, Any]:
    pushes = [d.as_json() for d in sim.deliveries if d.order_id == order.id]
    return {
        "order": order.api_json(),
        "state": order.status,
        "sent": order.visible,
        "deliveries": pushes,
    }


async def _state(request: web.Request) -> web.Response:
    sim = _sim(request)
    orders = sim.book.orders.values()
    return _reply(
        {
            "orders": len(orders),
            "by_status": {
                status: sum(1 for o in orders if o.status == status)
                for status in ("IN_PROGRESS", "ORDERED", "DELIVERED")
            },
            "fetched": sum(1 for o in orders if o.fetched_at is not None),
            "viewed": sum(1 for o in orders if o.viewed_at is not None),
            "requests": sim.requests,
            "throttled": sim.throttled,
            "token_requests": sim.token_requests,
            "deliveries": len(sim.deliveries),
            "webhook": sim.webhook.url if sim.webhook else None,
            "documented": sim.documented,
            "answers_lost": sum(1 for d in sim.deliveries if d.answer_lost),
            "awaiting_replace": len(sim.awaiting_replace),
            "replaced": sum(
                1 for pushes in Counter(d.order_id for d in sim.deliveries).values() if pushes > 1
            ),
        }
    )


async def _all_orders(request: web.Request) -> web.Response:
    """The final truth: every order, as the API returns it and as the webhook sent it.

    ``api`` is the list endpoint's item (null while the order is in the cart,
    invisible to the API); ``pushes`` are the bodies the webhook actually sent,
    in order, with what came of each.
    """
    sim = _sim(request)
    pushes: dict[str, list[dict[str, Any]]] = {}
    for delivery in sim.deliveries:
        pushes.setdefault(delivery.order_id, []).append(
            delivery.as_json() | {"body": delivery.body.decode("utf-8")}
        )
    return _reply(
        {
            "orders": [
                {
                    "id": order.id,
                    "order_number": order.order_number,
                    "state": order.status,
                    "sent": order.visible,
                    "api": order.api_json() if order.visible else None,
                    "styles": {
                        "webhook": order.webhook_style.as_json(),
                        "api": order.api_style.as_json(),
                    },
                    "pushes": pushes.get(order.id, []),
                }
                for order in sim.book.orders.values()
            ]
        }
    )


def _styles(value: Any) -> tuple[Style, Style] | None:
    """``"differ"``, ``{webhook: {…}, api: {…}}`` or null (the mode decides)."""
    if value is None:
        return None
    if value == "differ":
        return DIFFERING_STYLES
    if not isinstance(value, dict):
        raise _control_error(400, 'styles: "differ" or {webhook: {...}, api: {...}}')
    try:
        return Style.from_json(value.get("webhook", {})), Style.from_json(value.get("api", {}))
    except ValueError as exc:
        raise _control_error(400, f"styles: {exc}") from None


async def _set_styles(request: web.Request) -> web.Response:
    body = await _json(request)
    order = _control_order(request)
    styles = _styles(body.get("styles", body)) or DIFFERING_STYLES
    _sim(request).set_styles(order.id, webhook=styles[0], api=styles[1])
    return _reply({"webhook": order.webhook_style.as_json(), "api": order.api_style.as_json()})


async def _create_orders(request: web.Request) -> web.Response:
    body = await _json(request)
    sim = _sim(request)
    count, lines = int(body.get("count", 1)), body.get("lines")
    styles = _styles(body.get("styles"))
    if body.get("via", "api") == "webhook":
        pretty = body.get("pretty")
        try:
            deliveries = await sim.place_orders(
                count,
                lines=lines,
                pretty=bool(pretty) if pretty is not None else None,
                lose_answer=_flag(body, "lose_answer"),
                styles=styles,
            )
        except LookupError as exc:
            raise _control_error(409, str(exc)) from None
        return _reply(
            {
                "order_ids": [d.order_id for d in deliveries],
                "deliveries": [d.as_json() for d in deliveries],
            },
            status=201,
        )
    ids = sim.create_orders(count, lines=lines)
    if styles is not None:
        for order_id in ids:
            sim.set_styles(order_id, webhook=styles[0], api=styles[1])
    return _reply({"order_ids": ids}, status=201)


async def _get_order(request: web.Request) -> web.Response:
    return _reply(_order_state(_sim(request), _control_order(request)))


async def _push_order(request: web.Request) -> web.Response:
    body = await _json(request)
    order = _control_order(request)
    pretty = body.get("pretty")
    try:
        delivery = await _sim(request).push(
            order.id,
            pretty=bool(pretty) if pretty is not None else None,
            lose_answer=bool(body.get("lose_answer", False)),
            keep_ordered_on=bool(body.get("keep_ordered_on", False)),
        )
    except (LookupError, ValueError) as exc:
        raise _control_error(409, str(exc)) from None
    return _reply(delivery.as_json())


async def _deliver_order(request: web.Request) -> web.Response:
    order = _control_order(request)
    try:
        _sim(request).deliver(order.id)
    except ValueError as exc:
        raise _control_error(409, str(exc)) from None
    return _reply(order.api_json())


async def _configure_webhook(request: web.Request) -> web.Response:
    body = await _json(request)
    if not isinstance(body.get("url"), str):
        raise _control_error(400, "url is required")
    target = _sim(request).configure_webhook(
        body["url"],
        key=body.get("key"),
        pretty=bool(body.get("pretty", False)),
        timeout=float(body.get("timeout", 30.0)),
    )
    return _reply({"url": target.url, "pretty": target.pretty})


def _flag(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise _control_error(400, f"{name}: true, false or null (the mode decides)")
    return value


async def _configure_customer(request: web.Request) -> web.Response:
    """``{lose_answer_share, replace_after, replace_attempts}``: how customers behave.

    ``replace_after`` null: nobody places a failed order again by themselves.
    """
    body = await _json(request)
    sim = _sim(request)
    share = body.get("lose_answer_share", sim.lose_answer_share)
    after = body.get("replace_after", sim.replace_after)
    attempts = body.get("replace_attempts", sim.replace_attempts)
    if not isinstance(share, (int, float, Decimal)) or not 0 <= share <= 1:
        raise _control_error(400, "lose_answer_share: between 0 and 1")
    if after is not None and (not isinstance(after, (int, float, Decimal)) or after < 0):
        raise _control_error(400, "replace_after: seconds, or null for never")
    if not isinstance(attempts, int) or attempts < 0:
        raise _control_error(400, "replace_attempts: a count")
    sim.lose_answer_share = float(share)
    sim.replace_after = float(after) if after is not None else None
    sim.replace_attempts = attempts
    return _reply(
        {
            "lose_answer_share": sim.lose_answer_share,
            "replace_after": sim.replace_after,
            "replace_attempts": sim.replace_attempts,
        }
    )


async def _inject_fault(request: web.Request) -> web.Response:
    body = await _json(request)
    kind = body.get("kind", "status")
    if kind not in ("status", "delay", "reset"):
        raise _control_error(400, "kind: status, delay or reset")
    retry_after = body.get("retry_after")
    sim = _sim(request)
    sim.inject(
        Fault(
            kind=kind,
            path=str(body.get("path", "/api/")),
            count=int(body.get("count", 1)),
            status=int(body.get("status", 503)),
            retry_after=float(retry_after) if retry_after is not None else None,
            seconds=float(body.get("seconds", 5.0)),
        )
    )
    return _reply({"faults": sum(1 for f in sim.faults if f.count > 0)}, status=201)


async def _clear_faults(request: web.Request) -> web.Response:
    _sim(request).faults.clear()
    return _reply({"faults": 0})


async def _issue_tokens(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        pair = _sim(request).issue_tokens(body.get("client_id"))
    except KeyError as exc:
        raise _control_error(404, str(exc)) from None
    return _reply(pair.as_json(), status=201)


async def _expire_tokens(request: web.Request) -> web.Response:
    _sim(request).expire_tokens()
    return _reply({"expired": True})


async def _authorization_code(request: web.Request) -> web.Response:
    body = await _json(request)
    sim = _sim(request)
    if body.get("client_id") is not None and body["client_id"] not in sim.clients:
        raise _control_error(404, "no such OAuth client")
    return _reply(
        {"code": sim.authorization_code(body.get("client_id")), "expires_in": sim.code_ttl},
        status=201,
    )


async def _deliveries(request: web.Request) -> web.Response:
    return _reply([d.as_json() for d in _sim(request).deliveries])


def history(seed: int, orders: int, *, documented: bool = False) -> OrderBook:
    """A book with ``orders`` placed orders of the seeded history."""
    book = OrderBook(OrderGenerator(seed), documented=documented)
    book.generate_history(orders)
    return book
