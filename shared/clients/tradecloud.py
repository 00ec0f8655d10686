"""Tradecloud API v2 client: JWT auth, rate limit, retries, exact-decimal pages.

Rules it follows (api-facts §2.5, §2.6, §7.14):

* JWT flow: ``GET /authentication/login`` with Basic returns the tokens in the
  ``Set-Authorization`` and ``Set-Refresh-Token`` response *headers*;
  ``GET /authentication/refresh`` with only a ``Refresh-Token`` header returns a
  new pair (the old refresh token dies). Sources disagree on lifetimes (1 h, 10
  min), so the client refreshes proactively (default every 9 minutes, as
  Tradecloud's reference connector does) and logs in again once on a 401.
* At most 10 requests per second; Tradecloud's side times out after 5 s.
* 429 (honouring ``Retry-After``), 5xx, timeouts and connection errors are
  retried with capped exponential backoff and jitter (stamina); when retries
  run out the caller gets ``UpstreamUnavailable`` (retryable). Other 4xx are
  ``UpstreamRejected`` (permanent).
* Bodies are decoded with ``loads_exact``: prices and quantities stay exact.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
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
from shared.errors import ConfigurationError, UpstreamRejected, UpstreamUnavailable
from shared.logging import get_logger
from shared.schema.codec import dumps_exact, loads_exact
from shared.settings import OrderbridgeSettings

log = get_logger(__name__)

PRODUCTION_URL: Final = "https://api.tradecloud1.com/v2"
MAX_PAGE: Final = 100


class TradecloudSettings(OrderbridgeSettings):
    """``ORDERBRIDGE_TRADECLOUD_*``: the API the poller and the GET webhook path call."""

    tradecloud_api_url: str = PRODUCTION_URL
    tradecloud_username: str | None = None
    tradecloud_password: SecretStr | None = None
    tradecloud_timeout_seconds: float = Field(default=5.0, gt=0)
    tradecloud_requests_per_second: float = Field(default=10.0, gt=0)
    tradecloud_refresh_seconds: float = Field(default=540.0, gt=0)
    tradecloud_retry_seconds: float = Field(
        default=60.0, gt=0, description="Give up retrying one call after this long."
    )
    tradecloud_backoff_initial_seconds: float = Field(default=0.5, gt=0)
    tradecloud_backoff_max_seconds: float = Field(default=10.0, gt=0)

    def configured(self) -> bool:
        return bool(self.tradecloud_username and self.tradecloud_password)


@dataclass(frozen=True)
class StatusFilter:
    """``filters.status``: each field an array of accepted values (api-facts §7.11)."""

    process_status: Sequence[str] = ()
    in_progress_status: Sequence[str] = ()
    logistics_status: Sequence[str] = ()
    delivery_line_status: Sequence[str] = ()

    def as_json(self) -> dict[str, list[str]]:
        pairs = {
            "processStatus": self.process_status,
            "inProgressStatus": self.in_progress_status,
            "logisticsStatus": self.logistics_status,
            "deliveryLineStatus": self.delivery_line_status,
        }
        return {key: list(values) for key, values in pairs.items() if values}


@dataclass(frozen=True)
class PollPage:
    """One poll answer: documents in their current state, the total and the cursor."""

    data: list[Any]
    total: int | None
    """The answer's ``total`` (all matches, regardless of paging); None when it had none.

    Some answers carry only ``{data, lastUpdatedAt}``: guessing ``len(data)``
    would call a full page the last one, and the cursor would then jump past
    documents (same-millisecond siblings included) still waiting on the next.
    """
    last_updated_at: str | None
    """The response-level ``lastUpdatedAt`` (or the last document's, for older servers)."""
    offset: int = 0
    limit: int | None = None
    """The ``limit`` the page was asked for: without ``total`` only a short page ends paging."""

    @property
    def exhausted(self) -> bool:
        """True when this page drained the backlog for its cursor.

        With ``total``: the page reaches it. Without: the page is short (fewer
        documents than asked for); a full page may have a successor, so paging
        goes on until a short one. Without either (an unknown ``limit``), only
        an empty page is known to be the end.
        """
        if self.total is not None:
            return self.offset + len(self.data) >= self.total
        if self.limit is not None:
            return len(self.data) < self.limit
        return not self.data


@dataclass
class _Tokens:
    access: str
    refresh: str | None
    issued_at: float = field(default_factory=time.monotonic)


class TradecloudClient:
    """One logged-in integration user; safe to share between tasks."""

    def __init__(
        self,
        settings: TradecloudSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        on_trouble: TroubleObserver | None = None,
    ) -> None:
        if not settings.configured():
            raise ConfigurationError(
                "Tradecloud credentials missing: set ORDERBRIDGE_TRADECLOUD_USERNAME and "
                "ORDERBRIDGE_TRADECLOUD_PASSWORD"
            )
        self._settings = settings
        self._base = settings.tradecloud_api_url.rstrip("/")
        self._own_session = session is None
        self._session = session
        self._limiter = AsyncLimiter(settings.tradecloud_requests_per_second, 1.0)
        self._tokens: _Tokens | None = None
        self._auth_lock = asyncio.Lock()
        self._on_trouble = on_trouble

    async def __aenter__(self) -> TradecloudClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._tokens is not None and self._tokens.refresh is not None:
            await self._logout()
        if self._own_session and self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------ API

    async def poll_orders(
        self,
        since: str,
        *,
        offset: int = 0,
        limit: int = MAX_PAGE,
        status: StatusFilter | None = None,
        single_delivery: bool = False,
    ) -> PollPage:
        path = "/order-search/poll/single-delivery" if single_delivery else "/order-search/poll"
        return await self._poll(path, since, offset, limit, status)

    async def poll_shipments(
        self,
        since: str,
        *,
        offset: int = 0,
        limit: int = MAX_PAGE,
        status: StatusFilter | None = None,
    ) -> PollPage:
        return await self._poll("/shipment/poll", since, offset, limit, status)

    async def get_order(self, order_id: str) -> Any:
        """The whole order (all lines), for the legacy GET webhook (bearer only)."""
        return await self._call("GET", f"/order/{_segment(order_id)}")

    async def get_shipment(self, shipment_id: str) -> Any:
        return await self._call("GET", f"/shipment/{_segment(shipment_id)}")

    async def _poll(
        self, path: str, since: str, offset: int, limit: int, status: StatusFilter | None
    ) -> PollPage:
        if not 0 < limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1..{MAX_PAGE}")
        filters: dict[str, Any] = {"lastUpdatedAfter": since}
        if status is not None and status.as_json():
            filters["status"] = status.as_json()
        body = await self._call(
            "POST", path, json={"filters": filters, "offset": offset, "limit": limit}
        )
        return _page(body, offset, limit)

    # ------------------------------------------------------------ transport

    async def _call(self, method: Literal["GET", "POST"], path: str, json: Any = None) -> Any:
        payload = dumps_exact(json) if json is not None else None
        relogged = False
        try:
            async for attempt in self._attempts():
                with attempt, observed(self._on_trouble):
                    status, headers, body = await self._send(method, path, payload)
                    if status == 401 and not relogged:
                        relogged = True  # expired or revoked: log in again, once
                        await self._login(force=True)
                        status, headers, body = await self._send(method, path, payload)
                    return self._answer(method, path, status, headers, body)
        except RetryableAnswer as exc:
            raise UpstreamUnavailable(str(exc), retry_after=30) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(
                f"Tradecloud {method} {path}: {type(exc).__name__}: {exc}", retry_after=30
            ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(
        self, method: str, path: str, status: int, headers: Mapping[str, str], body: bytes
    ) -> Any:
        _classify(status, headers, f"Tradecloud {method} {path}")
        if status >= 400:
            raise UpstreamRejected(
                f"Tradecloud {method} {path} answered {status}: {body[:200]!r}",
                status=status,
                path=path,
            )
        return loads_exact(body) if body else None

    async def _send(
        self, method: str, path: str, payload: bytes | None
    ) -> tuple[int, Mapping[str, str], bytes]:
        token = await self._access_token()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        return await self._raw(method, path, headers=headers, data=payload)

    async def _raw(
        self, method: str, path: str, *, headers: Mapping[str, str], data: bytes | None = None
    ) -> tuple[int, Mapping[str, str], bytes]:
        async with self._limiter:
            session = self._session_or_new()
            timeout = aiohttp.ClientTimeout(total=self._settings.tradecloud_timeout_seconds)
            async with session.request(
                method, self._base + path, headers=headers, data=data, timeout=timeout
            ) as response:
                return response.status, response.headers, await response.read()

    def _attempts(self) -> AsyncIterator[stamina.Attempt]:
        """One call's retries: capped exponential backoff with jitter, within the deadline."""
        settings = self._settings
        return stamina.retry_context(
            on=retry_hook,
            attempts=None,
            timeout=settings.tradecloud_retry_seconds,
            wait_initial=settings.tradecloud_backoff_initial_seconds,
            wait_max=settings.tradecloud_backoff_max_seconds,
            wait_jitter=settings.tradecloud_backoff_initial_seconds,
        )

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    # ------------------------------------------------------------ auth

    async def _access_token(self) -> str:
        tokens = self._tokens
        if (
            tokens is None
            or time.monotonic() - tokens.issued_at > self._settings.tradecloud_refresh_seconds
        ):
            await self._login(force=False)
            tokens = self._tokens
        assert tokens is not None
        return tokens.access

    async def _login(self, *, force: bool) -> None:
        async with self._auth_lock:
            current = self._tokens
            age = time.monotonic() - current.issued_at if current else None
            if (
                not force
                and current is not None
                and age is not None
                and age <= self._settings.tradecloud_refresh_seconds
            ):
                return  # another task renewed while we waited
            if (
                not force
                and current is not None
                and current.refresh is not None
                and await self._refresh(current.refresh)
            ):
                return
            await self._basic_login()

    async def _basic_login(self) -> None:
        user = self._settings.tradecloud_username or ""
        secret = self._settings.tradecloud_password
        password = secret.get_secret_value() if secret else ""
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        status, headers, _body = await self._auth_call(
            "/authentication/login", {"Authorization": f"Basic {basic}"}
        )
        if status in (401, 403):
            raise UpstreamRejected(
                "Tradecloud refused the integration user's credentials", status=status
            )
        self._tokens = _tokens_from(status, headers, "login")

    async def _refresh(self, refresh_token: str) -> bool:
        status, headers, _body = await self._auth_call(
            "/authentication/refresh", {"Refresh-Token": refresh_token}
        )
        if status != 200:
            log.info("Tradecloud token refresh refused; logging in again", status=status)
            return False
        self._tokens = _tokens_from(status, headers, "refresh")
        return True

    async def _auth_call(
        self, path: str, headers: Mapping[str, str]
    ) -> tuple[int, Mapping[str, str], bytes]:
        try:
            async for attempt in self._attempts():
                with attempt:
                    status, answer_headers, body = await self._raw("GET", path, headers=headers)
                    _classify(status, answer_headers, f"Tradecloud {path}")
                    return status, answer_headers, body
        except RetryableAnswer as exc:
            raise UpstreamUnavailable(str(exc), retry_after=30) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise UpstreamUnavailable(f"Tradecloud {path}: {exc!r}", retry_after=30) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _logout(self) -> None:
        tokens = self._tokens
        self._tokens = None
        if tokens is None or tokens.refresh is None or self._session is None:
            return
        try:
            async with (
                self._limiter,
                self._session.post(
                    self._base + "/authentication/logout",
                    headers={"Refresh-Token": tokens.refresh},
                    timeout=aiohttp.ClientTimeout(total=self._settings.tradecloud_timeout_seconds),
                ),
            ):
                pass
        except (aiohttp.ClientError, TimeoutError):
            pass  # the refresh token expires by itself


def _tokens_from(status: int, headers: Mapping[str, str], what: str) -> _Tokens:
    access = headers.get("Set-Authorization", "").removeprefix("Bearer ").strip()
    if status != 200 or not access:
        raise UpstreamRejected(f"Tradecloud {what} answered {status} without tokens", status=status)
    return _Tokens(access=access, refresh=headers.get("Set-Refresh-Token") or None)


def _classify(status: int, headers: Mapping[str, str], what: str) -> None:
    """Raise ``RetryableAnswer`` for 408, 429 (honouring ``Retry-After``) and 5xx."""
    if status == 429:
        raise RetryableAnswer(
            f"{what}: 429 Too Many Requests", wait=retry_after_seconds(headers), status=429
        )
    if status >= 500 or status == 408:
        raise RetryableAnswer(f"{what}: {status}", wait=retry_after_seconds(headers), status=status)


def _segment(identifier: str) -> str:
    from urllib.parse import quote

    return quote(identifier, safe="")


def _page(body: Any, offset: int, limit: int) -> PollPage:
    """A poll answer as a ``PollPage``; ``offset`` and ``limit`` are what was asked for.

    A missing ``total`` stays None (never ``len(data)``: that would make every
    page look like the last one); so does one that is not an integer.
    """
    if not isinstance(body, dict):
        raise UpstreamRejected(
            "Tradecloud poll answered something that is not an object", status=200
        )
    data = body.get("data", body.get("orders"))  # older servers said "orders"
    if not isinstance(data, list):
        raise UpstreamRejected("Tradecloud poll answer has no data array", status=200)
    total = body.get("total")
    cursor = body.get("lastUpdatedAt")
    if not isinstance(cursor, str) and data:
        last = data[-1]
        stamp = last.get("lastUpdatedAt") if isinstance(last, dict) else None
        if stamp is None and isinstance(last, dict):  # shipments keep it in meta
            stamp = (last.get("meta") or {}).get("lastUpdatedAt")
        cursor = stamp if isinstance(stamp, str) else None
    return PollPage(
        data=data,
        total=total if isinstance(total, int) and not isinstance(total, bool) else None,
        last_updated_at=cursor if isinstance(cursor, str) else None,
        offset=offset,
        limit=limit,
    )
