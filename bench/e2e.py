"""Webhook → ERP effect latency at a steady rate, through ingress, RabbitMQ and one file route.

In one run, on a private vhost:

(a) baseline: a bare aio-pika publisher sends the same events (as ingress would publish
    them) at the same steady rate, with confirms, into a quorum queue that a bare
    consumer reads and acks: the broker's own publish → delivery latency.
(b) orderbridge: an open-loop generator POSTs Tradecloud order webhooks at the rate to
    an ``orderbridge ingress`` process; an ``orderbridge consumer`` process applies them
    with the file adapter (fsync on). Latency = the applied-at stamp in each file's name
    minus the request's *scheduled* send time (no coordinated omission).

RSS of ingress and consumer is sampled after the first quarter and at the end: the
run must not grow. Targets: p50 <= 5 ms, p99 <= 25 ms, no RSS growth.

    python -m bench.e2e [--rate 1000] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import aiohttp
import psutil
from aio_pika.abc import AbstractIncomingMessage
from pydantic import SecretStr

from bench import _common
from bench.ingress import PATH, TOKEN, envelopes, free_port, ingress_process, process, webhook
from bench.publish import identical_message
from shared.broker.connection import connect, declare_topology
from shared.broker.topology import EVENTS_EXCHANGE
from shared.settings import BrokerSettings
from tests.support.rabbit import private_vhost


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else float("nan")


async def bare(url: str, rate: float, seconds: float) -> list[float]:
    """Publish → delivery latencies (ms) of a bare confirmed publisher and consumer."""
    settings = BrokerSettings(amqp_url=SecretStr(url))
    connection = await connect(settings, name="bench-e2e-bare", wait_seconds=10)
    channel = await connection.channel(publisher_confirms=True)
    consume = await connection.channel()
    await consume.set_qos(prefetch_count=64)
    queue = await consume.declare_queue(
        f"bench-e2e-{uuid.uuid4().hex[:6]}", durable=True, arguments={"x-queue-type": "quorum"}
    )
    await queue.bind(EVENTS_EXCHANGE, "tradecloud.#")
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    total = int(rate * seconds)
    messages = [identical_message(e) for e in envelopes(min(total, 2000))]
    loop = asyncio.get_running_loop()
    sent: dict[str, float] = {}
    latencies: list[float] = []
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        await message.ack()
        latencies.append((loop.time() - sent[message.correlation_id or ""]) * 1000)
        if len(latencies) >= total:
            done.set()

    tag = await queue.consume(on_message)
    start = loop.time() + 0.1

    async def one(i: int) -> None:
        scheduled = start + i / rate
        await asyncio.sleep(max(0.0, scheduled - loop.time()))
        template = messages[i % len(messages)]
        message = aio_pika.Message(
            template.body,
            headers=template.headers,
            delivery_mode=template.delivery_mode,
            correlation_id=str(i),
            content_type=template.content_type,
        )
        sent[str(i)] = scheduled
        await exchange.publish(message, "tradecloud.order.Issued.Open", mandatory=True)

    await asyncio.gather(*(one(i) for i in range(total)))
    await asyncio.wait_for(done.wait(), 60)
    await queue.cancel(tag)
    await queue.delete(if_unused=False, if_empty=False)
    await connection.close()
    return latencies


async def generate(port: int, rate: float, seconds: float) -> tuple[dict[str, float], int]:
    """POST webhooks at ``rate``; event id → scheduled wall time; and the non-202 count."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    total = int(rate * seconds)
    scheduled_at: dict[str, float] = {}
    errors = 0
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.2
        wall_start = time.time() + 0.2

        async def one(i: int) -> None:
            nonlocal errors
            body = webhook(i, "e")
            await asyncio.sleep(max(0.0, start + i / rate - loop.time()))
            async with session.post(PATH, data=body, headers=headers) as response:
                answer = await response.json()
                if response.status != 202:
                    errors += 1
                    return
            scheduled_at[answer["event_id"]] = wall_start + i / rate

        await asyncio.gather(*(one(i) for i in range(total)))
    return scheduled_at, errors


