"""The ``StateStore`` contract, run against memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.applied import HEADER, PartState
from shared.state.port import AppliedDocument, Lookup, Record, StateStore, Tokens
from tests.integration.state.conftest import Backend

pytestmark = pytest.mark.integration

T0 = datetime(2025, 4, 23, 10, 1, 53, 812000, tzinfo=UTC)
ROUTE = "erp-confirmed"
DOC = "tradecloud:order:0b0c5e6e-1d1a-4b7e-9a3e-2f4f0c1d2e3f"


# -- cursors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cursor",
    [
        "2025-04-23T10:01:53.812Z",
        "2025-04-23T10:01:53.000Z",  # trailing zeros a datetime would drop
        "2025-04-23T12:01:53.812+02:00",  # an offset a datetime would normalize
        " 2025-04-23T10:01:53.812Z\n",  # whitespace is data too
        "2025-13-45T99:99:99.999Z",  # never parsed, so never refused
        "opaque-🧾-token",
    ],
)
async def test_cursors_come_back_byte_identical(store: StateStore, cursor: str) -> None:
    assert await store.get_cursor("tradecloud:orders") is None
    await store.set_cursor("tradecloud:orders", cursor)
    stored = await store.get_cursor("tradecloud:orders")
    assert stored is not None and stored.encode() == cursor.encode()


async def test_cursors_are_per_stream_and_overwritten(backend: Backend) -> None:
    store = await backend.open()
    await store.set_cursor("tradecloud:orders", "2025-04-23T10:01:53.812Z")
    await store.set_cursor("tradecloud:shipments", "2025-01-01T00:00:00.000Z")
    await store.set_cursor("tradecloud:orders", "2025-04-23T10:01:54.001Z")
    other = await backend.open()
    assert await other.get_cursor("tradecloud:orders") == "2025-04-23T10:01:54.001Z"
    assert await other.get_cursor("tradecloud:shipments") == "2025-01-01T00:00:00.000Z"


# -- tokens -----------------------------------------------------------------------------------


async def test_tokens_round_trip_and_rotation_overwrites(backend: Backend) -> None:
    store = await backend.open()
    assert await store.load_tokens("apicbase") is None
    expires = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    await store.save_tokens("apicbase", Tokens("access-1", "refresh-1", expires))
    await store.save_tokens("tradecloud", Tokens("tc-access"))
    await store.save_tokens("apicbase", Tokens("access-2", "refresh-2", expires))
    loaded = await (await backend.open()).load_tokens("apicbase")
    assert loaded == Tokens("access-2", "refresh-2", expires)
    assert loaded is not None and loaded.expires_at is not None
    assert loaded.expires_at.utcoffset() == timedelta(hours=2), "the offset survives"
    assert await store.load_tokens("tradecloud") == Tokens("tc-access", None, None)
    assert "access-2" not in repr(loaded) and "refresh-2" not in repr(loaded)


# -- leases -----------------------------------------------------------------------------------


async def test_a_lease_excludes_other_holders_until_it_expires(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    assert await a.try_acquire_lease("orders", "a", 0.5)
    assert not await b.try_acquire_lease("orders", "b", 0.5)
    assert await b.lease_holder("orders") == "a"
    assert await b.try_acquire_lease("shipments", "b", 0.5), "leases are per name"
    await backend.advance(0.6)
    assert await a.lease_holder("orders") is None
    assert await b.try_acquire_lease("orders", "b", 0.5), "expired: another holder takes over"
    assert not await a.try_acquire_lease("orders", "a", 0.5)
    assert await a.lease_holder("orders") == "b"


async def test_renewing_extends_the_lease(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    assert await a.try_acquire_lease("orders", "a", 1.0)
    await backend.advance(0.6)
    assert await a.try_acquire_lease("orders", "a", 1.0), "the holder renews"
    await backend.advance(0.6)  # past the first grant, inside the renewal
    assert not await b.try_acquire_lease("orders", "b", 1.0)
    assert await b.lease_holder("orders") == "a"


async def test_only_the_holder_releases(backend: Backend) -> None:
    a, b = await backend.open(), await backend.open()
    assert await a.try_acquire_lease("orders", "a", 30)
    await b.release_lease("orders", "b")
    assert await b.lease_holder("orders") == "a"
    await a.release_lease("orders", "a")
    assert await b.lease_holder("orders") is None
    assert await b.try_acquire_lease("orders", "b", 30), "released: free at once"
    await a.release_lease("orders", "a")  # a stale release is a no-op
    assert await a.lease_holder("orders") == "b"


async def test_a_lease_needs_a_positive_ttl(store: StateStore) -> None:
    for ttl in (0, -1.0):
        with pytest.raises(ValueError, match="TTL"):
            await store.try_acquire_lease("orders", "a", ttl)


async def test_racing_for_a_free_lease_has_one_winner(backend: Backend) -> None:
    stores = [await backend.open() for _ in range(3)]
    results = await asyncio.gather(
        *(s.try_acquire_lease("orders", f"h{i}", 30) for i, s in enumerate(stores * 3))
    )
    winners = {f"h{i % 3}" for i, won in enumerate(results) if won}
    assert len(winners) == 1
    assert await stores[0].lease_holder("orders") in winners


# -- deliveries and applied parts -------------------------------------------------------------


def parts(version: int | None, stamp: datetime | None, **digests: str) -> dict[str, PartState]:
    """Header and lines at one version and stamp; ``h`` is the header's digest."""
    return {
        (HEADER if name == "h" else name): PartState(version, stamp, digest)
        for name, digest in digests.items()
    }


