"""Composition root of the Apicbase fetcher: settings → state, broker, OAuth client → loop.

Run with ``orderbridge apicbase-fetcher`` (``--once`` drains once and exits).
One lease (``fetcher:apicbase.orders``) keeps replicas from fetching at the
same time; the OAuth tokens live in the state store, so a rotated refresh
token survives restarts and is shared by the replicas.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta

from services.apicbase_fetcher.fetch import STREAM, fetch_all, safety_cursor
from services.apicbase_fetcher.settings import FetcherSettings
from shared.clients.apicbase import ApicbaseClient, ApicbaseSettings
from shared.errors import ConfigurationError
from shared.logging import get_logger
from shared.pull import PullRuntime, keep_pulling, pull_runtime, run_service
from shared.settings import BrokerSettings, StateSettings
from shared.signals import stop_on_signals
from shared.state.lease import LeaseKeeper
from shared.state.port import StateStore

log = get_logger("services.apicbase_fetcher")


async def stored_since(store: StateStore, settings: FetcherSettings) -> datetime | None:
    stored = await store.get_cursor(STREAM)
    return datetime.fromisoformat(stored) if stored else settings.apicbase_fetch_start


async def serve(
    settings: FetcherSettings,
    *,
    once: bool,
    broker: BrokerSettings | None = None,
    state: StateSettings | None = None,
    apicbase: ApicbaseSettings | None = None,
) -> int:
    broker = broker or BrokerSettings()
    state = state or StateSettings()
    apicbase = apicbase or ApicbaseSettings()
    if not apicbase.configured():
        raise ConfigurationError(
            "set ORDERBRIDGE_APICBASE_CLIENT_ID, ORDERBRIDGE_APICBASE_CLIENT_SECRET and, "
            "on the first run, ORDERBRIDGE_APICBASE_REFRESH_TOKEN"
        )
    async with pull_runtime(
        "apicbase-fetcher", source="apicbase", broker=broker, state=state
    ) as rt:
        client = ApicbaseClient(apicbase, rt.store, on_trouble=rt.trouble_counter("apicbase"))
        ops = None
        try:
            if settings.metrics_port and not once:
                ops = await rt.serve_ops(settings.metrics_host, settings.metrics_port)
            keeper = LeaseKeeper(
                rt.store,
                f"fetcher:{STREAM}",
                ttl=settings.apicbase_fetch_lease_seconds,
                on_change=lambda held: rt.metrics.lease_held.labels(STREAM).set(int(held)),
            )
            stop = asyncio.Event()
            log.info(
                "apicbase fetcher started",
                mode="once" if once else f"every {settings.apicbase_fetch_interval_seconds:g}s",
                api=apicbase.apicbase_api_url,
                broker=broker.redacted_url(),
                state=state.redacted_url(),
            )
            with stop_on_signals(stop):
                ok = await keep_pulling(
                    STREAM,
                    Drainer(rt, client, keeper, settings).drain_once,
                    lease=keeper,
                    metrics=rt.metrics,
                    stop=stop,
                    interval=settings.apicbase_fetch_interval_seconds,
                    once=once,
                )
            return 0 if ok else 1
        finally:
            if ops is not None:
                await ops.cleanup()
            await client.close()


class Drainer:
    """One drain: fetch everything unfetched, then move the safety cursor; counts metrics."""

    def __init__(
        self,
        rt: PullRuntime,
        client: ApicbaseClient,
        keeper: LeaseKeeper,
        settings: FetcherSettings,
    ) -> None:
        self._rt = rt
        self._client = client
        self._keeper = keeper
        self._settings = settings

    def _on_page(self, published: int, quarantined: int) -> None:
        metrics = self._rt.metrics
        metrics.pages.labels(STREAM).inc()
        metrics.events.labels(STREAM).inc(published)
        metrics.quarantined.labels(STREAM).inc(quarantined)

    async def drain_once(self, stop: asyncio.Event) -> bool:
        rt, metrics = self._rt, self._rt.metrics
        since = await stored_since(rt.store, self._settings)
        if since is not None:
            metrics.cursor.labels(STREAM).set(since.timestamp())
        result = await fetch_all(
            self._client,
            since=since,
            sink=rt.publisher,
            quarantine=rt.quarantine,
            page_size=self._settings.apicbase_fetch_page_size,
            on_page=self._on_page,
            stop=stop,
        )
        lookback = timedelta(seconds=self._settings.apicbase_fetch_lookback_seconds)
        cursor = safety_cursor(result.newest, lookback)
        if cursor is not None and (since is None or cursor > since):
            self._keeper.ensure_held()
            await rt.store.set_cursor(STREAM, cursor.isoformat())
            metrics.cursor.labels(STREAM).set(cursor.timestamp())
        if result.drained:
            metrics.last_drained.labels(STREAM).set(time.time())
        log.info(
            "fetch finished",
            drained=result.drained,
            pages=result.pages,
            published=result.published,
            marked=result.marked,
            quarantined=result.quarantined,
            since=since.isoformat() if since else None,
        )
        return result.drained


def run(*, once: bool = False) -> int:
    return run_service("apicbase-fetcher", lambda: serve(FetcherSettings(), once=once))


def main(argv: Sequence[str] | None = None) -> int:
    from services.cli import main as cli_main

    return cli_main(["apicbase-fetcher", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
