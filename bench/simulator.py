"""The Tradecloud simulator serving poll pages: it must never be the bottleneck.

A 10k-order world in its own process (``orderbridge simulate tradecloud``, rate
limit lifted); one client drains the whole backlog in pages of 100 under one
cursor (offset paging), four times. Baseline in the same run: a bare aiohttp
server answering every request with the same pre-built 100-order page (the
ceiling of HTTP + JSON transfer on this machine). Target: >= 2,000 orders/s.

    python -m bench.simulator
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from bench import _common

REPO = Path(__file__).resolve().parents[1]
ORDERS = 10_000
ROUNDS = 4
BASIC = aiohttp.BasicAuth("integration@buyer.example", "secret")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(600):
            try:
                async with session.get(url) as response:
                    if response.status < 500:
                        return
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


async def drain(url: str) -> tuple[int, float]:
    """Page through everything after the epoch; returns (orders, seconds)."""
    seen = 0
    offset = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession(headers={"Authorization": BASIC.encode()}) as session:
        while True:
            body = {
                "filters": {"lastUpdatedAfter": "2020-01-01T00:00:00.000Z"},
                "offset": offset,
                "limit": 100,
            }
            async with session.post(url, json=body) as response:
                page = await response.json(loads=__import__("orjson").loads)
            seen += len(page["data"])
            offset += len(page["data"])
            if offset >= page["total"] or not page["data"]:
                return seen, time.perf_counter() - started


def bare_server(port: int, page_file: str) -> None:
    body = Path(page_file).read_bytes()

    async def handle(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_post("/v2/order-search/poll", handle)
    app.router.add_get("/", handle)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


async def bare_rate(url: str, pages: int) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for _ in range(pages):
            async with session.post(url, json={}) as response:
                await response.json(loads=__import__("orjson").loads)
    return pages * 100 / (time.perf_counter() - started)


async def main() -> None:
    port, bare_port = free_port(), free_port()
    env = {**os.environ, "ORDERBRIDGE_LOG_LEVEL": "WARNING"}
    simulator = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli",
            "simulate",
            "tradecloud",
            "--port",
            str(port),
            "--orders",
            str(ORDERS),
            "--rate-limit",
            "100000",
        ],
        cwd=REPO,
        env=env,
    )
    page_file = REPO / ".bench-page.json"
    try:
        base = f"http://127.0.0.1:{port}"
        await wait_up(base + "/_control/state")
        async with (
            aiohttp.ClientSession(headers={"Authorization": BASIC.encode()}) as session,
            session.post(
                base + "/v2/order-search/poll", json={"filters": {}, "limit": 100}
            ) as response,
        ):
            page_file.write_bytes(await response.read())
        bare = subprocess.Popen(
            [
                sys.executable,
                "-c",
                f"from bench.simulator import bare_server; "
                f"bare_server({bare_port}, {str(page_file)!r})",
            ],
            cwd=REPO,
            env=env,
        )
        try:
            await wait_up(f"http://127.0.0.1:{bare_port}/")
            rates, baselines = [], []
            for round_ in range(ROUNDS):
                orders, seconds = await drain(base + "/v2/order-search/poll")
                rates.append(orders / seconds)
                baselines.append(
                    await bare_rate(
                        f"http://127.0.0.1:{bare_port}/v2/order-search/poll", ORDERS // 100
                    )
                )
                _common.note(
                    f"round {round_ + 1}: simulator {rates[-1]:.0f} orders/s "
                    f"({orders} orders), bare page server {baselines[-1]:.0f} orders/s"
                )
        finally:
            bare.terminate()
            bare.wait(10)
    finally:
        simulator.terminate()
        simulator.wait(10)
        page_file.unlink(missing_ok=True)
    _common.report(
        "simulator",
        value=max(rates),
        unit="orders/s",
        baseline=max(baselines),
        ratio=max(rates) / max(baselines),
        target=">= 2000 orders/s (absolute)",
        world_orders=ORDERS,
        page_size=100,
    )


if __name__ == "__main__":
    asyncio.run(main())
