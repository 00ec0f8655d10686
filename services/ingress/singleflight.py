"""One publish per event id at a time; concurrent duplicates share its outcome.

Tradecloud redelivers an event when our answer was lost, and may do so while
the first attempt is still waiting for its confirm. Both carry the same
deterministic ``event_id`` (= AMQP ``message_id``). Publishing both at once is
wasteful, and aiormq tracks returned (unroutable) messages by ``message_id``,
so two concurrent publishes with one id can mix up their outcomes
(aio-pika#689). The second caller therefore waits for the first publish.

The first caller publishes in its own task (no extra task per request: this is
the hot path). aiohttp does not cancel a handler when its client hangs up, so
a publish runs to its confirm or deadline; only a forced shutdown cancels it,
and then the callers waiting on it get a retryable error (503), never a 2xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from shared.errors import BrokerUnavailable


class SingleFlight:
    def __init__(self) -> None:
        self._running: dict[str, asyncio.Future[None]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._running)

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> bool:
        """Run ``work`` unless a run for ``key`` is in flight; wait for it either way.

        Returns True when this call joined a run already in flight. The outcome
        (including the exception) is the shared run's.
        """
        running = self._running.get(key)
        if running is not None:
            self.coalesced += 1
            await asyncio.shield(running)
            return True
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._running[key] = outcome
        try:
            await work()
        except asyncio.CancelledError:
            _fail(outcome, BrokerUnavailable("the publish was interrupted", retry_after=1))
            raise
        except BaseException as exc:
            _fail(outcome, exc)
            raise
        else:
            outcome.set_result(None)
        finally:
            del self._running[key]
        return False

    async def drain(self) -> None:
        """Wait until every run in flight finished (their errors belong to their callers)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)


def _fail(outcome: asyncio.Future[None], exc: BaseException) -> None:
    outcome.set_exception(exc)
    outcome.exception()  # retrieved: no "never retrieved" warning when nobody joined
