"""The operational HTTP endpoints every service serves: /healthz, /readyz, /metrics.

Every service runs them on ``ORDERBRIDGE_METRICS_PORT`` with ``start_ops_server``.
Ingress also answers /healthz and /readyz on its webhook port (load balancers
probe the port they route to) but never /metrics: the webhook port is public,
the metrics port is for Prometheus on the internal network.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

ReadyCheck = Callable[[], str | None]
"""Returns None when ready, else a short reason shown by /readyz."""


def add_ops_routes(app: web.Application, registry: CollectorRegistry, ready: ReadyCheck) -> None:
    add_health_routes(app, ready)
    add_metrics_route(app, registry)


def add_health_routes(app: web.Application, ready: ReadyCheck) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        reason = ready()
        if reason is None:
            return web.json_response({"status": "ready"})
        return web.json_response({"status": "not ready", "reason": reason}, status=503)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)


def add_metrics_route(app: web.Application, registry: CollectorRegistry) -> None:
    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

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
