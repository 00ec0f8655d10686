"""Poller catch-up of a Tradecloud backlog vs the bare aio-pika confirmed-publish ceiling.

In one run, on a private vhost:

* the Tradecloud simulator runs as its own process with ``--orders N`` (default
  20,000) and its rate limit lifted (the real 10 requests/s would cap any
  poller at 1,000 orders/s: this measures orderbridge, not the limit);
* baseline: the same N canonical events, pre-encoded, published by a bare
  aio-pika loop with publisher confirms and the same number in flight
  (``bench.publish``'s ``bare_loop``): the ceiling of getting them into RabbitMQ;
* ours: ``orderbridge poller --once --stream orders`` as a process, from an
  empty SQLite state: login, 200+ pages, normalize, publish, commit. The rate
  counts from its "poller started" log line to its "poll finished" one (the
  interpreter's start-up is reported apart), peak RSS is sampled with psutil.

Targets: ratio >= 0.6, peak RSS <= 150 MB.

    python -m bench.poller [--orders 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from pydantic import SecretStr

from bench import _common
from bench.publish import IN_FLIGHT, bare_loop, identical_message
from shared.broker.connection import connect, declare_topology
from shared.broker.envelope import envelope_for
from shared.clients.tradecloud import TradecloudClient, TradecloudSettings
from shared.normalize.tradecloud import normalize_polled_order
from shared.settings import BrokerSettings
from tests.support.rabbit import private_vhost
from tests.support.simulators import PASSWORD, USERNAME, simulator_process

REPO = Path(__file__).resolve().parents[1]
START = "2020-01-01T00:00:00.000Z"


async def all_events(settings: TradecloudSettings) -> list[Any]:
    """The backlog as the poller will publish it (fetched once, outside the timing)."""
    events = []
    async with TradecloudClient(settings) as client:
        offset = 0
        while True:
            page = await client.poll_orders(START, offset=offset)
            events += [
                normalize_polled_order(
                    doc,
                    received_at=datetime.now().astimezone(),
                    since=START,
                    role="buyer",
                    echo_policy="own-open-requests",
                )
                for doc in page.data
            ]
            if page.exhausted:
                return events
            offset += len(page.data)


async def run_poller(env: dict[str, str]) -> tuple[float, float, int, float]:
    """(drain seconds, wall seconds, peak RSS bytes, startup seconds) of one --once run."""
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "poller",
        "--once",
        "--stream",
        "orders",
        "--no-progress",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    peak = 0
    watched = psutil.Process(process.pid)

    async def sample() -> None:
        nonlocal peak
        while process.returncode is None:
            try:
                peak = max(peak, watched.memory_info().rss)
            except psutil.Error:
                return
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    _, stderr = await process.communicate()
    wall = time.perf_counter() - started
    await sampler
    if process.returncode != 0:
        raise SystemExit(f"poller failed ({process.returncode}): {stderr.decode()[-3000:]}")
    stamps: dict[str, float] = {}
    for raw in stderr.decode().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if line.get("event") in ("poller started", "poll finished"):
            stamps[line["event"]] = datetime.fromisoformat(line["timestamp"]).timestamp()
    drain = stamps["poll finished"] - stamps["poller started"]
    return drain, wall, peak, wall - drain


async def main(orders: int) -> None:
    async with simulator_process(
        "tradecloud", "--orders", str(orders), "--rate-limit", "1000000", within=300
    ) as simulator:
        client = TradecloudSettings(
            tradecloud_api_url=simulator.url,
            tradecloud_username=USERNAME,
            tradecloud_password=SecretStr(PASSWORD),
            tradecloud_requests_per_second=1_000_000,
        )
        events = await all_events(client)
        envelopes = [envelope_for(event) for event in events]
        size = sum(len(e.body) for e in envelopes) / len(envelopes)
        _common.note(f"{len(events)} orders, {size:.0f} B per event")
        bare: list[float] = []
        ours: list[tuple[float, float, int, float]] = []
        with private_vhost("orderbridge-bench") as url:
            broker = BrokerSettings(amqp_url=SecretStr(url), publish_max_in_flight=IN_FLIGHT)
            connection = await connect(broker, name="bench", wait_seconds=10)
            await declare_topology(connection, broker.topology())
            for round_ in range(2):
                bare.append(await bare_loop(connection, envelopes, identical_message))
                with tempfile.TemporaryDirectory(prefix="orderbridge-bench-poller-") as work:
                    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
                    env.update(
                        ORDERBRIDGE_AMQP_URL=url,
                        ORDERBRIDGE_STATE_URL=f"sqlite:///{work}/state.db",
                        ORDERBRIDGE_TRADECLOUD_ROLE="buyer",
                        ORDERBRIDGE_POLL_START=START,
                        ORDERBRIDGE_METRICS_PORT="0",
                        ORDERBRIDGE_TRADECLOUD_API_URL=simulator.url,
                        ORDERBRIDGE_TRADECLOUD_USERNAME=USERNAME,
                        ORDERBRIDGE_TRADECLOUD_PASSWORD=PASSWORD,
                        ORDERBRIDGE_TRADECLOUD_REQUESTS_PER_SECOND="1000000",
                        ORDERBRIDGE_PUBLISH_MAX_IN_FLIGHT=str(IN_FLIGHT),
                        ORDERBRIDGE_LOG_FORMAT="json",
                    )
                    ours.append(await run_poller(env))
                drain, wall, peak, startup = ours[-1]
                _common.note(
                    f"round {round_ + 1}: bare publish {bare[-1]:.0f}/s; poller "
                    f"{len(events) / drain:.0f} orders/s (drain {drain:.2f}s, start-up "
                    f"{startup:.2f}s, wall {wall:.2f}s), peak RSS {peak / 2**20:.0f} MB"
                )
            await connection.close()
    best = min(ours, key=lambda run: run[0])
    rate = len(events) / best[0]
    _common.report(
        "poller",
        value=rate,
        unit="orders/s",
        baseline=max(bare),
        ratio=rate / max(bare),
        target=">= 0.6 (peak RSS <= 150 MB)",
        orders=len(events),
        peak_rss_mb=round(max(run[2] for run in ours) / 2**20, 1),
        wall_seconds=round(best[1], 2),
        startup_seconds=round(best[3], 2),
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000)
    asyncio.run(main(parser.parse_args().orders))
