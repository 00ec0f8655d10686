"""Composition root of ``orderbridge consumer``: settings → connections → route runners."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from aiohttp import web

from services.consumers.adapters import ErpAdapter, create_adapter
from services.consumers.config import ConsumerConfig, load_config
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from services.consumers.settings import ConsumerSettings
from shared.broker.connection import connect, declare_topology
from shared.errors import ConfigurationError
from shared.gc_tuning import tune_for_throughput
from shared.logging import get_logger
from shared.metrics import new_registry
from shared.ops import start_ops_server
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
    state = await open_state_store(state_settings.state_url.get_secret_value(), wait_seconds=30)
    connection = await connect(broker, name="consumer", wait_seconds=30)
    adapters: list[ErpAdapter] = []
    runners: list[RouteRunner] = []
    ops: web.AppRunner | None = None
    try:
        await declare_topology(connection, broker.topology())
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
                )
            )

        def ready() -> str | None:
            if connection.is_closed:
                return "broker connection closed"
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
                await asyncio.wait({drained, waiter}, return_when=asyncio.FIRST_COMPLETED)
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
