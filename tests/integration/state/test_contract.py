"""The ``StateStore`` contract, run against memory, SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from shared.state.port import AppliedDocument, StateStore, Tokens
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


# -- processed keys and document versions -----------------------------------------------------


async def test_processed_keys_are_per_route_and_any_key_matches(store: StateStore) -> None:
    assert not await store.is_processed(ROUTE, ["tc:order:o1:v6", "msg-1"])
    assert await store.record_applied(ROUTE, ["tc:order:o1:v6", "msg-1"], DOC, 6, {})
    assert await store.is_processed(ROUTE, ["msg-1"])
    assert await store.is_processed(ROUTE, ["other", "tc:order:o1:v6"])
    assert not await store.is_processed(ROUTE, ["other"])
    assert not await store.is_processed(ROUTE, [])
    assert not await store.is_processed("erp-shipped", ["msg-1"]), "another route applies it anew"
    assert await store.record_applied("erp-shipped", ["msg-1"], DOC, 6, {})


async def test_record_applied_is_all_or_nothing(store: StateStore) -> None:
    assert await store.record_applied(ROUTE, ["k:v6", "m6"], DOC, 6, {"1": T0})
    later = T0 + timedelta(seconds=1)
    # A webhook and a poll of the same version: one key new, one already recorded.
    assert not await store.record_applied(ROUTE, ["k:v6", "m7"], DOC, 9, {"1": later, "2": T0})
    assert not await store.is_processed(ROUTE, ["m7"]), "no key of a refused event is kept"
    assert await store.applied_document(ROUTE, DOC) == AppliedDocument(6, {"1": T0})
    assert not await store.record_applied(ROUTE, ["k:v6"], DOC, 6, {}), "a plain duplicate"


async def test_versions_only_rise(store: StateStore) -> None:
    assert await store.applied_document(ROUTE, DOC) is None
    assert await store.record_applied(ROUTE, ["a"], DOC, None, {})
    assert await store.applied_document(ROUTE, DOC) == AppliedDocument(None, {})
    assert await store.record_applied(ROUTE, ["b"], DOC, 6, {})
    assert await store.record_applied(ROUTE, ["c"], DOC, 5, {})
    assert await store.record_applied(ROUTE, ["d"], DOC, None, {})
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None and applied.version == 6
    assert await store.record_applied(ROUTE, ["e"], DOC, 2**40, {}), "versions are 64-bit"
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None and applied.version == 2**40
    assert await store.applied_document("erp-shipped", DOC) is None, "per route"
    assert await store.applied_document(ROUTE, DOC + "-other") is None, "per document"


async def test_line_stamps_only_move_forward_and_come_back_in_utc(store: StateStore) -> None:
    plus2 = timezone(timedelta(hours=2))
    assert await store.record_applied(
        ROUTE, ["v6"], DOC, 6, {"10": T0, "20": T0 + timedelta(microseconds=1)}
    )
    # v5 arrives late but carries a newer stamp for line 30 and an older one for line 10.
    assert await store.record_applied(
        ROUTE,
        ["v5"],
        DOC,
        5,
        {"10": T0 - timedelta(hours=1), "30": (T0 + timedelta(minutes=5)).astimezone(plus2)},
    )
    applied = await store.applied_document(ROUTE, DOC)
    assert applied == AppliedDocument(
        6,
        {
            "10": T0,
            "20": T0 + timedelta(microseconds=1),
            "30": T0 + timedelta(minutes=5),
        },
    )
    assert all(stamp.utcoffset() == timedelta(0) for stamp in applied.lines.values())


async def test_bad_input_is_refused_before_anything_is_written(store: StateStore) -> None:
    with pytest.raises(ValueError, match="keys"):
        await store.record_applied(ROUTE, [], DOC, 1, {})
    with pytest.raises(ValueError, match="keys"):
        await store.record_applied(ROUTE, "k:v1", DOC, 1, {})
    with pytest.raises(ValueError, match="timezone"):
        await store.record_applied(ROUTE, ["k:v1"], DOC, 1, {"1": datetime(2025, 1, 1)})
    assert not await store.is_processed(ROUTE, ["k:v1"])
    assert await store.applied_document(ROUTE, DOC) is None


async def test_concurrent_duplicates_have_exactly_one_winner(backend: Backend) -> None:
    """Four handles (separate connections for SQLite and PostgreSQL) race on 25 events,
    each delivered four times, half of them with their keys in the opposite order."""
    stores = [await backend.open() for _ in range(4)]
    attempts = []
    for copy, event in itertools.product(range(4), range(25)):
        keys = [f"tc:order:o{event}:v{event}", f"msg-{event}"]
        if copy % 2:
            keys.reverse()
        attempts.append((event, stores[copy].record_applied(ROUTE, keys, DOC, event, {"1": T0})))
    results = await asyncio.gather(*(attempt for _, attempt in attempts))
    wins = [event for (event, _), won in zip(attempts, results, strict=True) if won]
    assert sorted(wins) == list(range(25)), "every event applied exactly once"
    applied = await stores[0].applied_document(ROUTE, DOC)
    assert applied == AppliedDocument(24, {"1": T0})


async def test_a_burst_on_one_handle_applies_each_event_once(store: StateStore) -> None:
    """Calls issued together on one handle (SQLite commits them as one group, each in its
    own savepoint): duplicates inside the burst are refused whole, the rest applies."""
    webhook = (["tc:o1:v5", "msg-a"], 5, {"1": T0})
    poll = (["tc:o1:v5", "msg-b"], 5, {"1": T0})  # same state via another channel
    stale = (["tc:o1:v3"], 3, {"1": T0 - timedelta(hours=1), "2": T0})  # old, line 2 new
    newer: tuple[list[str], int, dict[str, datetime]] = (["tc:o1:v7"], 7, {})
    burst = [webhook, poll, stale, stale, newer, webhook]
    results = await asyncio.gather(
        *(store.record_applied(ROUTE, keys, DOC, v, lines) for keys, v, lines in burst)
    )
    assert sum(results[i] for i in (0, 1, 5)) == 1, "one of the v5 deliveries"
    assert results[2] != results[3], "one of the two identical stale deliveries"
    assert results[4]
    assert await store.is_processed(ROUTE, ["msg-a"]) != await store.is_processed(
        ROUTE, ["msg-b"]
    ), "the refused delivery left no key behind"
    assert await store.applied_document(ROUTE, DOC) == AppliedDocument(7, {"1": T0, "2": T0})


async def test_many_lines_in_one_event(store: StateStore) -> None:
    """An order has up to 500 lines (api-facts §2.6); all stamps land in one transaction."""
    lines = {str(n): T0 + timedelta(milliseconds=n) for n in range(500)}
    assert await store.record_applied(ROUTE, ["big:v1"], DOC, 1, lines)
    applied = await store.applied_document(ROUTE, DOC)
    assert applied is not None and applied.lines == lines


async def test_a_healthy_store_is_ready(store: StateStore) -> None:
    await store.get_cursor("tradecloud:orders")
    assert store.not_ready_reason() is None
