"""One consumer route vs a bare aio-pika consume-and-ack loop on the same queues.

50k one-line order events are preloaded into a route's shard queues (private
vhost); then, in one run, (a) a bare loop consumes and acks them (prefetch 64
per shard, the route's setting), (b) the route applies them with the file
adapter and the SQLite state store, (c) with the postgres adapter (ledger in
the same transaction). Each figure is a ratio to (a). RSS of this process is
sampled during (b) and (c). Targets: (b) >= 0.5x (a); RSS <= 120 MB.

    python -m bench.consumer [--events 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from bench import _common
from services.consumers.adapters import create_adapter
from services.consumers.metrics import ConsumerMetrics
from services.consumers.runner import RouteRunner
from services.consumers.topology import route_topology, shard_queue
from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.gc_tuning import tune_for_throughput
from shared.metrics import new_registry
from shared.settings import BrokerSettings
from shared.state import open_state_store
from tests.support.consumers import make_route
from tests.support.events import order_event
from tests.support.postgres import private_database
from tests.support.rabbit import private_vhost

FSYNC = True


class RssSampler:
    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        process = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss)
            time.sleep(0.05)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


async def preload(publisher: RabbitPublisher, count: int) -> None:
    for start in range(0, count, 2000):
        await publisher.publish_many([order_event() for _ in range(min(2000, count - start))])


async def bare(connection: Any, queues: list[str], count: int) -> float:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=64)
    done = asyncio.Event()
    seen = 0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal seen
        await message.ack()
        seen += 1
        if seen >= count:
            done.set()

    started = time.perf_counter()
    for name in queues:
        queue = await channel.get_queue(name, ensure=False)
        await queue.consume(on_message)
    await done.wait()
    rate = count / (time.perf_counter() - started)
    await channel.close()
    return rate


async def through_route(
    connection: Any, broker: BrokerSettings, route: Any, state: Any, count: int
) -> float:
    adapter = create_adapter(route.adapter.type, route.adapter.options())
    runner = RouteRunner(
        route,
        connection=connection,
        broker=broker,
        state=state,
        adapter=adapter,
        metrics=ConsumerMetrics(new_registry()),
    )
    started = time.perf_counter()
    await runner.start()
    while runner.handled < count:
        await asyncio.sleep(0.05)
    rate = count / (time.perf_counter() - started)
    await runner.stop()
    await adapter.close()
    return rate


async def main(events: int) -> None:
    tune_for_throughput()  # as `orderbridge consumer` does at start (bare loop benefits too)
    work = Path(tempfile.mkdtemp(prefix="orderbridge-bench-consumer-"))
    try:
        with private_vhost("orderbridge-bench") as url:
            broker = BrokerSettings(amqp_url=SecretStr(url), publish_max_in_flight=512)
            connection = await connect(broker, name="bench", wait_seconds=10)
            await declare_topology(connection, broker.topology())
            publisher = await RabbitPublisher.open(connection, broker)
            route = make_route(
                {"type": "file", "path": str(work / "inbox")},
                bindings=("tradecloud.#",),
                shards=4,
                name=f"bench-{uuid.uuid4().hex[:6]}",
            )
            await declare_topology(connection, route_topology(route))
            queues = [shard_queue(route.name, i) for i in range(route.shards)]

            await preload(publisher, events)
            baseline = await bare(connection, queues, events)
            _common.note(f"bare consume-and-ack: {baseline:.0f} msg/s")

            await preload(publisher, events)
            state = await open_state_store(f"sqlite:///{work / 'state.db'}")
            with RssSampler() as rss_file:
                file_rate = await through_route(connection, broker, route, state, events)
            await state.close()
            _common.note(
                f"route, file adapter + SQLite: {file_rate:.0f} events/s, "
                f"peak RSS {rss_file.peak / 2**20:.0f} MB"
            )

            async with private_database("orderbridge_bench") as database:
                pg_route = route.model_copy(
                    update={
                        "adapter": route.adapter.model_validate(
                            {"type": "postgres", "url": database}
                        )
                    }
                )
                await preload(publisher, events)
                state = await open_state_store("memory://")
                with RssSampler() as rss_pg:
                    pg_rate = await through_route(connection, broker, pg_route, state, events)
                await state.close()
            _common.note(
                f"route, postgres adapter: {pg_rate:.0f} events/s, "
                f"peak RSS {rss_pg.peak / 2**20:.0f} MB"
            )
            await publisher.close()
            await connection.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    _common.report(
        "consumer",
        value=file_rate,
        unit="events/s",
        baseline=baseline,
        ratio=file_rate / baseline,
        target=">= 0.5 (file + SQLite); RSS <= 120 MB",
        events=events,
        postgres_per_s=round(pg_rate),
        postgres_ratio=round(pg_rate / baseline, 3),
        peak_rss_mb=round(max(rss_file.peak, rss_pg.peak) / 2**20),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().events))
