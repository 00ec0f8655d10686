"""Apicbase API client for a supplier: OAuth2 refresh flow, rate limit, retries.

Rules it follows (api-facts §5.4, §5.5, §7.19, §7.20):

* Bearer access tokens from ``POST /oauth/token/`` with the ``refresh_token``
  grant (form fields ``grant_type``, ``refresh_token``, ``client_id``,
  ``client_secret``). Access tokens live a week; refresh tokens do not expire
  but a refresh may **rotate** them, killing the old one. So every pair is
  saved through the ``TokenStore`` (platform ``"apicbase"``) *before* it is
  used, and a restart starts from the stored pair (no refresh while its access
  token is still good). ``ORDERBRIDGE_APICBASE_REFRESH_TOKEN`` only seeds an
  empty store, or stands in when the stored token is refused (an operator
  pasted a new one). When a refresh is refused the store is read again first:
  another replica may have rotated the token a moment earlier.
* Renewal is proactive (``ORDERBRIDGE_APICBASE_TOKEN_REFRESH_MARGIN_SECONDS``
  before expiry) and, once per call, on a 401.
* At most 100 requests per minute (``ORDERBRIDGE_APICBASE_RATE_LIMIT`` per
  ``…_RATE_PERIOD_SECONDS``), token calls included. aiolimiter is a leaky
  bucket: sized ``AsyncLimiter(100, 60)`` it would let a burst of 100 *and*
  the drip of the next minute through, about 200 in one sliding minute, which
  a DRF-style throttle refuses. Here the bucket holds a tenth of the limit and
  drips the rest over the period, so no window of that length ever sees more
  than the limit (minus one request of slack for network jitter).
* 429 (``Retry-After`` honoured), 408, 5xx, timeouts and connection errors are
  retried with capped exponential backoff and jitter (stamina) for up to
  ``ORDERBRIDGE_APICBASE_RETRY_SECONDS``, then ``UpstreamUnavailable``; other
  4xx are ``UpstreamRejected``. Marking is idempotent on the server (flags
  only go from false to true), so a PATCH is retried like a GET.
* Bodies are decoded with ``loads_exact``; prices are strings anyway.

The PATCH body ``{"ids": [...], "fetched_by_supplier": true}`` is the
simulator's: the real shape was not captured (§5.4). ``_mark_body`` is the one
place to change once verified against Apicbase's reference.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import aiohttp
import stamina
from aiolimiter import AsyncLimiter
from pydantic import Field, SecretStr

from shared.clients.retry import (
    RetryableAnswer,
    TroubleObserver,
    observed,
    retry_after_seconds,
    retry_hook,
)
from shared.errors import (
    ConfigurationError,
    OrderbridgeError,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.logging import get_logger
from shared.schema.codec import dumps_exact, loads_exact
from shared.settings import OrderbridgeSettings
from shared.state.port import Tokens, TokenStore

log = get_logger(__name__)

PLATFORM: Final = "apicbase"
PRODUCTION_URL: Final = "https://api.apicbase.com"
ORDERS_PATH: Final = "/api/v2/integrations/suppliers/purchase_orders/"
TOKEN_PATH: Final = "/oauth/token/"  # noqa: S105 (a path, not a secret)
MAX_PAGE_SIZE: Final = 200
RELOAD_PAUSES: Final = (0.0, 0.0, 0.05, 0.2, 0.5, 1.0)
"""Before each look at the store while renewing: a refused refresh token may have just
been rotated by another process that has not saved the new pair yet."""
MARK_CHUNK: Final = 200
"""Ids per PATCH: one page's worth, so marking a page is one request."""


class ApicbaseSettings(OrderbridgeSettings):
    """``ORDERBRIDGE_APICBASE_*``: the supplier API the fetcher calls."""

    apicbase_api_url: str = PRODUCTION_URL
    apicbase_client_id: str | None = None
    apicbase_client_secret: SecretStr | None = None
    apicbase_refresh_token: SecretStr | None = Field(
        default=None, description="Seeds the token store when it holds no Apicbase tokens."
    )
    apicbase_timeout_seconds: float = Field(default=30.0, gt=0)
    apicbase_rate_limit: int = Field(default=100, ge=1, description="Requests per period.")
    apicbase_rate_period_seconds: float = Field(default=60.0, gt=0)
    apicbase_retry_seconds: float = Field(
        default=120.0, gt=0, description="Give up retrying one call after this long."
    )
    apicbase_backoff_initial_seconds: float = Field(default=1.0, gt=0)
    apicbase_backoff_max_seconds: float = Field(default=30.0, gt=0)
    apicbase_token_refresh_margin_seconds: float = Field(
        default=3600.0, ge=0, description="Renew an access token this long before it expires."
    )

    def configured(self) -> bool:
        return bool(self.apicbase_client_id and self.apicbase_client_secret)


