from datetime import UTC, datetime

from shared.applied import HEADER, PartState
from shared.state.memory import MemoryStateStore
from shared.state.port import Lookup, Record, StateStore


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


async def test_record_applied_decides_again_and_never_moves_a_part_back() -> None:
    store = _store([0.0])
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    v6 = {HEADER: PartState(6, t2, "h6"), "l1": PartState(6, t2, "a")}
    assert await store.record_applied("r", Record("m6", "tc:order:o1", v6))
    assert not await store.record_applied("r", Record("m6", "tc:order:o1", v6)), "same delivery"
    assert not await store.record_applied("r", Record(None, "tc:order:o1", v6)), "nothing new"
    assert await store.lookup("r", [Lookup("m6", "tc:order:o1")]) == [(True, None)]
    assert (await store.lookup("other-route", [Lookup("m6", "x")])) == [(False, None)]
    older = {
        HEADER: PartState(5, t1, "h5"),
        "l1": PartState(5, t1, "old"),
        "l2": PartState(5, t1, "b"),
    }
    assert await store.record_applied("r", Record(None, "tc:order:o1", older))
    applied = await store.applied_document("r", "tc:order:o1")
    assert applied is not None
    assert applied.parts == {**v6, "l2": PartState(5, t1, "b")}, "only the news was written"