async def test_deliveries_are_per_route_and_a_recorded_one_is_refused(store: StateStore) -> None:
    assert await store.lookup(ROUTE, [Lookup("msg-1", DOC)]) == [(False, None)]
    assert await store.record_applied(ROUTE, Record("msg-1", DOC, parts(6, T0, h="h6")))
    assert await store.lookup(ROUTE, [Lookup("msg-1", DOC)]) == [(True, None)]
    assert await store.lookup("erp-shipped", [Lookup("msg-1", DOC)]) == [(False, None)]
    # Another delivery with news for the same document applies; the same one never again.
    assert not await store.record_applied(ROUTE, Record("msg-1", DOC, parts(7, T0, h="h7")))
    assert await store.record_applied(ROUTE, Record("msg-2", DOC, parts(7, T0, h="h7")))
    assert await store.record_applied("erp-shipped", Record("msg-1", DOC, parts(6, T0, h="h6")))


async def test_nothing_new_is_refused_whole(store: StateStore) -> None:
    assert await store.record_applied(ROUTE, Record(None, DOC, parts(6, T0, h="h6", a="a6")))
    later = T0 + timedelta(seconds=1)
    refused = Record("m7", DOC, parts(6, T0, h="h6", a="a6"))  # the same state, by webhook
    assert not await store.record_applied(ROUTE, refused)
    assert await store.lookup(ROUTE, [Lookup("m7", DOC)]) == [
        (False, AppliedDocument(parts(6, T0, h="h6", a="a6")))
    ], "a refused event leaves no delivery behind"
    older = Record(None, DOC, parts(5, later, h="h5", a="a5"))
    assert not await store.record_applied(ROUTE, older), "older than what was applied"