def effect_latencies(inbox: Path, scheduled_at: dict[str, float]) -> list[float]:
    latencies = []
    for path in inbox.glob("*.json"):
        parts = path.name.removesuffix(".json").split("--")
        stamp = datetime.strptime(parts[0], "%Y%m%dT%H%M%S%fZ").replace(tzinfo=UTC)
        applied = stamp.timestamp()
        sent = scheduled_at.get(parts[-1])
        if sent is not None:
            latencies.append((applied - sent) * 1000)
    return latencies


def rss(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


async def main(rate: float, seconds: float) -> None:
    with private_vhost("orderbridge-bench") as url, tempfile.TemporaryDirectory() as work:
        settings = BrokerSettings(amqp_url=SecretStr(url))
        connection = await connect(settings, name="bench", wait_seconds=10)
        await declare_topology(connection, settings.topology())
        await connection.close()

        baseline = await bare(url, rate, seconds)
        _common.note(
            f"bare publish→consume at {rate:.0f}/s: p50 {percentile(baseline, 0.5):.2f} ms, "
            f"p99 {percentile(baseline, 0.99):.2f} ms"
        )

        inbox = Path(work) / "inbox"
        routes = Path(work) / "routes.toml"
        routes.write_text(
            '[[routes]]\nname = "bench-e2e"\nbindings = ["tradecloud.order.#"]\nshards = 4\n'
            f'[routes.adapter]\ntype = "file"\npath = "{inbox}"\n'
        )
        ingress_port, metrics_port = free_port(), free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
        env.update(
            ORDERBRIDGE_AMQP_URL=url,
            ORDERBRIDGE_STATE_URL=f"sqlite:///{work}/state.db",
            ORDERBRIDGE_CONSUMER_CONFIG=str(routes),
            ORDERBRIDGE_METRICS_HOST="127.0.0.1",
            ORDERBRIDGE_METRICS_PORT=str(metrics_port),
            ORDERBRIDGE_LOG_LEVEL="WARNING",
        )
        consumer_argv = [sys.executable, "-m", "services.cli", "consumer"]
        with (
            ingress_process(url, ingress_port) as ingress,
            process(consumer_argv, env, metrics_port) as consumer,
        ):
            quarter = asyncio.get_running_loop().call_later(
                seconds / 4 + 0.2,
                lambda: samples.update(early=(rss(ingress.pid), rss(consumer.pid))),
            )
            samples: dict[str, tuple[int, int]] = {}
            scheduled_at, errors = await generate(ingress_port, rate, seconds)
            deadline = time.monotonic() + 60
            while (
                len(list(inbox.glob("*.json"))) < len(scheduled_at) and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.2)
            samples["late"] = (rss(ingress.pid), rss(consumer.pid))
            quarter.cancel()
        latencies = effect_latencies(inbox, scheduled_at)
    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    b50, b99 = percentile(baseline, 0.5), percentile(baseline, 0.99)
    early = samples.get("early", samples["late"])
    growth = [(late - first) / 2**20 for first, late in zip(early, samples["late"], strict=True)]
    _common.note(
        f"orderbridge webhook→file at {rate:.0f}/s: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"{len(latencies)}/{int(rate * seconds)} applied, {errors} non-202; RSS growth "
        f"ingress {growth[0]:+.1f} MB, consumer {growth[1]:+.1f} MB"
    )
    _common.report(
        "e2e",
        value=p99,
        unit="ms p99 webhook→ERP file",
        baseline=b99,
        ratio=p99 / b99 if b99 else float("nan"),
        target="p50 <= 5 ms, p99 <= 25 ms, no RSS growth",
        rate=rate,
        seconds=seconds,
        p50_ms=round(p50, 2),
        baseline_p50_ms=round(b50, 2),
        applied=len(latencies),
        non_2xx=errors,
        rss_growth_mb={"ingress": round(growth[0], 1), "consumer": round(growth[1], 1)},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(main(args.rate, args.seconds))
