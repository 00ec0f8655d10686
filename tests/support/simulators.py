"""Start the project's simulators on ephemeral loopback ports for tests and benchmarks.

    async with running_tradecloud(orders=200) as tradecloud:
        async with TradecloudClient(tradecloud.client_settings()) as client: ...
        tradecloud.simulator.advance(order_id, "accept")        # Python control API

    async with simulator_process("apicbase", "--orders", "30") as apicbase:
        ...                                                      # apicbase.url, a real process

``running_tradecloud`` yields the simulator object (world, control API) and its
base URL; the server stops when the block ends. The Apicbase simulator's
in-process harness is ``tests.support.apicbase_sim.running_apicbase``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from services.simulators.serving import serving
from services.simulators.tradecloud.app import TradecloudSimulator, create_app
from services.simulators.tradecloud.webhooks import WebhookSender
from services.simulators.tradecloud.world import World
from shared.clients.tradecloud import TradecloudSettings

USERNAME = "integration@buyer.example"
PASSWORD = "secret"


@dataclass
class RunningTradecloud:
    simulator: TradecloudSimulator
    url: str
    """Base URL including ``/v2``."""

    @property
    def control_url(self) -> str:
        return self.url.removesuffix("/v2") + "/_control"

    def client_settings(self, **overrides: Any) -> TradecloudSettings:
        values: dict[str, Any] = {
            "tradecloud_api_url": self.url,
            "tradecloud_username": USERNAME,
            "tradecloud_password": PASSWORD,
            "tradecloud_retry_seconds": 20.0,
            "tradecloud_backoff_initial_seconds": 0.05,
            "tradecloud_backoff_max_seconds": 0.5,
        }
        values.update(overrides)
        return TradecloudSettings(**values)


@asynccontextmanager
async def running_tradecloud(
    *,
    seed: int = 1,
    orders: int = 0,
    rate_limit: float = 10.0,
    access_ttl: float = 3600.0,
    webhook_backoff: float = 0.05,
    world: World | None = None,
) -> AsyncIterator[RunningTradecloud]:
    """A Tradecloud simulator on 127.0.0.1 with ``orders`` generated orders."""
    if world is None:
        world = World(seed=seed)
        if orders:
            world.generate(orders)
    simulator = TradecloudSimulator(
        world=world,
        users={USERNAME: PASSWORD},
        rate_limit=rate_limit,
        access_ttl=access_ttl,
        sender=WebhookSender(initial_backoff=webhook_backoff, max_backoff=1.0),
    )
    async with serving(create_app(simulator), "127.0.0.1", 0) as base:
        yield RunningTradecloud(simulator, base + "/v2")


REPO = Path(__file__).resolve().parents[2]


@dataclass
class SimulatorProcess:
    """``orderbridge simulate …`` running as its own process (what a rehearsal runs)."""

    process: asyncio.subprocess.Process
    url: str = ""
    """Base URL (Tradecloud's includes ``/v2``)."""
    log: list[dict[str, Any]] = field(default_factory=list)

    async def stop(self, within: float = 15.0) -> int:
        """SIGTERM, then the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(within):
            return await self.process.wait()


@asynccontextmanager
async def simulator_process(
    platform: Literal["tradecloud", "apicbase"], *args: str, within: float = 60.0
) -> AsyncIterator[SimulatorProcess]:
    """Start ``python -m services.cli simulate <platform> --port 0 …`` and wait until it listens."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDERBRIDGE_")}
    env.update(ORDERBRIDGE_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "simulate",
        platform,
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        *args,
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    running = SimulatorProcess(process)
    drain: asyncio.Task[None] | None = None
    try:
        async with asyncio.timeout(within):
            assert process.stderr is not None
            while not running.url:
                raw = await process.stderr.readline()
                if not raw:
                    raise AssertionError(f"simulator exited early: {running.log}")
                with suppress(ValueError):
                    line = json.loads(raw)
                    running.log.append(line)
                    if str(line.get("event", "")).endswith("simulator listening"):
                        running.url = str(line["url"])
        drain = asyncio.create_task(_drain(process))
        yield running
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if drain is not None:
            drain.cancel()


async def _drain(process: asyncio.subprocess.Process) -> None:
    """Keep reading the log so a chatty simulator never blocks on a full pipe."""
    assert process.stderr is not None
    while await process.stderr.readline():
        pass
