"""Waiting for RabbitMQ or the state store at start: a countdown a person can watch.

Services often start beside their broker and database (``docker compose up``,
a reboot), so an unreachable dependency is retried for
``ORDERBRIDGE_STARTUP_WAIT_SECONDS``. On a terminal the wait is one line that
counts down and names what it waits for and why; in a log pipeline it is one
warning. Then the caller's ``unavailable`` error ends the command (one line,
exit code 69, ``shared.fatal``). Refused credentials and invalid URLs are not
waited for: the ``attempt`` raises those at once.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TextIO, TypeVar

from shared.errors import RetryableError
from shared.logging import get_logger, human_output

log = get_logger(__name__)

T = TypeVar("T")


class Countdown:
    """One terminal line rewritten in place: ``waiting for X (reason): giving up in 12s``."""

    def __init__(self, what: str, stream: TextIO | None = None) -> None:
        self._what = what
        self._stream = sys.stderr if stream is None else stream
        self._shown = False

    def show(self, reason: str, remaining: float) -> None:
        self._stream.write(
            f"\r\x1b[Kwaiting for {self._what} ({reason}): giving up in {remaining:.0f}s "
            "(Ctrl-C stops)"
        )
        self._stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._shown = False


async def wait_until_up(
    attempt: Callable[[], Awaitable[T]],
    *,
    what: str,
    wait_seconds: float,
    variable: str,
    unavailable: Callable[..., RetryableError],
) -> T:
    """``attempt()``'s result, retrying its ``RetryableError`` for ``wait_seconds``.

    Then ``unavailable`` (the caller's error class) with the one line every
    service prints: what could not be reached, for how long, why, and the
    ``variable`` that points elsewhere.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    countdown = Countdown(what) if human_output() else None
    delay = 0.2
    try:
        while True:
            try:
                return await attempt()
            except RetryableError as exc:
                reason = _reason(exc)
                if loop.time() + delay > deadline:
                    within = f" within {wait_seconds:g}s" if wait_seconds > 0 else ""
                    raise unavailable(
                        f"cannot reach {what}{within} ({reason}): "
                        f"start it, or point {variable} at a running one",
                        retry_after=5,
                    ) from None
                if countdown is None:
                    if delay == 0.2:  # the first failure; the give-up line follows
                        log.warning(
                            f"waiting for {what}",
                            reason=reason,
                            wait_seconds=wait_seconds,
                        )
                    await asyncio.sleep(delay)
                else:
                    await _tick(countdown, reason, delay, deadline)
                delay = min(delay * 2, 5.0)
    finally:
        if countdown is not None:
            countdown.clear()


async def _tick(countdown: Countdown, reason: str, delay: float, deadline: float) -> None:
    """Sleep ``delay`` seconds, redrawing the countdown every second."""
    loop = asyncio.get_running_loop()
    until = loop.time() + delay
    while (left := until - loop.time()) > 0:
        countdown.show(reason, max(deadline - loop.time(), 0.0))
        await asyncio.sleep(min(left, 1.0))


def _reason(exc: BaseException) -> str:
    """The last clause of an error message: ``… at url: Connection refused`` → the cause."""
    text = " ".join(str(exc).split())
    return text.rsplit(": ", 1)[-1] if ": " in text else text
