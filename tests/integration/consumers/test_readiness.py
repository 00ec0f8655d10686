"""A consumer is ready only while it can consume: connected, declared, every shard subscribed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from pydantic import SecretStr

from services.consumers.adapters import create_adapter
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from shared.broker.connection import connect, declare_topology, link_down_reason
from shared.metrics import new_registry
from shared.settings import BrokerSettings
from tests.support.consumers import make_route, sqlite_state
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


async def until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, f"not {what} within {within}s"
        await asyncio.sleep(0.05)


async def test_readiness_follows_subscriptions_and_the_broker_link(
    amqp_url: str, tmp_path: Path
) -> None:
    parts = urlsplit(amqp_url)
    proxy = await TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5672).start()
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    broker = BrokerSettings(amqp_url=SecretStr(urlunsplit(parts._replace(netloc=netloc))))
    connection = await connect(broker, name="readiness", wait_seconds=5)
    await declare_topology(connection, broker.topology())
    route = make_route({"type": "file", "path": str(tmp_path / "inbox")}, shards=2)
    adapter = create_adapter(route.adapter.type, route.adapter.options())
    async with sqlite_state(tmp_path) as state:
        runner = RouteRunner(
            route,
            connection=connection,
            broker=broker,
            state=state,
            adapter=adapter,
            metrics=ConsumerMetrics(new_registry()),
            consistent_hash=True,
        )

        def ready() -> bool:
            return link_down_reason(connection) is None and runner.not_ready_reason() is None

        assert "declaring" in (runner.not_ready_reason() or "")
        await runner.start()
        assert ready()

        await proxy.cut()  # the broker goes away
        await until(lambda: not ready(), 5, "unready after the broker went away")
        assert link_down_reason(connection) is not None

        await proxy.restore()
        await until(ready, 20, "ready again once the broker is back")

        await runner.stop()
        assert "stopping" in (runner.not_ready_reason() or "")
        await adapter.close()
    await connection.close()
    await proxy.cut()
