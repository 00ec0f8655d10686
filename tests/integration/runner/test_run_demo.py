"""``orderbridge run --demo`` as a user runs it: one process, every service, an inbox filling up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.timeout(150)


async def run_demo_until_files(tmp_path: Path, env: dict[str, str], *, port_offset: int) -> str:
    """Run the demo as a user does until the inbox holds files of both platforms, then
    Ctrl-C it; returns everything it printed."""
    inbox = tmp_path / "inbox"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "run",
        "--demo",
        "--workdir",
        str(tmp_path / "work"),
        "--inbox",
        str(inbox),
        "--port-offset",
        str(port_offset),
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert process.stdout is not None
    output: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            output.append(line.decode(errors="replace"))

    reader = asyncio.ensure_future(read())
    try:
        deadline = time.monotonic() + 90
        while True:
            files = [p.name for p in inbox.rglob("*.json")]
            sources = {name.split("--")[1] for name in files if name.count("--") >= 2}
            if {"tradecloud", "apicbase"} <= sources:
                break
            assert process.returncode is None, "".join(output[-40:])
            assert time.monotonic() < deadline, "".join(output[-60:])
            await asyncio.sleep(0.5)
        children = psutil.Process(process.pid).children(recursive=True)
        assert len(children) >= 6
        process.send_signal(signal.SIGINT)
        async with asyncio.timeout(60):
            status = await process.wait()
        assert status == 0, "".join(output[-40:])
        await reader
        _, alive = psutil.wait_procs(children, timeout=5)
        assert alive == [], f"children left running: {alive}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return "".join(output)


def clean_environment(amqp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env["ORDERBRIDGE_AMQP_URL"] = amqp_url
    return env


async def test_run_demo_fills_the_erp_inbox_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, amqp_url: str
) -> None:
    text = await run_demo_until_files(tmp_path, clean_environment(amqp_url), port_offset=3100)
    assert "where to look:" in text and "ERP inbox" in text
    assert "Traceback" not in text
    assert "no consistent-hash exchange" not in text


async def test_run_demo_delivers_on_a_stock_broker_and_honours_the_environment(
    tmp_path: Path, stock_amqp_url: str
) -> None:
    """The issue's user: RabbitMQ from the Debian package, no plugins, their own settings."""
    env = clean_environment(stock_amqp_url)
    env["ORDERBRIDGE_INGRESS_PORT"] = "11333"  # the simulators must follow it
    env["ORDERBRIDGE_METRICS_PORT"] = "12340"
    text = await run_demo_until_files(tmp_path, env, port_offset=3200)
    assert "http://127.0.0.1:11333/webhooks/tradecloud/orders" in text
    assert "http://127.0.0.1:12342/metrics" in text  # consumer: base + 2
    warnings = [line for line in text.splitlines() if "no consistent-hash exchange" in line]
    assert len(warnings) == 1, text[-4000:]
    assert "rabbitmq-plugins enable rabbitmq_consistent_hash_exchange" in warnings[0]
    assert "demo-orders (2)" in warnings[0]
    assert "Traceback" not in text and "COMMAND_INVALID" not in text
    assert "exited with code" not in text, text[-4000:]  # nothing crash-looped
