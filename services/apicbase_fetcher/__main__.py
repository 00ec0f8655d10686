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

from pydantic import ValidationError

from services.apicbase_fetcher.fetch import STREAM, FetchResult, fetch_all, safety_cursor
from services.apicbase_fetcher.settings import FetcherSettings
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.broker.quarantine import BrokerQuarantine
from shared.broker.topology import DEAD_LETTER_EXCHANGE
from shared.clients.apicbase import ApicbaseClient, ApicbaseSettings
from shared.errors import ConfigurationError, OrderbridgeError
from shared.logging import configure_logging, get_logger
from shared.metrics import PublisherMetrics, PullMetrics, new_registry
from shared.ops import start_ops_server
from shared.pull import keep_pulling, stop_on_signals
from shared.settings import BrokerSettings, LogSettings, StateSettings
from shared.state import open_state_store
from shared.state.lease import LeaseKeeper
from shared.state.port import StateStore

log = get_logger("services.apicbase_fetcher")

STARTUP_WAIT_SECONDS = 30.0


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
    registry = new_registry()
    metrics = PullMetrics(registry)
    store = await open_state_store(
        state.state_url.get_secret_value(), wait_seconds=STARTUP_WAIT_SECONDS
    )
    connection = await connect(broker, name="apicbase-fetcher", wait_seconds=STARTUP_WAIT_SECONDS)
    client = ApicbaseClient(
        apicbase,
        store,
        on_trouble=lambda kind: metrics.upstream_errors.labels("apicbase", kind).inc(),
    )
    lookback = timedelta(seconds=settings.apicbase_fetch_lookback_seconds)
    ops = None
    try:
        await declare_topology(connection, broker.topology())
        publisher = await RabbitPublisher.open(
            connection, broker, metrics=PublisherMetrics(registry)
        )
        quarantine = BrokerQuarantine(
            await RabbitPublisher.open(connection, broker, exchange=DEAD_LETTER_EXCHANGE),
            source="apicbase",
        )
        if settings.metrics_port and not once:
            ops = await start_ops_server(
                registry,
                publisher.not_ready_reason,
                host=settings.metrics_host,
                port=settings.metrics_port,
            )
        keeper = LeaseKeeper(
            store,
            f"fetcher:{STREAM}",
            ttl=settings.apicbase_fetch_lease_seconds,
            on_change=lambda held: metrics.lease_held.labels(STREAM).set(int(held)),
        )
        reported = FetchResult()

        def on_page(result: FetchResult) -> None:
            metrics.pages.labels(STREAM).inc(result.pages - reported.pages)
            metrics.events.labels(STREAM).inc(result.published - reported.published)
            metrics.quarantined.labels(STREAM).inc(result.quarantined - reported.quarantined)
            reported.pages, reported.published = result.pages, result.published
            reported.quarantined = result.quarantined

        async def drain_once(stop: asyncio.Event) -> bool:
            since = await stored_since(store, settings)
            if since is not None:
                metrics.cursor.labels(STREAM).set(since.timestamp())
            reported.pages = reported.published = reported.quarantined = 0
            result = await fetch_all(
                client,
                since=since,
                sink=publisher,
                quarantine=quarantine,
                page_size=settings.apicbase_fetch_page_size,
                on_page=on_page,
                stop=stop,
            )
            metrics.pages.labels(STREAM).inc(result.pages - reported.pages)
            cursor = safety_cursor(result.newest, lookback)
            if cursor is not None and (since is None or cursor > since):
                keeper.ensure_held()
                await store.set_cursor(STREAM, cursor.isoformat())
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
                drain_once,
                lease=keeper,
                metrics=metrics,
                stop=stop,
                interval=settings.apicbase_fetch_interval_seconds,
                once=once,
            )
        await publisher.close()
        return 0 if ok else 1
    finally:
        if ops is not None:
            await ops.cleanup()
        await client.close()
        await connection.close()
        await store.close()


def run(*, once: bool = False) -> int:
    configure_logging(LogSettings(), service="apicbase-fetcher")
    try:
        return asyncio.run(serve(FetcherSettings(), once=once))
    except (ConfigurationError, ValidationError) as exc:
        log.error("cannot start apicbase fetcher", reason=str(exc))
        return 2
    except OrderbridgeError as exc:
        log.error("apicbase fetcher failed", reason=str(exc))
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    from services.cli import main as cli_main

    return cli_main(["apicbase-fetcher", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
