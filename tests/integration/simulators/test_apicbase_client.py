"""ApicbaseClient against the simulator over real loopback HTTP, tokens in a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest

from services.simulators.apicbase.app import Fault
from shared.clients.apicbase import PLATFORM, ApicbaseClient
from shared.errors import (
    ConfigurationError,
    StateUnavailable,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.state import StateStore, Tokens, open_state_store
from shared.state.memory import MemoryStateStore
from tests.support.apicbase_sim import REFRESH_TOKEN, RunningApicbase, running_apicbase

pytestmark = pytest.mark.integration


@pytest.fixture
async def apicbase() -> AsyncIterator[RunningApicbase]:
    async with running_apicbase(seed=8, orders=330) as running:
        yield running


@pytest.fixture
async def store() -> AsyncIterator[StateStore]:
    opened = await open_state_store("memory://")
    yield opened
    await opened.close()


async def test_rotated_refresh_tokens_survive_reopening_the_sqlite_store(
    apicbase: RunningApicbase, tmp_path: Path
) -> None:
    sim = apicbase.simulator
    url = f"sqlite:///{tmp_path / 'state.db'}"
    settings = apicbase.client_settings()

    store = await open_state_store(url)
    async with ApicbaseClient(settings, store) as client:
        await client.list_purchase_orders(page_size=1)
        assert client.refreshes == 1
    first = await store.load_tokens(PLATFORM)
    await store.close()
    assert first is not None and first.refresh_token not in (None, REFRESH_TOKEN)
    assert not sim.refresh_token_valid(REFRESH_TOKEN), "the seed token was rotated away"

    # A restart: the stored access token is still good, so no token request at all.
    token_requests = sim.token_requests
    store = await open_state_store(url)
    async with ApicbaseClient(settings, store) as client:
        await client.list_purchase_orders(page_size=1)
        assert client.refreshes == 0 and sim.token_requests == token_requests
    await store.close()

    # Access tokens expire: the next process refreshes with the *stored* rotated token
    # (the seed in the settings is dead and would fail).
    sim.expire_tokens()
    store = await open_state_store(url)
    async with ApicbaseClient(settings, store) as client:
        await client.list_purchase_orders(page_size=1)
        assert client.refreshes == 1
    second = await store.load_tokens(PLATFORM)
    await store.close()
    assert second is not None and second.refresh_token != first.refresh_token
    assert sim.refresh_token_valid(second.refresh_token or "")
    assert not sim.refresh_token_valid(first.refresh_token or "")
    assert second.expires_at is not None and second.expires_at > datetime.now(UTC) + timedelta(
        days=6
    ), "a week-long access token, stamped with its expiry"


async def test_expired_access_tokens_mid_run_are_renewed(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    async with ApicbaseClient(apicbase.client_settings(), store) as client:
        await client.list_purchase_orders(page_size=1)
        apicbase.simulator.expire_tokens()
        page = await client.list_purchase_orders(page_size=1)
        assert page.results and client.refreshes == 2


async def test_tokens_are_renewed_before_they_expire(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    now = [datetime.now(UTC)]
    settings = apicbase.client_settings(apicbase_token_refresh_margin_seconds=3600)
    async with ApicbaseClient(settings, store, clock=lambda: now[0]) as client:
        await client.list_purchase_orders(page_size=1)
        requests = apicbase.simulator.requests
        now[0] += timedelta(days=7) - timedelta(minutes=30)
        await client.list_purchase_orders(page_size=1)
        assert client.refreshes == 2
        assert apicbase.simulator.requests == requests + 2, "token + list, no 401 first"


async def test_concurrent_renewals_share_one_refresh(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    async with ApicbaseClient(apicbase.client_settings(), store) as client:
        pages = await asyncio.gather(*(client.list_purchase_orders(page_size=1) for _ in range(8)))
        assert all(page.results for page in pages)
        assert client.refreshes == 1 and apicbase.simulator.token_requests == 1


async def test_two_processes_racing_a_rotation_both_end_up_with_working_tokens(
    apicbase: RunningApicbase, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first_store, second_store = await open_state_store(url), await open_state_store(url)
    settings = apicbase.client_settings()
    try:
        async with (
            ApicbaseClient(settings, first_store) as first,
            ApicbaseClient(settings, second_store) as second,
        ):
            await first.list_purchase_orders(page_size=1)
            await second.list_purchase_orders(page_size=1)  # adopts the stored pair
            assert second.refreshes == 0
            apicbase.simulator.expire_tokens()
            await asyncio.gather(
                first.list_purchase_orders(page_size=1), second.list_purchase_orders(page_size=1)
            )
            # One rotated; the loser's refresh was refused and it adopted the winner's pair.
            stored = await first_store.load_tokens(PLATFORM)
            assert stored is not None and apicbase.simulator.refresh_token_valid(
                stored.refresh_token or ""
            )
            apicbase.simulator.expire_tokens()
            await second.list_purchase_orders(page_size=1)
            await first.list_purchase_orders(page_size=1)
    finally:
        await first_store.close()
        await second_store.close()


async def test_a_new_seed_token_replaces_a_dead_stored_one(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    await store.save_tokens(PLATFORM, Tokens("dead-access", "dead-refresh"))
    fresh = apicbase.simulator.issue_tokens()
    settings = apicbase.client_settings(apicbase_refresh_token=fresh.refresh_token)
    async with ApicbaseClient(settings, store) as client:
        assert (await client.list_purchase_orders(page_size=1)).results
    stored = await store.load_tokens(PLATFORM)
    assert stored is not None and stored.refresh_token not in ("dead-refresh", fresh.refresh_token)


async def test_refused_tokens_and_credentials_are_permanent(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    apicbase.simulator.revoke_refresh_tokens()
    async with ApicbaseClient(apicbase.client_settings(), store) as client:
        with pytest.raises(UpstreamRejected, match="invalid_grant"):
            await client.list_purchase_orders()
    async with ApicbaseClient(
        apicbase.client_settings(apicbase_client_secret="wrong"), store
    ) as client:
        with pytest.raises(UpstreamRejected, match="invalid_client"):
            await client.list_purchase_orders()
    async with ApicbaseClient(
        apicbase.client_settings(apicbase_refresh_token=None), store
    ) as client:
        with pytest.raises(ConfigurationError, match="REFRESH_TOKEN"):
            await client.list_purchase_orders()
    with pytest.raises(ConfigurationError):
        ApicbaseClient(apicbase.client_settings(apicbase_client_id=None), store)


async def test_tokens_are_saved_later_when_the_store_is_down_at_rotation(
    apicbase: RunningApicbase,
) -> None:
    class FlakyStore(MemoryStateStore):
        failures = 1

        async def save_tokens(self, platform: str, tokens: Tokens) -> None:
            if self.failures:
                self.failures -= 1
                raise StateUnavailable("database is locked")
            await super().save_tokens(platform, tokens)

    flaky = FlakyStore()
    async with ApicbaseClient(apicbase.client_settings(), flaky) as client:
        await client.list_purchase_orders(page_size=1)  # works on the in-memory pair
        assert await flaky.load_tokens(PLATFORM) is None
        await client.list_purchase_orders(page_size=1)
        stored = await flaky.load_tokens(PLATFORM)
        assert stored is not None and apicbase.simulator.refresh_token_valid(
            stored.refresh_token or ""
        )


async def test_paging_filters_and_strictly_after(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    sim = apicbase.simulator
    async with ApicbaseClient(apicbase.client_settings(), store) as client:
        page = await client.list_purchase_orders()
        assert page.count == 220 and len(page.results) == 200 and page.has_next
        assert page.page == 1 and page.page_size == 200
        rest = await client.list_purchase_orders(page=2)
        assert len(rest.results) == 20 and not rest.has_next and rest.previous
        ids = [o["id"] for o in page.results + rest.results]
        assert len(set(ids)) == 220
        assert all(o["status"] == "ORDERED" and not o["fetched_by_supplier"] for o in page.results)
        assert all(isinstance(p["quantity_ordered"], int) for p in page.results[0]["packages"])

        everything = await client.list_purchase_orders(
            status=None, fetched_by_supplier=None, ordering="ordered_on"
        )
        assert everything.count == 330
        stamps = [o["ordered_on"] for o in everything.results]
        tie = next(s for s in stamps if stamps.count(s) > 1)
        # The order's own text as the cursor (its "+01:00" must be percent-encoded).
        after = await client.list_purchase_orders(
            status=None, fetched_by_supplier=None, ordered_on_gt=tie, ordering="ordered_on"
        )
        tied = datetime.fromisoformat(tie)
        assert all(datetime.fromisoformat(o["ordered_on"]) > tied for o in after.results)
        assert after.count == sum(1 for o in sim.book.orders.values() if o.ordered_on > tied)
        by_datetime = await client.list_purchase_orders(
            status=None, fetched_by_supplier=None, ordered_on_gt=tied.astimezone(UTC)
        )
        assert by_datetime.count == after.count
        delivered = await client.list_purchase_orders(status="DELIVERED", fetched_by_supplier=None)
        assert delivered.count == 110
        with pytest.raises(ValueError, match="page_size"):
            await client.list_purchase_orders(page_size=201)
        with pytest.raises(ValueError, match="timezone"):
            await client.list_purchase_orders(ordered_on_gt=datetime(2026, 1, 1))
        with pytest.raises(UpstreamRejected) as info:
            await client.list_purchase_orders(status="SHIPPED")
        assert info.value.status == 400
        with pytest.raises(UpstreamRejected) as info:
            await client.list_purchase_orders(page=99)
        assert info.value.status == 404
    assert sim.throttled == 0


async def test_marks_take_fetched_orders_out_of_the_backlog_for_good(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    sim = apicbase.simulator
    async with ApicbaseClient(apicbase.client_settings(), store) as client:
        backlog = await client.list_purchase_orders(page_size=50)
        ids = [o["id"] for o in backlog.results]
        assert await client.mark_fetched([*ids, ids[0]]) == 50
        stamps = {i: sim.order(i).fetched_at for i in ids}
        assert all(stamps.values())
        after = await client.list_purchase_orders()
        assert after.count == backlog.count - 50
        assert not {o["id"] for o in after.results} & set(ids)
        await client.mark_fetched(ids[:5])
        assert {i: sim.order(i).fetched_at for i in ids} == stamps, "first stamps stay"
        await client.mark_viewed(ids[:2])
        fetched = await client.list_purchase_orders(fetched_by_supplier=True)
        viewed = [o for o in fetched.results if o["viewed_by_supplier"]]
        assert {o["id"] for o in viewed} == set(ids[:2])
        # A mark of more than one page of ids goes out in chunks.
        everything = await client.list_purchase_orders(status=None, fetched_by_supplier=None)
        more = [o["id"] for o in everything.results]
        everything2 = await client.list_purchase_orders(
            status=None, fetched_by_supplier=None, page=2
        )
        more += [o["id"] for o in everything2.results]
        requests = sim.requests
        assert await client.mark_fetched(more) == 330
        assert sim.requests == requests + 2
        with pytest.raises(UpstreamRejected):
            await client.mark_fetched(["no-such-order"])
        with pytest.raises(TypeError):
            await client.mark_fetched("one-id-as-a-string")
        assert await client.mark_fetched([]) == 0


async def test_5xx_timeouts_and_resets_are_retried(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    sim = apicbase.simulator
    settings = apicbase.client_settings(apicbase_timeout_seconds=0.3)
    async with ApicbaseClient(settings, store) as client:
        await client.list_purchase_orders(page_size=1)
        requests = sim.requests
        sim.inject(Fault("status", status=503, count=2))
        sim.inject(Fault("status", status=500, count=1))
        assert (await client.list_purchase_orders(page_size=1)).results
        assert sim.requests == requests + 4
        sim.inject(Fault("delay", seconds=1.0, count=1))
        assert (await client.list_purchase_orders(page_size=1)).results
        sim.inject(Fault("reset", count=3))
        assert (await client.list_purchase_orders(page_size=1)).results
        sim.inject(Fault("status", path="/oauth/", status=502, count=2))
        sim.expire_tokens()
        assert await client.mark_fetched([(await client.list_purchase_orders()).results[0]["id"]])


async def test_an_api_that_stays_down_becomes_upstream_unavailable(
    apicbase: RunningApicbase, store: StateStore
) -> None:
    apicbase.simulator.inject(Fault("status", status=503, count=10_000))
    settings = apicbase.client_settings(apicbase_retry_seconds=0.5)
    async with ApicbaseClient(settings, store) as client:
        started = time.monotonic()
        with pytest.raises(UpstreamUnavailable):
            await client.list_purchase_orders()
        assert time.monotonic() - started < 5
    async with running_apicbase() as gone:
        settings = gone.client_settings(apicbase_retry_seconds=0.5)
    async with ApicbaseClient(settings, store) as client:
        with pytest.raises(UpstreamUnavailable):
            await client.list_purchase_orders()


async def test_the_client_stays_within_the_rate_limit_under_load(store: StateStore) -> None:
    """Requests fired at once never exceed the sliding window: no 429, nothing waits twice."""
    async with running_apicbase(orders=20, rate_limit=25, rate_window=2.0) as apicbase:
        sim = apicbase.simulator
        async with ApicbaseClient(apicbase.client_settings(), store) as client:
            started = time.monotonic()
            pages = await asyncio.gather(
                *(client.list_purchase_orders(page_size=1) for _ in range(40))
            )
            elapsed = time.monotonic() - started
        assert all(page.results for page in pages)
        assert sim.throttled == 0, "the limiter kept every sliding window under the limit"
        assert sim.busiest_window() <= 25
        assert elapsed < 8, f"40 calls at 24 per 2 s took {elapsed:.1f} s"


async def test_a_429_storm_is_ridden_out(store: StateStore) -> None:
    """A client configured above the server's limit, and injected 429s: every call succeeds."""
    async with running_apicbase(orders=20, rate_limit=10, rate_window=1.0) as apicbase:
        sim = apicbase.simulator
        sim.inject(Fault("status", status=429, retry_after=0.1, count=5))
        settings = apicbase.client_settings(apicbase_rate_limit=1000)
        async with ApicbaseClient(settings, store) as client:
            pages = await asyncio.gather(
                *(client.list_purchase_orders(page_size=1) for _ in range(30))
            )
        assert all(page.results for page in pages)
        assert sim.throttled > 0, "the server did refuse"
        assert sim.busiest_window() <= 10


async def test_an_unencoded_cursor_would_be_refused(apicbase: RunningApicbase) -> None:
    """Guards the client's percent-encoding: the simulator refuses a raw "+" offset."""
    token = apicbase.simulator.issue_tokens().access_token
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            apicbase.url
            + "/api/v2/integrations/suppliers/purchase_orders/?ordered_on__gt=2026-01-05T10:00:00+01:00",
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        assert response.status == 400
