"""One publish per event id at a time; duplicates share its outcome."""

from __future__ import annotations

import asyncio

import pytest

from services.ingress.singleflight import SingleFlight
from shared.errors import BrokerUnavailable, PublishTimeout


async def settle() -> None:
    """Let started tasks (and the tasks they start) run up to their first wait."""
    for _ in range(5):
        await asyncio.sleep(0)


class Gate:
    def __init__(self) -> None:
        self.calls = 0
        self.open = asyncio.Event()
        self.error: Exception | None = None

    async def work(self) -> None:
        self.calls += 1
        await self.open.wait()
        if self.error is not None:
            raise self.error


async def test_concurrent_duplicates_share_one_run() -> None:
    flights, gate = SingleFlight(), Gate()
    first = asyncio.ensure_future(flights.run("e1", gate.work))
    second = asyncio.ensure_future(flights.run("e1", gate.work))
    await settle()
    assert len(flights) == 1 and not first.done()
    gate.open.set()
    assert list(await asyncio.gather(first, second)) == [False, True]
    assert gate.calls == 1 and flights.coalesced == 1 and len(flights) == 0
    await flights.run("e1", gate.work)  # finished runs are forgotten: a later delivery publishes
    assert gate.calls == 2


async def test_the_failure_is_shared() -> None:
    flights, gate = SingleFlight(), Gate()
    gate.error = PublishTimeout("no confirm", retry_after=5)
    runs = [asyncio.ensure_future(flights.run("e1", gate.work)) for _ in range(3)]
    await settle()
    gate.open.set()
    results = await asyncio.gather(*runs, return_exceptions=True)
    assert all(isinstance(result, PublishTimeout) for result in results)
    assert gate.calls == 1


async def test_other_keys_run_concurrently() -> None:
    flights, gate = SingleFlight(), Gate()
    runs = [asyncio.ensure_future(flights.run(f"e{i}", gate.work)) for i in range(5)]
    await settle()
    assert gate.calls == 5 and len(flights) == 5
    gate.open.set()
    await asyncio.gather(*runs)


async def test_joiners_of_an_interrupted_publish_get_a_retryable_error() -> None:
    flights, gate = SingleFlight(), Gate()
    leader = asyncio.ensure_future(flights.run("e1", gate.work))
    await settle()
    joiner = asyncio.ensure_future(flights.run("e1", gate.work))
    await settle()
    draining = asyncio.ensure_future(flights.drain())
    await settle()
    assert not draining.done()
    leader.cancel()  # only a forced shutdown cancels a handler
    with pytest.raises(asyncio.CancelledError):
        await leader
    with pytest.raises(BrokerUnavailable):
        await joiner
    await asyncio.wait_for(draining, 1)
    assert len(flights) == 0 and gate.calls == 1


async def test_a_failure_nobody_joined_is_not_reported_as_lost(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flights, gate = SingleFlight(), Gate()
    gate.error = PublishTimeout("no confirm", retry_after=5)
    gate.open.set()
    with pytest.raises(PublishTimeout):
        await flights.run("e1", gate.work)
    import gc

    gc.collect()
    await settle()
    assert "never retrieved" not in caplog.text
