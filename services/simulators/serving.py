"""Small HTTP helpers shared by the simulators: JSON in and out, running a site.

Both simulators serve a control API (``/_control/…``) beside the platform's
own; these helpers keep its handlers short and its error answers uniform
(``{"detail": …}``, as Django REST Framework answers, which Apicbase runs on).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from shared.errors import InvalidPayload
from shared.logging import configure_logging, get_logger
from shared.schema.codec import dumps_exact, loads_exact
from shared.settings import LogSettings
from shared.signals import stop_on_signals

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reply(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON answer; decimals are written exactly."""
    return web.Response(
        body=dumps_exact(value), status=status, content_type="application/json", headers=headers
    )


def problem(status: int, detail: str, **extra: Any) -> web.Response:
    return reply({"detail": detail, **extra}, status=status)


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when empty); 400 for anything else."""
    if not request.can_read_body:
        return {}
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = loads_exact(raw)
    except InvalidPayload as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


@asynccontextmanager
async def serving(app: web.Application, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: an ephemeral port); yields ``http://host:port``."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{bound_host}:{bound_port}"
    finally:
        await runner.cleanup()


async def until_signalled() -> None:
    """Wait for SIGINT or SIGTERM (a server's main loop)."""
    with stop_on_signals(asyncio.Event()) as stop:
        await stop.wait()


async def serve_until_signalled(
    app: web.Application,
    host: str,
    port: int,
    *,
    announce: Callable[[str], None],
    drive: Callable[[asyncio.Event], Coroutine[Any, Any, None]] | None = None,
) -> None:
    """A simulator's main loop: listen, ``announce(base_url)``, drive, stop on a signal."""
    async with serving(app, host, port) as base:
        announce(base)
        stop = asyncio.Event()
        driver = asyncio.create_task(drive(stop)) if drive is not None else None
        try:
            await until_signalled()
        finally:
            stop.set()
            if driver is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await driver


def run_server(main: Callable[[], Coroutine[Any, Any, None]], *, service: str) -> int:
    """A simulator command: log setup, the event loop, exit 2 when the port is taken."""
    configure_logging(LogSettings(), service=service)
    try:
        asyncio.run(main())
    except OSError as exc:
        log.error("cannot listen", reason=str(exc))
        return 2
    return 0
