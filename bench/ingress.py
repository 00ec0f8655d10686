"""Webhook ingress under load vs the bare confirmed-publish ceiling, in one run.

(a) ceiling: a bare aio-pika loop publishing, with confirms, the very AMQP
    messages ingress produces for the load (same ~5 KB bodies, properties and
    headers, ``mandatory=True``, same exchange bound to the archive stream),
    pipelined with 64 and 256 confirms in flight; the better one counts.
(b) orderbridge ingress, a separate ``orderbridge ingress`` process (Bearer
    auth on, JSON logs at WARNING), under ``wrk`` (Debian package) with 64
    connections POSTing Tradecloud order webhooks, each with its own order id
    and messageId (so each is its own event, never a coalesced duplicate).
    Falls back to an aiohttp load generator when ``wrk`` is missing.
(c) latency at half of (b)'s peak rate over the same 64 connections: wrk
    (one thread, to leave the cores to the system under test) with a random
    think time per connection, so requests arrive independently of answers;
    without wrk an open-loop aiohttp generator timing from each request's
    *scheduled* start (no coordinated omission).
(d) for scale: a bare aiohttp app answering 202 to the same POSTs under wrk.

RSS of the ingress process is sampled throughout. Targets: (b) >= 0.8 x (a);
p99 at half the peak rate <= 15 ms; RSS <= 120 MB under load.

    python -m bench.ingress [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from pydantic import SecretStr

from bench import _common
from bench.publish import identical_message
from shared.broker.connection import connect, declare_topology
from shared.broker.envelope import Envelope, envelope_for
from shared.broker.topology import EVENTS_EXCHANGE
from shared.normalize import tradecloud
from shared.schema.codec import dumps_exact, loads_exact
from shared.settings import BrokerSettings
from tests.support.rabbit import private_vhost

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/fixtures/tradecloud/order-webhook-proposal.json"
PATH = "/webhooks/tradecloud/orders"
TOKEN = "bench-token"
CONNECTIONS = 64
ORDER_MARK, MESSAGE_MARK = (
    "ORDERIDXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
    "MSGIDXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
)


# ---------------------------------------------------------------- payload


def template() -> bytes:
    """A one-line order webhook (~2.6 KB; its canonical event is ~5.4 KB) with id marks."""
    body = loads_exact(FIXTURE.read_bytes())
    body["orderEvent"]["lines"] = body["orderEvent"]["lines"][:1]
    body["orderEvent"]["orderId"] = ORDER_MARK
    body["meta"]["messageId"] = MESSAGE_MARK
    return dumps_exact(body)


def webhook(n: int, prefix: str = "b") -> bytes:
    order_id = f"{prefix}{n:035d}"[-36:]
    return TEMPLATE.replace(ORDER_MARK.encode(), order_id.encode()).replace(
        MESSAGE_MARK.encode(), str(uuid.uuid4()).encode()
    )


TEMPLATE = template()


def envelopes(count: int) -> list[Envelope]:
    now = datetime.now(UTC)
    return [
        envelope_for(tradecloud.normalize_order_webhook(loads_exact(webhook(i)), received_at=now))
        for i in range(count)
    ]


# ---------------------------------------------------------------- (a) bare publish


async def bare_publish(url: str, messages: list[Envelope], in_flight: int) -> float:
    settings = BrokerSettings(amqp_url=SecretStr(url))
    connection = await connect(settings, name="bench-bare", wait_seconds=10)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(EVENTS_EXCHANGE, ensure=False)
    slots = asyncio.Semaphore(in_flight)

    async def one(envelope: Envelope) -> None:
        async with slots:
            await exchange.publish(
                identical_message(envelope),
                envelope.routing_key,
                mandatory=True,
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(envelope) for envelope in messages))
    rate = len(messages) / (time.perf_counter() - started)
    await connection.close()
    return rate


# ---------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def process(argv: list[str], env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{argv} exited: {proc.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv} did not listen on {port}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ingress_process(url: str, port: int) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(
        ORDERBRIDGE_AMQP_URL=url,
        ORDERBRIDGE_INGRESS_HOST="127.0.0.1",
        ORDERBRIDGE_INGRESS_PORT=str(port),
        ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN=TOKEN,
        ORDERBRIDGE_METRICS_PORT="0",
        ORDERBRIDGE_LOG_LEVEL="WARNING",
    )
    return process([sys.executable, "-m", "services.cli", "ingress"], env, port)


def bare_aiohttp_process(port: int) -> Any:
    return process(
        [sys.executable, "-m", "bench.ingress", "--bare-server", str(port)], {**os.environ}, port
    )


def serve_bare(port: int) -> None:
    """A minimal aiohttp app: read the body, answer 202 (the HTTP floor)."""
    from aiohttp import web

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=b'{"event_id":"x"}', status=202, content_type="application/json")

    app = web.Application()
    app.router.add_post(PATH, handle)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self.peak = max(self.peak, self.process.memory_info().rss)


# ---------------------------------------------------------------- load


LUA = """
local prefix, middle, suffix = [==[{prefix}]==], [==[{middle}]==], [==[{suffix}]==]
local counter = 0
local threads = 0
setup = function(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
{delay}
request = function()
  counter = counter + 1
  local id = string.format("%s-%04x-4000-8000-%012x", "{run}", tid, counter)
  return wrk.format("POST", "{path}", {{
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer {token}",
  }}, prefix .. id .. middle .. id .. suffix)
end
"""


def wrk_script(run: str, rate: float | None = None) -> str:
    """Unique webhooks per request; with ``rate``, random think time per connection.

    The think time (uniform, mean = connections / rate) makes wrk an open-loop
    generator in practice: at half the peak rate a response takes a few ms
    against ~100 ms between a connection's requests.
    """
    text = TEMPLATE.decode()
    prefix, rest = text.split(ORDER_MARK)
    middle, suffix = rest.split(MESSAGE_MARK)
    delay = ""
    if rate is not None:
        mean_ms = max(1, round(CONNECTIONS * 1000 / rate))
        delay = f"delay = function() return math.random(0, {2 * mean_ms}) end"
    return LUA.format(
        prefix=prefix,
        middle=middle,
        suffix=suffix,
        run=run,
        path=PATH,
        token=TOKEN,
        delay=delay,
    )


def wrk(
    port: int,
    seconds: float,
    connections: int = CONNECTIONS,
    rate: float | None = None,
    threads: int = 2,
) -> dict[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(wrk_script(uuid.uuid4().hex[:8], rate))
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}{PATH}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result = {"rps": rate, "non_2xx": float(errors.group(1)) if errors else 0.0}
    found_max = re.search(r"Latency\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out)
    if found_max:
        result["max_ms"] = (
            float(found_max.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found_max.group(2)]
        )
    for pct in ("50", "99"):
        found = re.search(rf"\s{pct}%\s+([\d.]+)(us|ms|s)\b", out)
        if found:
            scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]
            result[f"p{pct}_ms"] = float(found.group(1)) * scale
    return result


async def closed_loop(
    port: int, seconds: float, connections: int = CONNECTIONS
) -> dict[str, float]:
    """wrk's job in Python when wrk is not installed (it competes for the CPU)."""
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:

        async def worker(w: int) -> None:
            nonlocal done, errors
            n = 0
            while time.monotonic() < deadline:
                n += 1
                async with session.post(PATH, data=webhook(n, f"w{w}x"), headers=headers) as r:
                    await r.read()
                    done += 1
                    errors += r.status != 202

        started = time.monotonic()
        await asyncio.gather(*(worker(w) for w in range(connections)))
        elapsed = time.monotonic() - started
    return {"rps": done / elapsed, "non_2xx": float(errors)}


async def open_loop(port: int, rate: float, seconds: float) -> dict[str, float]:
    """Requests at a fixed rate; latency from each request's scheduled start."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    errors = 0
    total = int(rate * seconds)
    bodies = [webhook(i, "l") for i in range(total)]
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", connector=connector) as session:
        loop = asyncio.get_running_loop()
        start = loop.time() + 0.1

        async def one(i: int) -> None:
            nonlocal errors
            scheduled = start + i / rate
            await asyncio.sleep(max(0.0, scheduled - loop.time()))
            async with session.post(PATH, data=bodies[i], headers=headers) as response:
                await response.read()
                errors += response.status != 202
            latencies.append(loop.time() - scheduled)

        await asyncio.gather(*(one(i) for i in range(total)))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

    return {
        "rate": rate,
        "p50_ms": pct(0.5),
        "p99_ms": pct(0.99),
        "max_ms": latencies[-1] * 1000,
        "non_2xx": float(errors),
    }


# ---------------------------------------------------------------- main


async def run(seconds: float, rounds: int) -> None:
    use_wrk = shutil.which("wrk") is not None
    if not use_wrk:
        _common.note("wrk not found (apt-get install wrk): using the aiohttp load generator")
    messages = envelopes(5000)
    size = len(messages[0].body)
    with private_vhost("orderbridge-bench") as url:
        settings = BrokerSettings(amqp_url=SecretStr(url))
        connection = await connect(settings, name="bench", wait_seconds=10)
        await declare_topology(connection, settings.topology())
        await connection.close()

        bare: dict[int, list[float]] = {64: [], 256: []}
        peak: list[dict[str, float]] = []
        http_floor: list[float] = []
        port = free_port()
        with ingress_process(url, port) as proc, RssSampler(proc.pid) as rss:
            idle_rss = psutil.Process(proc.pid).memory_info().rss
            # warm-up: imports, JIT-less caches, connection pools
            await (asyncio.to_thread(wrk, port, 2) if use_wrk else closed_loop(port, 2))
            for round_ in range(rounds):
                for in_flight in bare:
                    bare[in_flight].append(await bare_publish(url, messages, in_flight))
                load = await (
                    asyncio.to_thread(wrk, port, seconds) if use_wrk else closed_loop(port, seconds)
                )
                peak.append(load)
                _common.note(
                    f"round {round_ + 1}: bare publish {bare[64][-1]:.0f}/s (64 in flight), "
                    f"{bare[256][-1]:.0f}/s (256); ingress {load['rps']:.0f} req/s "
                    f"(p99 {load.get('p99_ms', float('nan')):.1f} ms at 64 connections, "
                    f"non-2xx {load['non_2xx']:.0f})"
                )
            best = max(peak, key=lambda r: r["rps"])
            half = best["rps"] / 2
            if use_wrk:
                result = await asyncio.to_thread(wrk, port, seconds, CONNECTIONS, half, 1)
                latency = {
                    "rate": result["rps"],
                    "p50_ms": result["p50_ms"],
                    "p99_ms": result["p99_ms"],
                    "max_ms": result.get("max_ms", float("nan")),
                    "non_2xx": result["non_2xx"],
                }
            else:
                latency = await open_loop(port, half, min(seconds, 5))
            _common.note(
                f"half peak ({latency['rate']:.0f} req/s): p50 {latency['p50_ms']:.2f} ms, "
                f"p99 {latency['p99_ms']:.2f} ms, max {latency['max_ms']:.1f} ms"
            )
            peak_rss = rss.peak
        floor_port = free_port()
        with bare_aiohttp_process(floor_port):
            for _ in range(rounds):
                result = await (
                    asyncio.to_thread(wrk, floor_port, seconds / 2)
                    if use_wrk
                    else closed_loop(floor_port, seconds / 2)
                )
                http_floor.append(result["rps"])
        _common.note(f"bare aiohttp POST: {max(http_floor):.0f} req/s")

    ceiling = max(max(rates) for rates in bare.values())
    _common.report(
        "ingress",
        value=best["rps"],
        unit="req/s",
        baseline=ceiling,
        ratio=best["rps"] / ceiling,
        target=">= 0.8; p99 <= 15 ms at half peak; RSS <= 120 MB",
        load_generator="wrk" if use_wrk else "aiohttp",
        connections=CONNECTIONS,
        event_bytes=size,
        webhook_bytes=len(TEMPLATE),
        bare_publish_64_in_flight=round(max(bare[64])),
        bare_publish_256_in_flight=round(max(bare[256])),
        peak_p99_ms=round(best.get("p99_ms", float("nan")), 2),
        non_2xx=sum(r["non_2xx"] for r in peak),
        half_peak_rate=round(latency["rate"]),
        half_peak_p50_ms=round(latency["p50_ms"], 2),
        half_peak_p99_ms=round(latency["p99_ms"], 2),
        rss_idle_mb=round(idle_rss / 2**20, 1),
        rss_peak_mb=round(peak_rss / 2**20, 1),
        bare_aiohttp_post_per_s=round(max(http_floor)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bare-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_server:
        serve_bare(args.bare_server)
        return
    asyncio.run(run(args.seconds, args.rounds))


if __name__ == "__main__":
    main()
