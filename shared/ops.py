"""The operational HTTP endpoints every service serves: /healthz, /readyz, /metrics.

Ingress adds these routes to its own app; the poller, fetcher and consumers run
them on ``ORDERBRIDGE_METRICS_PORT`` with ``start_ops_server``.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], str | None]
"""Returns None when ready, else a short reason shown by /readyz."""


def add_ops_routes(app: web.Application, registry: CollectorRegistry, ready: ReadyCheck) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)


async def start_ops_server(
    registry: CollectorRegistry, ready: ReadyCheck, *, host: str, port: int
) -> web.AppRunner:
    """Serve the ops endpoints in the background; call ``runner.cleanup()`` to stop."""
    app = web.Application()
    add_ops_routes(app, registry, ready)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
