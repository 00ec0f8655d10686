"""The lease keeper's timing, on a fake clock: no sleeps, no network.

The store is the reference ``MemoryStateStore`` on the same fake clock, wrapped
where a test needs it to fail, answer slowly or report a takeover.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.errors import LeaseLost, StateUnavailable
from shared.state.lease import LeaseKeeper
from shared.state.memory import MemoryStateStore
from shared.testing import FakeClock

TTL = 30.0  # renew every 10 s, margin 3 s


class FlakyLeases:
    """Delegates to a memory store; ``down`` makes calls fail, ``stolen`` refuses renewals,
    ``delay`` makes each acquire take that long on the fake clock."""

    def __init__(self, store: MemoryStateStore, clock: FakeClock) -> None:
        self.store = store
        self.clock = clock
        self.down = False
        self.stolen = False
        self.delay = 0.0
        self.calls = 0

    async def try_acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        self.calls += 1
        if self.delay:
            await self.clock.sleep(self.delay)
        if self.down:
            raise StateUnavailable("store down")
        if self.stolen:
            return False
        return await self.store.try_acquire_lease(name, holder, ttl_seconds)

    async def release_lease(self, name: str, holder: str) -> None:
        if self.down:
            raise StateUnavailable("store down")
        await self.store.release_lease(name, holder)

    async def lease_holder(self, name: str) -> str | None:
        return await self.store.lease_holder(name)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStateStore:
    return MemoryStateStore(clock=clock)


def held(keeper: LeaseKeeper) -> bool:
    """Read the property through a call: mypy would otherwise narrow it across awaits."""
    return keeper.held


def keeper(store: object, clock: FakeClock, holder: str, **kwargs: object) -> LeaseKeeper:
    return LeaseKeeper(
        store,  # type: ignore[arg-type]
        "tradecloud-orders",
        holder,
        ttl=TTL,
        clock=clock,
        sleep=clock.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_renewals_keep_the_lease_far_beyond_its_ttl(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    changes: list[bool] = []
    a = keeper(store, clock, "a", on_change=changes.append)
    await a.acquire()
    assert held(a) and changes == [True]
    for _ in range(10):
        await clock.advance(TTL / 2)
        assert held(a)
        assert await store.lease_holder("tradecloud-orders") == "a"
        assert not await store.try_acquire_lease("tradecloud-orders", "b", TTL)
    await a.release()
    assert not held(a) and changes == [True, False]
    assert await store.lease_holder("tradecloud-orders") is None


async def test_a_second_replica_waits_and_takes_over_at_once_after_a_release(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    a, b = keeper(store, clock, "a"), keeper(store, clock, "b")
    await a.acquire()
    waiting = asyncio.create_task(b.acquire())
    await clock.advance(5 * TTL)
    assert not waiting.done(), "b must wait while a renews"
    await a.release()
    await clock.advance(b.retry_every)
    assert waiting.done() and held(b)
    assert await store.lease_holder("tradecloud-orders") == "b"
    await b.release()


async def test_a_dead_holder_is_replaced_within_ttl_plus_one_retry(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    died_at = clock()
    assert await store.try_acquire_lease("tradecloud-orders", "dead", TTL)  # never renews
    b = keeper(store, clock, "b")
    waiting = asyncio.create_task(b.acquire())
    await clock.advance(TTL - 1)
    assert not waiting.done(), "the dead holder's lease has not run out yet"
    await clock.advance(1 + b.retry_every)
    assert waiting.done() and held(b)
    assert clock() - died_at <= TTL + b.retry_every
    await b.release()


async def test_when_renewals_fail_the_lease_is_given_up_margin_before_it_runs_out(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    flaky = FlakyLeases(store, clock)
    changes: list[bool] = []
    a = keeper(flaky, clock, "a", on_change=changes.append)
    await a.acquire()
    granted_at = clock()
    flaky.down = True
    await clock.advance(TTL - a.margin - 0.001)
    assert held(a), "still inside the safe part of the last grant"
    assert flaky.calls > 1, "renewals were attempted"
    await clock.advance(0.002)
    assert not held(a)
    assert changes == [True, False]
    await asyncio.wait_for(a.wait_lost(), 1)
    with pytest.raises(LeaseLost):
        a.ensure_held()
    # The store's own lease (asked at granted_at) runs out only later: no overlap.
    assert await store.lease_holder("tradecloud-orders") == "a"
    assert clock() < granted_at + TTL
    await a.release()  # store still down: logged, not raised


async def test_trust_ends_on_time_even_while_a_renewal_hangs(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    flaky = FlakyLeases(store, clock)
    a = keeper(flaky, clock, "a")
    await a.acquire()
    granted_at = clock()
    flaky.delay = 10 * TTL  # the next renewal call does not come back in time
    await clock.advance(TTL - a.margin - 0.001)
    assert flaky.calls == 2, "a renewal is in flight"
    assert held(a)
    await clock.advance(0.002)
    assert not held(a), "held is judged by the clock, not by the renewal loop"
    with pytest.raises(LeaseLost):
        a.ensure_held()
    assert clock() - granted_at < TTL
    await a.release()


async def test_a_renewal_refused_means_someone_else_holds_it(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    flaky = FlakyLeases(store, clock)
    a = keeper(flaky, clock, "a")
    await a.acquire()
    flaky.stolen = True
    await clock.advance(a.renew_every)
    assert not held(a)
    await asyncio.wait_for(a.wait_lost(), 1)


async def test_the_deadline_counts_from_the_request_not_the_answer(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    flaky = FlakyLeases(store, clock)
    flaky.delay = 2.0  # the grant arrives 2 s after we asked
    a = keeper(flaky, clock, "a")
    asked_at = clock()
    acquiring = asyncio.create_task(a.acquire())
    await clock.advance(2.0)
    assert acquiring.done()
    flaky.down = True  # no renewal succeeds from now on
    await clock.advance(asked_at + TTL - a.margin - clock() - 0.001)
    assert held(a)
    await clock.advance(0.002)
    assert not held(a), "trust ends ttl - margin after the request, not after the answer"


async def test_run_while_held_cancels_the_work_when_the_lease_goes(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    flaky = FlakyLeases(store, clock)
    a = keeper(flaky, clock, "a")
    await a.acquire()
    cancelled = asyncio.Event()

    async def poll_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    running = asyncio.create_task(a.run_while_held(poll_forever))
    await clock.advance(TTL)  # healthy renewals: work goes on
    assert not running.done()
    flaky.stolen = True
    await clock.advance(a.renew_every)
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(running, 1)
    assert cancelled.is_set()

    # After the loss the keeper can wait for the lease again.
    flaky.stolen = False
    await a.acquire()

    async def one_page() -> str:
        return "done"

    assert await a.run_while_held(one_page) == "done"
    await a.release()


async def test_the_context_manager_acquires_and_releases(
    clock: FakeClock, store: MemoryStateStore
) -> None:
    async with keeper(store, clock, "a") as a:
        assert held(a)
        assert await store.lease_holder("tradecloud-orders") == "a"
    assert await store.lease_holder("tradecloud-orders") is None
    with pytest.raises(LeaseLost):
        a.ensure_held()


def test_renewing_must_fit_inside_the_ttl(store: MemoryStateStore) -> None:
    with pytest.raises(ValueError, match="renew_every"):
        LeaseKeeper(store, "x", "a", ttl=10, renew_every=9.5)
    with pytest.raises(ValueError, match="retry_every"):
        LeaseKeeper(store, "x", "a", ttl=10, retry_every=0)
    assert LeaseKeeper(store, "x").holder.count(":") == 2, "default holder is host:pid:random"
