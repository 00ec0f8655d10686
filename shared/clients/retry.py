"""What the API clients retry, and for how long a server asked them to wait.

Shared by the upstream clients so they classify answers alike: 429, 408, 5xx,
timeouts and connection errors are worth another attempt (``stamina`` decides
when); everything else is the caller's problem.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from email.utils import parsedate_to_datetime

import aiohttp

TroubleObserver = Callable[[str], None]
"""Told the kind of every failed attempt (``throttled``, ``server_error``, ``timeout``,
``connection``): the services count them as ``orderbridge_upstream_errors_total``."""


class RetryableAnswer(Exception):
    """An answer worth retrying; ``wait`` (seconds) overrides the backoff, e.g. Retry-After."""

    def __init__(self, message: str, wait: float | None = None, *, status: int = 0) -> None:
        super().__init__(message)
        self.wait = wait
        self.status = status


@contextmanager
def observed(on_trouble: TroubleObserver | None) -> Iterator[None]:
    """Tell ``on_trouble`` the kind of an attempt that failed with upstream trouble."""
    try:
        yield
    except Exception as exc:
        kind = trouble_kind(exc)
        if kind is not None and on_trouble is not None:
            on_trouble(kind)
        raise


def trouble_kind(exc: BaseException) -> str | None:
    """The metrics label of a failed attempt, or None when it is not upstream trouble."""
    if isinstance(exc, RetryableAnswer):
        return "throttled" if exc.status == 429 else "server_error"
    if isinstance(exc, asyncio.TimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ClientError):
        return "connection"
    return None


def retry_hook(exc: Exception) -> bool | float:
    """``stamina``'s ``on=``: True to back off, a float to wait exactly that long."""
    if isinstance(exc, RetryableAnswer):
        return exc.wait if exc.wait is not None else True
    return isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError)


def retry_after_seconds(headers: Mapping[str, str], *, cap: float = 60.0) -> float | None:
    """``Retry-After`` as seconds (delta or HTTP date), within ``[0, cap]``; None when absent."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), cap)
