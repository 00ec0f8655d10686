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


async def test_run_demo_fills_the_erp_inbox_and_stops_cleanly_on_ctrl_c(
    tmp_path: Path, amqp_url: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env["ORDERBRIDGE_AMQP_URL"] = amqp_url
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
        "3100",
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
    text = "".join(output)
    assert "where to look:" in text and "ERP inbox" in text
    assert "Traceback" not in text
