"""Start the Apicbase simulator on an ephemeral loopback port for tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from services.simulators.apicbase.app import ApicbaseSimulator, create_app
from services.simulators.apicbase.orders import OrderBook, OrderGenerator
from shared.clients.apicbase import ApicbaseSettings

CLIENT_ID = "orderbridge"
CLIENT_SECRET = "test-client-secret"
REFRESH_TOKEN = "seed-refresh-token"


@dataclass
class RunningApicbase:
    simulator: ApicbaseSimulator
    url: str
    """Base URL, e.g. ``http://127.0.0.1:41234`` (the API lives under ``/api/v2``)."""

    def client_settings(self, **overrides: Any) -> ApicbaseSettings:
        """Settings for ``ApicbaseClient`` against this simulator, with fast retries."""
        values: dict[str, Any] = {
            "apicbase_api_url": self.url,
            "apicbase_client_id": CLIENT_ID,
            "apicbase_client_secret": CLIENT_SECRET,
            "apicbase_refresh_token": REFRESH_TOKEN,
            "apicbase_retry_seconds": 20.0,
            "apicbase_backoff_initial_seconds": 0.05,
            "apicbase_backoff_max_seconds": 0.5,
            "apicbase_rate_limit": self.simulator.rate_limit,
            "apicbase_rate_period_seconds": self.simulator.rate_window,
        }
        values.update(overrides)
        return ApicbaseSettings(**values)


@asynccontextmanager
async def running_apicbase(
    *,
    seed: int = 1,
    orders: int = 0,
    rate_limit: int = 100_000,
    rate_window: float = 60.0,
    access_ttl: float = 7 * 24 * 3600.0,
    rotate_refresh_tokens: bool = True,
    simulator: ApicbaseSimulator | None = None,
) -> AsyncIterator[RunningApicbase]:
    """An Apicbase simulator on 127.0.0.1 with ``orders`` orders of seeded history.

    The client ``CLIENT_ID``/``CLIENT_SECRET`` is registered and ``REFRESH_TOKEN``
    is accepted, as if generated in the Apicbase UI. The rate limit is lifted
    unless a test asks for one.
    """
    if simulator is None:
        book = OrderBook(OrderGenerator(seed))
        if orders:
            book.generate_history(orders)
        simulator = ApicbaseSimulator(
            book=book,
            clients={CLIENT_ID: CLIENT_SECRET},
            access_ttl=access_ttl,
            rotate_refresh_tokens=rotate_refresh_tokens,
            rate_limit=rate_limit,
            rate_window=rate_window,
        )
        simulator.add_refresh_token(REFRESH_TOKEN)
    runner = web.AppRunner(create_app(simulator), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield RunningApicbase(simulator, f"http://127.0.0.1:{port}")
    finally:
        await runner.cleanup()
