"""What a real service's ``/metrics`` carries besides its own families.

Runtime collectors (process, Python platform and GC), ``orderbridge_build_info``
with the package's version, and no ``_created`` series, scraped from an
``orderbridge ingress`` and an ``orderbridge consumer`` process. The ingress
scrape tries ``ORDERBRIDGE_METRICS_PORT`` first and falls back to the webhook
port, so it holds wherever ingress serves ``/metrics``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from importlib.metadata import version
from pathlib import Path

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.schema.models import SCHEMA_VERSION

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REPO = Path(__file__).resolve().parents[2]
RUNTIME_FAMILIES = {
    "process_cpu_seconds",
    "process_resident_memory_bytes",
    "process_start_time_seconds",
    "process_open_fds",
    "python_info",
    "python_gc_objects_collected",
    "python_gc_collections",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _env(amqp_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(ORDERBRIDGE_AMQP_URL=amqp_url, ORDERBRIDGE_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


@asynccontextmanager
async def service(*argv: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        *argv,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(20):
                    await process.communicate()
            except TimeoutError:
                process.kill()
                await process.wait()


async def scrape(urls: list[str], within: float = 30) -> str:
    """The first ``/metrics`` among ``urls`` that answers 200, retried until ``within``."""
    async with aiohttp.ClientSession() as session, asyncio.timeout(within):
        while True:
            for url in urls:
                with suppress(aiohttp.ClientError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return await response.text()
            await asyncio.sleep(0.1)


def check_exposition(text: str, service_name: str) -> None:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert families.keys() >= RUNTIME_FAMILIES, sorted(RUNTIME_FAMILIES - families.keys())
    [info] = families["orderbridge_build_info"].samples
    assert info.value == 1
    assert info.labels == {
        "service": service_name,
        "version": version("orderbridge"),
        "schema_version": str(SCHEMA_VERSION),
    }
    created = [line for line in text.splitlines() if "_created" in line]
    assert created == [], created
    assert any(
        name.startswith("orderbridge_") and name != "orderbridge_build_info" for name in families
    )


async def _listening_port(process: asyncio.subprocess.Process, within: float = 30) -> int:
    assert process.stderr is not None
    async with asyncio.timeout(within):
        while True:
            raw = await process.stderr.readline()
            if not raw:
                raise AssertionError("ingress exited before listening")
            with suppress(ValueError):
                line = json.loads(raw)
                if line.get("event") == "ingress listening":
                    return int(line["port"])


async def test_ingress_exposes_runtime_collectors_and_build_info(amqp_url: str) -> None:
    metrics_port = free_port()
    env = _env(
        amqp_url,
        ORDERBRIDGE_INGRESS_HOST="127.0.0.1",
        ORDERBRIDGE_INGRESS_PORT="0",
        ORDERBRIDGE_METRICS_HOST="127.0.0.1",
        ORDERBRIDGE_METRICS_PORT=str(metrics_port),
    )
    async with service("ingress", "--insecure-no-auth", env=env) as process:
        port = await _listening_port(process)
        text = await scrape(
            [f"http://127.0.0.1:{metrics_port}/metrics", f"http://127.0.0.1:{port}/metrics"]
        )
    check_exposition(text, "ingress")


async def test_consumer_exposes_runtime_collectors_and_build_info(
    amqp_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "routes.toml"
    config.write_text(f"""
[[routes]]
name = "metrics-{os.getpid()}"
bindings = ["tradecloud.order.#"]
[routes.adapter]
type = "file"
path = "{tmp_path / "inbox"}"
""")
    metrics_port = free_port()
    env = _env(
        amqp_url,
        ORDERBRIDGE_METRICS_HOST="127.0.0.1",
        ORDERBRIDGE_METRICS_PORT=str(metrics_port),
        ORDERBRIDGE_STATE_URL=f"sqlite:///{tmp_path / 'state.db'}",
    )
    async with service("consumer", "--config", str(config), env=env):
        text = await scrape([f"http://127.0.0.1:{metrics_port}/metrics"])
    check_exposition(text, "consumer")
