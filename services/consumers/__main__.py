"""Composition root of ``orderbridge consumer``: settings → connections → route runners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import web

from services.consumers.adapters import ErpAdapter, create_adapter
from services.consumers.config import ConsumerConfig, load_config
from services.consumers.declare import reshard_route
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from services.consumers.settings import ConsumerSettings
from services.consumers.topology import missing_plugin_warning
from shared.broker.capabilities import CONSISTENT_HASH_PLUGIN, consistent_hash_available
from shared.broker.connection import connect, declare_topology, link_down_reason
from shared.errors import ConfigurationError
from shared.gc_tuning import tune_for_throughput
from shared.logging import get_logger
from shared.metrics import new_registry
from shared.ops import start_ops_server
from shared.progress import Board
from shared.settings import BrokerSettings, StateSettings
from shared.signals import stop_on_signals
from shared.state import open_state_store

log = get_logger(__name__)


def resolve_config(path: str | None, settings: ConsumerSettings) -> ConsumerConfig:
    chosen = path or settings.consumer_config
    if not chosen:
        raise ConfigurationError("no routes: pass --config FILE or set ORDERBRIDGE_CONSUMER_CONFIG")
    return load_config(chosen)


async def run(
    config: ConsumerConfig,
    *,
    route_names: Sequence[str] = (),
    drain: bool = False,
    reshard: bool = False,
    settings: ConsumerSettings | None = None,
    broker: BrokerSettings | None = None,
    state_settings: StateSettings | None = None,
) -> int:
    settings = settings or ConsumerSettings()
    broker = broker or BrokerSettings()
    state_settings = state_settings or StateSettings()
    routes = [config.route(name) for name in route_names] if route_names else list(config.routes)
    registry = new_registry("consumer")
    metrics = ConsumerMetrics(registry)
    state = await open_state_store(
        state_settings.state_url.get_secret_value(),
        wait_seconds=state_settings.startup_wait_seconds,
    )
    connection = await connect(broker, name="consumer", wait_seconds=broker.startup_wait_seconds)
    adapters: list[ErpAdapter] = []
    runners: list[RouteRunner] = []
    ops: web.AppRunner | None = None
    try:
        await declare_topology(connection, broker.topology())
        consistent_hash = await consistent_hash_available(broker.amqp_url.get_secret_value())
        if not consistent_hash:
            log.warning(missing_plugin_warning(routes), plugin=CONSISTENT_HASH_PLUGIN)
        for route in routes if reshard else ():
            await reshard_route(connection, route, consistent_hash=consistent_hash)
        for route in routes:
            adapter = create_adapter(route.adapter.type, route.adapter.options())
            adapters.append(adapter)
            runners.append(
                RouteRunner(
                    route,
                    connection=connection,
                    broker=broker,
                    state=state,
                    adapter=adapter,
                    metrics=metrics,
                    consistent_hash=consistent_hash,
                )
            )

        def ready() -> str | None:
            """Connected, every route declared and every shard consuming, state reachable."""
            reason = link_down_reason(connection)
            if reason is not None:
                return reason
            if not runners:
                return "no route configured"
            for runner in runners:
                reason = runner.not_ready_reason()
                if reason is not None:
                    return reason
            return state.not_ready_reason()

        if settings.metrics_port:
            ops = await start_ops_server(
                registry, ready, host=settings.metrics_host, port=settings.metrics_port
            )
        tune_for_throughput()
        for runner in runners:
            await runner.start()
        with stop_on_signals(asyncio.Event()) as stop:
            if drain:
                drained = asyncio.create_task(_drain_all(runners))
                waiter = asyncio.create_task(stop.wait())
                with Board() as board:  # draws only on a terminal without JSON logs
                    ticker = asyncio.create_task(_show_drain(board, runners))
                    await asyncio.wait({drained, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    ticker.cancel()
                drained.cancel()
                waiter.cancel()
                log.info(
                    "drained",
                    routes=[r.route.name for r in runners],
                    handled=sum(r.handled for r in runners),
                )
            else:
                await stop.wait()
                log.info("stopping: finishing messages in flight")
    finally:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(settings.shutdown_seconds):
                for runner in runners:
                    await runner.stop()
        for adapter in adapters:
            await adapter.close()
        await state.close()
        await connection.close()
        if ops is not None:
            await ops.cleanup()
    return 0


async def _drain_all(runners: Sequence[RouteRunner]) -> None:
    await asyncio.gather(*(runner.drain() for runner in runners))


async def _show_drain(board: Board, runners: Sequence[RouteRunner]) -> None:
    """One bar per route: messages settled so far (the total is unknown while draining)."""
    if not board.enabled:
        return
    bars = {runner.route.name: board.bar(f"draining {runner.route.name}") for runner in runners}
    while True:
        for runner in runners:
            bars[runner.route.name].update(completed=runner.handled, note="settled")
        await asyncio.sleep(0.2)
