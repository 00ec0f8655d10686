"""Composition root of the Tradecloud poller: settings → state, broker, client → streams.

Run with ``orderbridge poller`` (``--once`` drains every stream once and exits).
Each stream (orders, shipments) runs under its own lease, so replicas may run
side by side: one is active per stream, the others wait and take over when
it dies. SIGTERM or SIGINT stops after the page in hand is published; the
cursor moves only when a backlog is drained (``services.poller.drain``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from services.poller.drain import Stream, drain
from services.poller.progress import PollObserver
from services.poller.settings import PollerSettings, StreamName
from shared.clients.tradecloud import TradecloudClient, TradecloudSettings
from shared.errors import ConfigurationError
from shared.logging import get_logger
from shared.normalize.tradecloud import normalize_polled_order, normalize_polled_shipment
from shared.pull import PullRuntime, keep_pulling, pull_runtime, run_service
from shared.schema.models import CanonicalEvent
from shared.settings import BrokerSettings, StateSettings
from shared.signals import stop_on_signals
from shared.state.lease import LeaseKeeper
from shared.state.port import StateStore

log = get_logger("services.poller")


def build_streams(
    settings: PollerSettings, client: TradecloudClient, names: Sequence[StreamName]
) -> list[Stream]:
    """The configured streams, each with its fetch and normalize functions."""
    role = settings.role()
    policy = settings.echo_policy
    orders_filter, shipments_filter = settings.order_filter(), settings.shipment_filter()
    single = settings.poll_single_delivery

    async def fetch_orders(cursor: str, offset: int) -> Any:
        return await client.poll_orders(
            cursor, offset=offset, status=orders_filter, single_delivery=single
        )

    async def fetch_shipments(cursor: str, offset: int) -> Any:
        return await client.poll_shipments(cursor, offset=offset, status=shipments_filter)

    def order_event(document: Any, since: str) -> CanonicalEvent:
        return normalize_polled_order(
            document, received_at=datetime.now(UTC), since=since, role=role, echo_policy=policy
        )

    def shipment_event(document: Any, since: str) -> CanonicalEvent:
        return normalize_polled_shipment(document, received_at=datetime.now(UTC), since=since)

    known = {
        "orders": Stream("tradecloud.orders", "orders", fetch_orders, order_event),
        "shipments": Stream("tradecloud.shipments", "shipments", fetch_shipments, shipment_event),
    }
    return [known[name] for name in dict.fromkeys(names)]


async def first_cursor(store: StateStore, stream: Stream, settings: PollerSettings) -> str:
    stored = await store.get_cursor(stream.name)
    if stored is not None:
        return stored
    if settings.poll_start is None:
        raise ConfigurationError(
            f"no cursor stored for {stream.name}: set ORDERBRIDGE_POLL_START to an ISO "
            "timestamp in the past (how far back the first poll reaches)"
        )
    return settings.poll_start


async def serve(
    settings: PollerSettings,
    *,
    once: bool,
    names: Sequence[StreamName] | None = None,
    progress: bool = False,
    broker: BrokerSettings | None = None,
    state: StateSettings | None = None,
    tradecloud: TradecloudSettings | None = None,
) -> int:
    broker = broker or BrokerSettings()
    state = state or StateSettings()
    tradecloud = tradecloud or TradecloudSettings()
    settings.role()  # fail fast on configuration
    async with pull_runtime("poller", source="tradecloud", broker=broker, state=state) as rt:
        client = TradecloudClient(tradecloud, on_trouble=rt.trouble_counter("tradecloud"))
        ops = None
        try:
            streams = build_streams(settings, client, names or settings.poll_streams)
            for stream in streams:  # fail fast: a first run needs ORDERBRIDGE_POLL_START
                await first_cursor(rt.store, stream, settings)
            if settings.metrics_port and not once:
                ops = await rt.serve_ops(settings.metrics_host, settings.metrics_port)
            observer = PollObserver(rt.metrics, progress=progress)
            stop = asyncio.Event()
            log.info(
                "poller started",
                streams=[stream.name for stream in streams],
                mode="once" if once else f"every {settings.poll_interval_seconds:g}s",
                role=settings.tradecloud_role,
                echo_policy=settings.echo_policy,
                api=tradecloud.tradecloud_api_url,
                broker=broker.redacted_url(),
                state=state.redacted_url(),
            )
            with stop_on_signals(stop), observer:
                results = await asyncio.gather(
                    *(
                        poll_stream(stream, rt, settings, observer, stop=stop, once=once)
                        for stream in streams
                    )
                )
            return 0 if all(results) else 1
        finally:
            if ops is not None:
                await ops.cleanup()
            await client.close()


async def poll_stream(
    stream: Stream,
    rt: PullRuntime,
    settings: PollerSettings,
    observer: PollObserver,
    *,
    stop: asyncio.Event,
    once: bool,
) -> bool:
    """One stream under its lease: drain, commit, wait, repeat (or once)."""
    keeper = LeaseKeeper(
        rt.store,
        f"poller:{stream.name}",
        ttl=settings.poll_lease_seconds,
        on_change=lambda held: rt.metrics.lease_held.labels(stream.name).set(int(held)),
    )

    async def commit(cursor: str) -> None:
        keeper.ensure_held()
        await rt.store.set_cursor(stream.name, cursor)
        observer.committed(stream, cursor)

    async def drain_once(stop: asyncio.Event) -> bool:
        cursor = await first_cursor(rt.store, stream, settings)
        observer.committed(stream, cursor)
        result = await drain(
            stream,
            cursor,
            sink=rt.publisher,
            commit=commit,
            quarantine=rt.quarantine,
            observer=observer,
            stop=stop,
        )
        log.info(
            "poll finished",
            stream=stream.name,
            drained=result.drained,
            pages=result.pages,
            published=result.published,
            quarantined=result.quarantined,
            restarts=result.restarts,
            cursor=result.cursor_after,
        )
        return result.drained

    return await keep_pulling(
        stream.name,
        drain_once,
        lease=keeper,
        metrics=rt.metrics,
        stop=stop,
        interval=settings.poll_interval_seconds,
        once=once,
    )


def run(
    *, once: bool = False, streams: Sequence[StreamName] | None = None, progress: bool = False
) -> int:
    """Build settings from the environment and poll (until SIGTERM, or once)."""
    return run_service(
        "poller",
        lambda: serve(PollerSettings(), once=once, names=streams, progress=progress),
    )


def main(argv: Sequence[str] | None = None) -> int:
    from services.cli import main as cli_main

    return cli_main(["poller", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    raise SystemExit(main())
