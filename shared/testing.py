"""Fakes for the ports in ``shared``: record what happened, fail on demand.

Used by unit tests of services (the broker itself is only ever faked in *unit*
tests of pure wiring; integration tests use the real RabbitMQ).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Sequence

from shared.errors import RetryableError
from shared.schema.models import CanonicalEvent


class RecordingPublisher:
    """A ``Publisher`` that keeps confirmed events in memory.

    Set ``fail_with`` to make the next publishes raise (e.g. ``PublishTimeout``);
    events of a failed call are not recorded, as the broker would not have them.
    """

    def __init__(self) -> None:
        self.events: list[CanonicalEvent] = []
        self.fail_with: RetryableError | None = None

    async def publish(self, event: CanonicalEvent) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.append(event)

    async def publish_many(self, events: Sequence[CanonicalEvent]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.events.extend(events)


class FakeClock:
    """A monotonic clock and a matching ``sleep`` that only move when a test says so.

    Pass ``clock`` (the instance is callable) and ``clock.sleep`` where code takes
    ``clock=`` / ``sleep=``; then ``await clock.advance(seconds)`` wakes every
    sleeper whose time has come, in time order, letting each run before the next.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), wake))
        await wake

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            at, _, wake = heapq.heappop(self._sleepers)
            self.now = max(self.now, at)
            if not wake.done():
                wake.set_result(None)
            await _settle()
        self.now = target
        await _settle()


async def _settle(rounds: int = 20) -> None:
    """Let ready callbacks run (a woken sleeper, what it awaits next, and so on)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