async def test_parts_never_move_back_and_come_back_in_utc(store: StateStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    v6 = parts(6, T0, h="h6", a="a6", b="b6")
    assert await store.record_applied(ROUTE, Record(None, DOC, v6))
    # v5 arrives late: its header and line a are older; line c is news to the ERP.
    v5 = parts(5, (T0 - timedelta(hours=1)).astimezone(plus2), h="h5", a="a5", c="c5")
    assert await store.record_applied(ROUTE, Record(None, DOC, v5))
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None
    assert applied.parts == {**v6, "c": PartState(5, T0 - timedelta(hours=1), "c5")}
    assert all(
        state.stamp is not None and state.stamp.utcoffset() == timedelta(0)
        for state in applied.parts.values()
    )
    # A newer version carrying line b unchanged moves its mark on (known, newer).
    assert await store.record_applied(ROUTE, Record(None, DOC, parts(9, T0, h="h9", b="b6")))
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None and applied.parts["b"] == PartState(9, T0, "b6")
    assert await store.applied_document("erp-shipped", DOC) is None, "per route"
    assert await store.applied_document(ROUTE, DOC + "-other") is None, "per document"


async def test_versions_are_64_bit_and_stamps_and_digests_optional(store: StateStore) -> None:
    big = {HEADER: PartState(2**40, None, "x"), "a": PartState(None, None, None)}
    assert await store.record_applied(ROUTE, Record(None, DOC, big))
    assert await store.applied_document(ROUTE, DOC) == AppliedDocument(big)


async def test_bad_input_is_refused_before_anything_is_written(store: StateStore) -> None:
    with pytest.raises(ValueError, match="part"):
        await store.record_applied(ROUTE, Record("m", DOC, {}))
    with pytest.raises(ValueError, match="timezone"):
        await store.record_applied(
            ROUTE, Record("m", DOC, {"1": PartState(1, datetime(2025, 1, 1), "d")})
        )
    assert await store.lookup(ROUTE, [Lookup("m", DOC)]) == [(False, None)]


async def test_concurrent_copies_of_one_change_have_exactly_one_winner(backend: Backend) -> None:
    """Four handles (separate connections for SQLite and PostgreSQL) race on 25 changes of
    one document, each arriving four times (twice as a webhook delivery, twice as a poll)."""
    stores = [await backend.open() for _ in range(4)]
    attempts = []
    for copy, change in itertools.product(range(4), range(25)):
        delivery = f"msg-{change}" if copy % 2 else None
        record = Record(delivery, DOC, parts(change, T0, h=f"h{change}"))
        attempts.append((change, stores[copy].record_applied(ROUTE, record)))
    results = await asyncio.gather(*(attempt for _, attempt in attempts))
    wins = [change for (change, _), won in zip(attempts, results, strict=True) if won]
    assert len(wins) == len(set(wins)), "no change recorded twice"
    applied = await stores[0].applied_document(ROUTE, DOC)
    assert applied == AppliedDocument(parts(24, T0, h="h24")), "the newest state won"


async def test_a_burst_on_one_handle_records_each_change_once(store: StateStore) -> None:
    """Calls issued together on one handle (SQLite commits them as one group, each in its
    own savepoint; PostgreSQL runs them on pooled connections): copies inside the burst
    are refused whole, the rest applies."""
    webhook = Record("msg-a", DOC, parts(5, T0, h="h5", a="a5"))
    poll = Record(None, DOC, parts(5, T0, h="h5", a="a5"))  # the same state, polled
    late = Record(None, DOC, parts(3, T0 - timedelta(hours=1), h="h3", b="b3"))  # b is news
    newer = Record(None, DOC, parts(7, T0, h="h7"))
    burst = [webhook, poll, late, late, newer, webhook]
    results = await asyncio.gather(*(store.record_applied(ROUTE, r) for r in burst))
    # PostgreSQL runs them on several connections in any order: count the winners.
    assert sum(results[i] for i in (0, 1, 5)) == 1, "one copy of the v5 state"
    assert sum(results[i] for i in (2, 3)) == 1, "one copy of the late line b"
    assert results[4], "the newer header"
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None
    assert applied.parts == {
        **parts(7, T0, h="h7"),
        "a": PartState(5, T0, "a5"),
        "b": PartState(3, T0 - timedelta(hours=1), "b3"),
    }


async def test_a_round_is_looked_up_at_once(store: StateStore) -> None:
    assert await store.record_applied(ROUTE, Record("m1", DOC, parts(1, T0, h="h1")))
    answers = await store.lookup(
        ROUTE, [Lookup("m1", DOC), Lookup(None, DOC), Lookup("m2", "other"), Lookup(None, DOC)]
    )
    known = AppliedDocument(parts(1, T0, h="h1"))
    assert answers == [(True, None), (False, known), (False, None), (False, known)]


async def test_many_lines_in_one_event(store: StateStore) -> None:
    """An order has up to 500 lines (api-facts §2.6); all parts land in one transaction."""
    lines = {str(n): PartState(1, T0 + timedelta(milliseconds=n), f"d{n}") for n in range(500)}
    assert await store.record_applied(ROUTE, Record(None, DOC, lines))
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None and applied.parts == lines


async def test_a_healthy_store_is_ready(store: StateStore) -> None:
    await store.get_cursor("tradecloud:orders")
    assert store.not_ready_reason() is None


async def test_a_round_is_recorded_at_once_each_record_on_its_own(store: StateStore) -> None:
    first = Record("m1", DOC, parts(1, T0, h="h1"))
    other = Record(None, DOC + "-2", parts(1, T0, h="x1"))
    assert await store.record_applied_many(ROUTE, [first, first, other]) == [True, False, True]
    assert await store.record_applied_many(ROUTE, []) == []
    answers = await store.lookup(ROUTE, [Lookup("m1", DOC), Lookup(None, DOC + "-2")])
    assert answers == [(True, None), (False, AppliedDocument(parts(1, T0, h="x1")))]