@dataclass(frozen=True)
class PurchaseOrderPage:
    """One page of the supplier list: DRF's envelope, results decoded exactly."""

    count: int
    next: str | None
    previous: str | None
    results: list[Any]
    page: int
    page_size: int

    @property
    def has_next(self) -> bool:
        return self.next is not None


def sliding_window_limiter(rate: int, period: float) -> AsyncLimiter:
    """A limiter no sliding window of ``period`` seconds sees more than ``rate`` requests from.

    Leaky bucket bound: a window admits at most the bucket's capacity plus
    what drips in during it. Capacity ``burst`` plus a drip of ``rate - burst``
    per period keeps that at ``rate`` (one less above 20, for network jitter).
    """
    usable = rate - 1 if rate > 20 else rate
    burst = max(1, usable // 10)
    drip = max(usable - burst, 1)
    return AsyncLimiter(burst, period * burst / drip)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ApicbaseClient:
    """One supplier's OAuth client; safe to share between tasks."""

    def __init__(
        self,
        settings: ApicbaseSettings,
        store: TokenStore,
        *,
        session: aiohttp.ClientSession | None = None,
        clock: Callable[[], datetime] = _utcnow,
        on_trouble: TroubleObserver | None = None,
    ) -> None:
        if not settings.configured():
            raise ConfigurationError(
                "Apicbase credentials missing: set ORDERBRIDGE_APICBASE_CLIENT_ID and "
                "ORDERBRIDGE_APICBASE_CLIENT_SECRET"
            )
        self._settings = settings
        self._store = store
        self._clock = clock
        self._base = settings.apicbase_api_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._limiter = sliding_window_limiter(
            settings.apicbase_rate_limit, settings.apicbase_rate_period_seconds
        )
        self._tokens: Tokens | None = None
        self._loaded = False
        self._unsaved: Tokens | None = None
        self._auth_lock = asyncio.Lock()
        self._on_trouble = on_trouble
        self.refreshes = 0
        """Successful token refreshes by this client (tests, logs)."""

    async def __aenter__(self) -> ApicbaseClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------ API

    async def list_purchase_orders(
        self,
        status: str | None = "ORDERED",
        ordered_on_gt: str | datetime | None = None,
        fetched_by_supplier: bool | None = False,
        page: int = 1,
        page_size: int = MAX_PAGE_SIZE,
        *,
        ordering: str | None = None,
    ) -> PurchaseOrderPage:
        """One page of the supplier's orders (None drops a filter).

        ``ordered_on_gt`` is best passed as an order's own ``ordered_on`` text
        (strictly after; microseconds and offset kept); a datetime must be
        timezone-aware. ``ordering`` e.g. ``"ordered_on"`` for oldest first
        (the server's default is newest first).
        """
        if not 0 < page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE_SIZE}")
        if page < 1:
            raise ValueError("page starts at 1")
        params: dict[str, str] = {"page": str(page), "page_size": str(page_size)}
        if status is not None:
            params["status"] = status
        if ordered_on_gt is not None:
            params["ordered_on__gt"] = _instant(ordered_on_gt)
        if fetched_by_supplier is not None:
            params["fetched_by_supplier"] = "true" if fetched_by_supplier else "false"
        if ordering is not None:
            params["ordering"] = ordering
        body = await self._call("GET", ORDERS_PATH, params=params)
        return _page(body, page, page_size)

    async def mark_fetched(self, ids: Sequence[str]) -> int:
        """Set ``fetched_by_supplier`` (private to us, irreversible); returns how many."""
        return await self._mark(ids, "fetched_by_supplier")

    async def mark_viewed(self, ids: Sequence[str]) -> int:
        """Set ``viewed_by_supplier``: the customer sees the order as accepted (irreversible)."""
        return await self._mark(ids, "viewed_by_supplier")

    async def _mark(
        self, ids: Sequence[str], flag: Literal["fetched_by_supplier", "viewed_by_supplier"]
    ) -> int:
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of order ids, not one string")
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), MARK_CHUNK):
            chunk = unique[start : start + MARK_CHUNK]
            await self._call("PATCH", ORDERS_PATH, json=_mark_body(chunk, flag))
        return len(unique)

    # ------------------------------------------------------------ transport

    def _retrying(self) -> Any:
        s = self._settings
        return stamina.retry_context(
            on=retry_hook,
            attempts=None,
            timeout=s.apicbase_retry_seconds,
            wait_initial=s.apicbase_backoff_initial_seconds,
            wait_max=s.apicbase_backoff_max_seconds,
            wait_jitter=s.apicbase_backoff_initial_seconds,
        )

    async def _call(
        self,
        method: Literal["GET", "PATCH"],
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
    ) -> Any:
        payload = dumps_exact(json) if json is not None else None
        renewed = False
        with _unavailable_after_retries(f"{method} {path}"):
            async for attempt in self._retrying():
                with attempt, observed(self._on_trouble):
                    await self._save_pending()
                    token = await self._access_token()
                    status, headers, body = await self._send(method, path, token, params, payload)
                    if status == 401 and not renewed:
                        renewed = True  # expired or revoked early: renew once
                        token = await self._renew(stale=token)
                        status, headers, body = await self._send(
                            method, path, token, params, payload
                        )
                    return self._answer(method, path, status, headers, body)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> Any:
        self._raise_if_transient(status, headers)
        if status >= 400:
            raise UpstreamRejected(
                f"Apicbase {method} {path} answered {status}: {body[:300]!r}", status=status
            )
        return loads_exact(body) if body else None

    def _raise_if_transient(self, status: int, headers: Mapping[str, str]) -> None:
        if status == 429:
            cap = self._settings.apicbase_backoff_max_seconds
            raise RetryableAnswer(
                "429 Too Many Requests", wait=retry_after_seconds(headers, cap=cap), status=429
            )
        if status >= 500 or status == 408:
            raise RetryableAnswer(f"{status} from Apicbase", status=status)

    async def _send(
        self,
        method: str,
        path: str,
        token: str,
        params: Mapping[str, str] | None,
        payload: bytes | None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return await self._raw(method, path, headers=headers, params=params, data=payload)

    async def _raw(
        self,
        method: str,
        path: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self._limiter:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            timeout = aiohttp.ClientTimeout(total=self._settings.apicbase_timeout_seconds)
            async with self._session.request(
                method,
                self._base + path,
                headers=headers,
                params=params,
                data=data,
                timeout=timeout,
            ) as response:
                return response.status, response.headers, await response.read()

    # ------------------------------------------------------------ tokens

    def _fresh(self, tokens: Tokens | None) -> bool:
        if tokens is None or not tokens.access_token:
            return False
        if tokens.expires_at is None:
            return True  # unknown lifetime: use it until a 401 says otherwise
        margin = timedelta(seconds=self._settings.apicbase_token_refresh_margin_seconds)
        return tokens.expires_at - margin > self._clock()

    async def _access_token(self) -> str:
        if not self._loaded:
            async with self._auth_lock:
                if not self._loaded:
                    self._tokens = await self._store.load_tokens(PLATFORM)
                    self._loaded = True
        tokens = self._tokens
        if tokens is not None and self._fresh(tokens):
            return tokens.access_token
        return await self._renew(stale=tokens.access_token if tokens is not None else None)

    async def _renew(self, *, stale: str | None) -> str:
        """A usable access token other than ``stale``: adopted from the store, else refreshed."""
        async with self._auth_lock:
            current = self._tokens
            if current is not None and current.access_token != stale and self._fresh(current):
                return current.access_token  # another task renewed while we waited
            tried: list[str] = []
            # After a refusal, wait a moment for a replica that rotated the token to save it.
            for pause in RELOAD_PAUSES:
                await asyncio.sleep(pause)
                stored = await self._store.load_tokens(PLATFORM)
                if stored is not None and stored.access_token != stale and self._fresh(stored):
                    self._tokens = stored  # another process refreshed meanwhile
                    return stored.access_token
                refresh = self._next_refresh_token(stored, tried)
                if refresh is None and not tried and stored is None:
                    break  # nothing stored, nothing configured: no point waiting
                if refresh is None:
                    continue
                tried.append(refresh)
                tokens = await self._refresh(refresh)
                if tokens is not None:
                    await self._persist(tokens)
                    self._tokens = tokens
                    self.refreshes += 1
                    log.info(
                        "apicbase access token renewed",
                        expires_at=tokens.expires_at.isoformat() if tokens.expires_at else None,
                        rotated=tokens.refresh_token != refresh,
                    )
                    return tokens.access_token
            if not tried:
                raise ConfigurationError(
                    "no Apicbase refresh token: generate a token pair in Apicbase and set "
                    "ORDERBRIDGE_APICBASE_REFRESH_TOKEN"
                )
            raise UpstreamRejected(
                "Apicbase refused the refresh token (invalid_grant): generate a new token pair "
                "in Apicbase and set ORDERBRIDGE_APICBASE_REFRESH_TOKEN",
                status=400,
            )

    def _next_refresh_token(self, stored: Tokens | None, tried: Sequence[str]) -> str | None:
        seed = self._settings.apicbase_refresh_token
        candidates = (
            stored.refresh_token if stored is not None else None,
            seed.get_secret_value() if seed is not None else None,
        )
        return next((c for c in candidates if c and c not in tried), None)

    async def _refresh(self, refresh_token: str) -> Tokens | None:
        """The new pair, or None when Apicbase refused this refresh token (``invalid_grant``)."""
        secret = self._settings.apicbase_client_secret
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self._settings.apicbase_client_id or "",
            "client_secret": secret.get_secret_value() if secret is not None else "",
        }
        headers = {"Accept": "application/json"}
        with _unavailable_after_retries(f"POST {TOKEN_PATH}"):
            async for attempt in self._retrying():
                with attempt:
                    status, answer_headers, body = await self._raw(
                        "POST", TOKEN_PATH, headers=headers, data=form
                    )
                    self._raise_if_transient(status, answer_headers)
                    return self._tokens_from(status, body, refresh_token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _tokens_from(self, status: int, body: bytes, refresh_token: str) -> Tokens | None:
        answer = _json_object(body)
        error = answer.get("error") if answer is not None else None
        if status == 400 and error == "invalid_grant":
            log.warning("apicbase refused a refresh token (invalid_grant)")
            return None
        if status == 401 or error == "invalid_client":
            raise UpstreamRejected(
                "Apicbase refused the OAuth client (invalid_client): check "
                "ORDERBRIDGE_APICBASE_CLIENT_ID and ORDERBRIDGE_APICBASE_CLIENT_SECRET",
                status=status,
            )
        access = answer.get("access_token") if answer is not None else None
        if status != 200 or answer is None or not isinstance(access, str) or not access:
            raise UpstreamRejected(
                f"Apicbase token endpoint answered {status} ({error or 'no access_token'})",
                status=status,
            )
        expires_in = answer.get("expires_in")
        rotated = answer.get("refresh_token")
        return Tokens(
            access_token=access,
            refresh_token=rotated if isinstance(rotated, str) and rotated else refresh_token,
            expires_at=(
                self._clock() + timedelta(seconds=int(expires_in))
                if isinstance(expires_in, int)
                else None
            ),
        )

    async def _persist(self, tokens: Tokens) -> None:
        """Save before use: after a rotation the old refresh token is dead.

        If the store is down the pair is kept in memory (this process keeps
        working) and saved again before each later call until it sticks.
        """
        try:
            await self._store.save_tokens(PLATFORM, tokens)
        except OrderbridgeError as exc:
            self._unsaved = tokens
            log.error(
                "apicbase tokens not persisted yet; the rotated refresh token lives only in "
                "this process until the state store answers",
                error=str(exc),
            )
        else:
            self._unsaved = None

    async def _save_pending(self) -> None:
        pending = self._unsaved
        if pending is not None and pending is self._tokens:
            await self._persist(pending)


@contextmanager
def _unavailable_after_retries(what: str) -> Iterator[None]:
    """Retries ran out: the caller gets one retryable error, whatever the last failure was."""
    try:
        yield
    except RetryableAnswer as exc:
        raise UpstreamUnavailable(f"Apicbase {what}: {exc}", retry_after=30) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise UpstreamUnavailable(
            f"Apicbase {what}: {type(exc).__name__}: {exc}", retry_after=30
        ) from None


def _mark_body(ids: Sequence[str], flag: str) -> dict[str, Any]:
    return {"ids": list(ids), flag: True}


def _instant(value: str | datetime) -> str:
    if isinstance(value, str):
        return value
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("ordered_on_gt must be timezone-aware")
    return value.isoformat()


def _json_object(body: bytes) -> dict[str, Any] | None:
    if not body:
        return None
    try:
        value = loads_exact(body)
    except OrderbridgeError:
        return None
    return value if isinstance(value, dict) else None


def _page(body: Any, page: int, page_size: int) -> PurchaseOrderPage:
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise UpstreamRejected("Apicbase order list answer has no results array", status=200)
    count = body.get("count")
    following, previous = body.get("next"), body.get("previous")
    return PurchaseOrderPage(
        count=count if isinstance(count, int) else len(body["results"]),
        next=following if isinstance(following, str) else None,
        previous=previous if isinstance(previous, str) else None,
        results=body["results"],
        page=page,
        page_size=page_size,
    )
