"""The Apicbase fetcher against the simulator, the real RabbitMQ and a SQLite state store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.apicbase_fetcher.__main__ import serve
from services.apicbase_fetcher.fetch import STREAM, fetch_all
from services.apicbase_fetcher.settings import FetcherSettings
from services.simulators.apicbase.app import Fault
from shared.broker.publisher import RabbitPublisher
from shared.clients.apicbase import ApicbaseClient
from shared.errors import UpstreamUnavailable
from shared.normalize.apicbase import normalize_purchase_order
from shared.settings import BrokerSettings, StateSettings
from shared.state.sqlite import SqliteStateStore
from tests.support.apicbase_sim import REFRESH_TOKEN, RunningApicbase, running_apicbase
from tests.support.pulling import Collected

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def collected(connection: AbstractRobustConnection) -> AsyncIterator[Collected]:
    async with Collected.open(connection, "apicbase.#") as events:
        yield events


def settings(**overrides: object) -> FetcherSettings:
    values: dict[str, object] = {"metrics_port": 0, "apicbase_fetch_lease_seconds": 3.0}
    values.update(overrides)
    return FetcherSettings(**values)  # type: ignore[arg-type]


def waiting(apicbase: RunningApicbase) -> set[str]:
    return {
        o.id
        for o in apicbase.simulator.book.orders.values()
        if o.status == "ORDERED" and o.fetched_at is None
    }


async def fetch_once(
    apicbase: RunningApicbase, broker: BrokerSettings, state: StateSettings, **client: object
) -> int:
    return await serve(
        settings(),
        once=True,
        broker=broker,
        state=state,
        apicbase=apicbase.client_settings(**client),
    )


def state_at(tmp_path: Path) -> StateSettings:
    return StateSettings(state_url=SecretStr(f"sqlite:///{tmp_path / 'state.db'}"))


async def test_unfetched_orders_are_published_then_marked_fetched_never_viewed(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    async with running_apicbase(orders=450) as apicbase:
        expected = waiting(apicbase)
        viewed_before = {o.id for o in apicbase.simulator.book.orders.values() if o.viewed_at}
        assert len(expected) == 300
        assert await fetch_once(apicbase, broker_settings, state_at(tmp_path)) == 0
        events = await collected.until(lambda events: len(events) >= len(expected))
        assert {e.document_id for e in events} == expected
        assert len(events) == len(expected)
        assert all(e.source == "apicbase" and e.channel == "api" for e in events)
        assert waiting(apicbase) == set()
        viewed_after = {o.id for o in apicbase.simulator.book.orders.values() if o.viewed_at}
        assert viewed_after == viewed_before  # only the ERP may acknowledge an order

        store = await SqliteStateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
        try:
            stored = await store.get_cursor(STREAM)
        finally:
            await store.close()
        assert stored is not None
        newest = max(apicbase.simulator.book.orders[i].ordered_on for i in expected)
        assert datetime.fromisoformat(stored) < newest

        # New orders arrive; the next run publishes just those.
        created = apicbase.simulator.create_orders(3)
        assert await fetch_once(apicbase, broker_settings, state_at(tmp_path)) == 0
        events = await collected.until(lambda events: len(events) >= len(expected) + 3)
        assert {e.document_id for e in events[len(expected) :]} == set(created)


class MarkFails(ApicbaseClient):
    """The real client, except that marking fails as if Apicbase went away right then."""

    async def mark_fetched(self, ids: Sequence[str]) -> int:
        raise UpstreamUnavailable("Apicbase PATCH: 503 after retries")


async def test_a_failed_mark_publishes_again_and_marks_later(
    tmp_path: Path,
    broker_settings: BrokerSettings,
    connection: AbstractRobustConnection,
    collected: Collected,
) -> None:
    async with running_apicbase(orders=30) as apicbase:
        expected = waiting(apicbase)
        store = await SqliteStateStore.open(f"sqlite:///{tmp_path / 'state.db'}")
        publisher = await RabbitPublisher.open(connection, broker_settings)
        try:
            async with MarkFails(apicbase.client_settings(), store) as client:
                with pytest.raises(UpstreamUnavailable):
                    await fetch_all(
                        client,
                        since=None,
                        sink=publisher,
                        quarantine=NoQuarantine(),
                        page_size=200,
                    )
        finally:
            await publisher.close()
            await store.close()
        first = await collected.until(lambda events: len(events) >= len(expected))
        assert {e.document_id for e in first} == expected  # published, confirmed …
        assert waiting(apicbase) == expected  # … but not marked: nothing lost

        assert await fetch_once(apicbase, broker_settings, state_at(tmp_path)) == 0
        events = await collected.until(lambda events: len(events) >= 2 * len(expected))
        assert waiting(apicbase) == set()
        keys = {e.document_id: e.idempotency_key for e in first}
        # The re-publish carries the same idempotency keys: one ERP effect per order.
        assert {(e.document_id, e.idempotency_key) for e in events} == set(keys.items())


class NoQuarantine:
    async def put(self, document: object, reason: str, *, kind: str) -> None:
        raise AssertionError(f"unexpected refusal: {reason}")


async def test_the_rotated_refresh_token_survives_a_restart(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    async with running_apicbase(orders=9, access_ttl=0.5, rotate_refresh_tokens=True) as apicbase:
        assert await fetch_once(apicbase, broker_settings, state_at(tmp_path)) == 0
        assert not apicbase.simulator.refresh_token_valid(REFRESH_TOKEN)  # rotated away
        apicbase.simulator.create_orders(2)
        apicbase.simulator.expire_tokens()
        # A new process with the same (now dead) seed token in its environment.
        assert await fetch_once(apicbase, broker_settings, state_at(tmp_path)) == 0
        await collected.until(lambda events: len(events) >= 6 + 2)
        assert waiting(apicbase) == set()


async def test_a_429_storm_under_the_rate_limit_loses_nothing(
    tmp_path: Path, broker_settings: BrokerSettings, collected: Collected
) -> None:
    async with running_apicbase(orders=60, rate_limit=8, rate_window=1.0) as apicbase:
        expected = waiting(apicbase)
        for _ in range(5):
            apicbase.simulator.inject(Fault("status", status=429, retry_after=0.2))
        status = await serve(
            settings(apicbase_fetch_page_size=7),
            once=True,
            broker=broker_settings,
            state=state_at(tmp_path),
            apicbase=apicbase.client_settings(),
        )
        assert status == 0
        await collected.until(lambda events: {e.document_id for e in events} >= expected)
        assert waiting(apicbase) == set()
        assert apicbase.simulator.busiest_window() <= 8


async def test_the_api_copy_of_a_webhook_order_has_the_same_idempotency_key() -> None:
    async with running_apicbase(orders=3) as apicbase:
        order = next(iter(apicbase.simulator.book.orders.values()))
        now = datetime.now(UTC)
        webhook = normalize_purchase_order(order.document(), received_at=now, channel="webhook")
        listed = normalize_purchase_order(order.api_json(), received_at=now, channel="api")
        assert webhook.idempotency_key == listed.idempotency_key
        assert webhook.event_id != listed.event_id
