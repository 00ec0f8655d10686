"""Run consumer routes in-process against the real broker for tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aio_pika.abc import AbstractRobustConnection

from services.consumers.adapters import ErpAdapter, create_adapter
from services.consumers.config import ConsumerConfig, Route
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from shared.metrics import new_registry
from shared.settings import BrokerSettings
from shared.state import StateStore, open_state_store


def make_route(
    adapter: dict[str, Any],
    *,
    bindings: Sequence[str] = ("tradecloud.#", "apicbase.#"),
    retry_delays: Sequence[float] = (0.2, 0.4),
    **overrides: Any,
) -> Route:
    """A route with a unique name (its queues are private to the test)."""
    raw = {
        "routes": [
            {
                "name": f"t-{uuid.uuid4().hex[:10]}",
                "bindings": list(bindings),
                "shards": 2,
                "retry_delays": list(retry_delays),
                "adapter": adapter,
                **overrides,
            }
        ]
    }
    return ConsumerConfig.model_validate(raw).routes[0]


@asynccontextmanager
async def sqlite_state(directory: Path) -> AsyncIterator[StateStore]:
    store = await open_state_store(f"sqlite:///{directory / 'state.db'}")
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def running(
    route: Route,
    connection: AbstractRobustConnection,
    broker: BrokerSettings,
    state: StateStore,
    adapter: ErpAdapter | None = None,
) -> AsyncIterator[tuple[RouteRunner, ConsumerMetrics]]:
    metrics = ConsumerMetrics(new_registry())
    erp = adapter or create_adapter(route.adapter.type, route.adapter.options())
    runner = RouteRunner(
        route, connection=connection, broker=broker, state=state, adapter=erp, metrics=metrics
    )
    await runner.start()
    try:
        yield runner, metrics
    finally:
        await runner.stop()
        await erp.close()


def outcomes(metrics: ConsumerMetrics, route: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in metrics.events.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["route"] == route:
                found[sample.labels["outcome"]] = sample.value
    return found
