"""Keep a lease while working: one active poller/fetcher per stream, takeover on death.

A replica waits in ``acquire()`` while another holds the lease, renews it in
the background once it has it, and signals loss (``lost``, ``held``,
``ensure_held()``) the moment it can no longer be sure it holds it, so work
stops before it commits a cursor it no longer owns. When the holder dies
without releasing, its lease runs out after ``ttl`` and a waiting replica
takes over within ``ttl + retry_every``.

Timing is conservative: the keeper starts its own timer *before* asking the
store, and the store starts the lease's TTL when it answers, by its own clock
(the database's for PostgreSQL). So the keeper's deadline is never later than
the store's, whatever the hosts' clocks say; ``margin`` is kept in reserve
for the time between ``ensure_held()`` and the write it guards.

Even a stale holder can do no harm beyond duplicates: a poller commits a
cursor only after publishing everything before it, so a cursor written late
moves backwards at worst (re-publishing, absorbed by idempotency keys).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from shared.errors import LeaseLost, StateUnavailable
from shared.logging import get_logger
from shared.state.port import LeaseStore

log = get_logger(__name__)

T = TypeVar("T")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


def default_holder() -> str:
    """``host:pid:random``: unique per process start, readable in ``lease_holder``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseKeeper:
    """Acquire, renew and release one lease (see the module docstring).

    ``ttl``: lease duration in the store; ``renew_every``: renewal period
    (default ``ttl / 3``); ``retry_every``: how often a waiting replica asks
    (default ``renew_every``); ``margin``: how long before the deadline the
    keeper stops trusting the lease (default ``ttl / 10``). ``clock`` must be
    monotonic; ``on_change(held)`` is called on every gain and loss (metrics).
    """

    def __init__(
        self,
        store: LeaseStore,
        name: str,
        holder: str | None = None,
        *,
        ttl: float = 30.0,
        renew_every: float | None = None,
        retry_every: float | None = None,
        margin: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self.holder = holder or default_holder()
        self.ttl = ttl
        self.renew_every = ttl / 3 if renew_every is None else renew_every
        self.retry_every = self.renew_every if retry_every is None else retry_every
        self.margin = ttl / 10 if margin is None else margin
        if not 0 < self.renew_every < ttl - self.margin or self.margin < 0:
            raise ValueError(
                f"lease {name!r}: need 0 < renew_every ({self.renew_every}) "
                f"< ttl ({ttl}) - margin ({self.margin})"
            )
        if not self.retry_every > 0:
            raise ValueError(f"lease {name!r}: retry_every must be positive")
        self._store = store
        self._clock = clock
        self._sleep = sleep
        self._on_change = on_change
        self._deadline: float | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    # -- what the worker asks ------------------------------------------------------------

    @property
    def held(self) -> bool:
        """True while the lease is certainly ours (renewed in time, margin kept)."""
        return self._deadline is not None and self._clock() < self._deadline - self.margin

    def ensure_held(self) -> None:
        """Raise ``LeaseLost`` unless ``held``: call it right before a commit."""
        if not self.held:
            raise LeaseLost(f"lease {self.name!r} is no longer held by {self.holder}")

    async def wait_lost(self) -> None:
        """Return once a lease this keeper held is lost (expired or taken over)."""
        await self._lost.wait()

    # -- lifecycle -----------------------------------------------------------------------

    async def acquire(self) -> None:
        """Wait until the lease is ours, then keep renewing it in the background."""
        if self._renewer is not None:
            raise RuntimeError(f"lease {self.name!r} is already held by this keeper")
        waited = False
        while not await self._ask():  # None (store down) waits too
            if not waited:
                log.info(
                    "waiting for lease",
                    lease=self.name,
                    holder=await self._current_holder(),
                )
                waited = True
            await self._sleep(self.retry_every)
        self._lost.clear()
        self._renewer = asyncio.create_task(self._renew(), name=f"lease-{self.name}")
        log.info("lease acquired", lease=self.name, holder=self.holder)
        self._changed(True)

    async def release(self) -> None:
        """Stop renewing and give the lease up, so a waiting replica takes over at once."""
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
        was_held = self._deadline is not None
        self._deadline = None
        try:
            await self._store.release_lease(self.name, self.holder)
        except StateUnavailable as exc:  # it runs out by itself
            log.warning("lease release failed", lease=self.name, error=str(exc))
        if was_held:
            log.info("lease released", lease=self.name, holder=self.holder)
            self._changed(False)

    async def run_while_held(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work`` under the lease; cancel it and raise ``LeaseLost`` if the lease goes."""
        self.ensure_held()
        task = asyncio.ensure_future(work())
        watch = asyncio.ensure_future(self._lost.wait())
        try:
            await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if task.cancelled() and self._lost.is_set():
            raise LeaseLost(f"lease {self.name!r} lost while working")
        return task.result()

    async def __aenter__(self) -> LeaseKeeper:
        await self.acquire()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.release()

    # -- internals -----------------------------------------------------------------------

    async def _ask(self, within: float | None = None) -> bool | None:
        """One acquire/renew round trip, bounded by ``within`` seconds when given.

        On success the deadline moves to ``ttl`` after the moment we *asked*
        (never past the store's own). None when the store did not answer.
        """
        asked_at = self._clock()
        try:
            async with asyncio.timeout(None if within is None else max(within, 0.0)):
                granted = await self._store.try_acquire_lease(self.name, self.holder, self.ttl)
        except (StateUnavailable, TimeoutError) as exc:
            log.warning("lease store unavailable", lease=self.name, error=str(exc) or "timeout")
            return None
        if granted:
            self._deadline = asked_at + self.ttl
        return granted

    async def _renew(self) -> None:
        try:
            while self._deadline is not None:
                trust_ends = self._deadline - self.margin
                now = self._clock()
                if now + self.renew_every >= trust_ends:
                    # No renewal fits any more (the last ones failed): stop trusting on time.
                    await self._sleep(max(0.0, trust_ends - now))
                    self._lose("renewals failed until the lease ran out")
                    return
                await self._sleep(self.renew_every)
                granted = await self._ask(within=trust_ends - self._clock())
                if granted is False:
                    self._lose("another holder took it over")
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must not leave a worker believing in the lease
            log.exception("lease renewal crashed", lease=self.name)
            self._lose(f"renewal crashed: {exc!r}")

    async def _current_holder(self) -> str | None:
        try:
            return await self._store.lease_holder(self.name)
        except StateUnavailable:
            return None

    def _lose(self, reason: str) -> None:
        self._deadline = None
        self._renewer = None
        self._lost.set()
        log.warning("lease lost", lease=self.name, holder=self.holder, reason=reason)
        self._changed(False)

    def _changed(self, held: bool) -> None:
        if self._on_change is not None:
            self._on_change(held)
