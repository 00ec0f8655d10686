from datetime import UTC, datetime

from shared.state.memory import MemoryStateStore
from shared.state.port import StateStore


def _store(now: list[float]) -> StateStore:
    return MemoryStateStore(clock=lambda: now[0])


async def test_leases_exclude_other_holders_until_expiry() -> None:
    now = [100.0]
    store = _store(now)
    assert await store.try_acquire_lease("orders", "a", 10)
    assert not await store.try_acquire_lease("orders", "b", 10)
    assert await store.lease_holder("orders") == "a"
    now[0] = 111.0
    assert await store.lease_holder("orders") is None
    assert await store.try_acquire_lease("orders", "b", 10)
    await store.release_lease("orders", "a")  # not a's anymore: no effect
    assert await store.lease_holder("orders") == "b"


async def test_record_applied_is_insert_if_absent_and_monotonic() -> None:
    store = _store([0.0])
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    assert await store.record_applied("r", ["k:v6", "m6"], "tc:order:o1", 6, {"l1": t2})
    assert not await store.record_applied("r", ["k:v6"], "tc:order:o1", 6, {"l1": t2})
    assert await store.is_processed("r", ["m6"])
    assert not await store.is_processed("other-route", ["m6"])
    assert await store.record_applied("r", ["k:v5"], "tc:order:o1", 5, {"l1": t1, "l2": t1})
    applied = await store.applied_document("r", "tc:order:o1")
    assert applied is not None
    assert applied.version == 6, "an older version never lowers the mark"
    assert applied.lines == {"l1": t2, "l2": t1}
