"""``orderbridge ingress`` as a real process: startup checks and graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection

from shared import exit_codes
from tests.support.files import fixture_bytes
from tests.support.ingress import BEARER, JSON_CT, TOKEN, EventTap, client, post
from tests.support.tcpproxy import TcpProxy

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[3]
ORDER = fixture_bytes("tradecloud/order-webhook-proposal.json")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(
        ORDERBRIDGE_INGRESS_HOST="127.0.0.1",
        ORDERBRIDGE_INGRESS_PORT="0",
        ORDERBRIDGE_METRICS_HOST="127.0.0.1",
        ORDERBRIDGE_METRICS_PORT=str(_free_port()),
        ORDERBRIDGE_LOG_FORMAT="json",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Ingress:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, object]] = []
        self.port = 0
        self.metrics_port = 0

    async def wait_listening(self, within: float = 30) -> None:
        async with asyncio.timeout(within):
            while self.port == 0:
                await self._line()

    async def _line(self) -> None:
        assert self.process.stderr is not None
        raw = await self.process.stderr.readline()
        if not raw:
            raise AssertionError(f"ingress exited early: {self.lines}")
        with suppress(ValueError):
            line = json.loads(raw)
            self.lines.append(line)
            if line.get("event") == "ingress listening":
                self.port = int(str(line["port"]))
                metrics = str(line["metrics_port"])
                self.metrics_port = int(metrics) if metrics.isdigit() else 0

    async def wait_exit(self, within: float) -> int:
        async with asyncio.timeout(within):
            assert self.process.stderr is not None
            for raw in (await self.process.stderr.read()).splitlines():
                with suppress(ValueError):
                    self.lines.append(json.loads(raw))
            return await self.process.wait()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"


@asynccontextmanager
async def ingress(*args: str, env: dict[str, str]) -> AsyncIterator[Ingress]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "ingress",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield Ingress(process)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_refuses_to_start_without_credentials(amqp_url: str) -> None:
    async with ingress(env=_env(ORDERBRIDGE_AMQP_URL=amqp_url)) as proc:
        code = await proc.wait_exit(within=30)
    assert code == exit_codes.CONFIG
    [error] = [line for line in proc.lines if line.get("level") == "error"]
    assert "--insecure-no-auth" in str(error["event"])


async def test_insecure_flag_starts_without_credentials(amqp_url: str) -> None:
    async with ingress("--insecure-no-auth", env=_env(ORDERBRIDGE_AMQP_URL=amqp_url)) as proc:
        await proc.wait_listening()
        async with client(proc.url) as session:
            status, _, _ = await post(session, "/webhooks/tradecloud/orders", ORDER, JSON_CT)
            assert status == 202
        assert any("INSECURE" in str(line.get("event")) for line in proc.lines)
        proc.process.send_signal(signal.SIGTERM)
        assert await proc.wait_exit(within=20) == 0


async def _in_flight(session: aiohttp.ClientSession, count: int, within: float = 10) -> None:
    async with asyncio.timeout(within):
        while True:
            text = await (await session.get("/metrics")).text()
            if f"orderbridge_ingress_requests_in_flight {count}.0" in text:
                return
            await asyncio.sleep(0.05)


async def test_sigterm_drains_in_flight_publishes_then_exits(
    amqp_url: str, connection: AbstractRobustConnection
) -> None:
    target = urlsplit(amqp_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5672).start()
    via_proxy = urlunsplit(target._replace(netloc=f"guest:guest@127.0.0.1:{proxy.port}"))
    tap = await EventTap.open(connection)
    env = _env(
        ORDERBRIDGE_AMQP_URL=via_proxy,
        ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN=TOKEN,
        ORDERBRIDGE_PUBLISH_TIMEOUT_SECONDS="20",
    )
    try:
        async with ingress(env=env) as proc:
            await proc.wait_listening()
            assert TOKEN not in json.dumps(proc.lines)  # secrets never logged
            async with client(proc.url) as session:
                proxy.pause()  # the publish is written, its confirm cannot come back
                in_flight = asyncio.ensure_future(
                    post(session, "/webhooks/tradecloud/orders", ORDER, BEARER | JSON_CT)
                )
                async with client(proc.metrics_url) as metrics:
                    await _in_flight(metrics, 1)
                async with client(proc.url) as public:
                    assert (await public.get("/metrics")).status == 404  # never on the public port
                proc.process.send_signal(signal.SIGTERM)
                async with asyncio.timeout(10):
                    while True:
                        async with session.get("/readyz") as ready:
                            if ready.status == 503:
                                break
                        await asyncio.sleep(0.05)
                status, payload, response = await post(
                    session, "/webhooks/apicbase/orders", b"{}", JSON_CT
                )
                assert (status, payload["error"]) == (503, "shutting_down")
                assert response.headers["Retry-After"] == "1"
                assert not in_flight.done()
                proxy.resume()
                status, payload, _ = await in_flight
                assert status == 202, payload
            assert await proc.wait_exit(within=20) == 0
        events = [line.get("event") for line in proc.lines]
        assert "draining: new webhooks get 503" in events and "ingress stopped" in events
        [message] = await tap.until(str(payload["event_id"]))
        assert message.routing_key == "tradecloud.order.InProgress.Open"
    finally:
        proxy.resume()
        await proxy.cut()
        await tap.close()
