"""Helpers for ingress tests: a real server on loopback, credentials, a tap on the exchange."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aiohttp import web

from services.ingress.app import IngressDeps, create_app
from services.ingress.verify import ApicbaseSignature, TradecloudAuth
from shared.broker.publisher import Publisher
from shared.broker.topology import EVENTS_EXCHANGE
from shared.metrics import new_registry
from tests.support.files import fixture

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
TOKEN = "tc-webhook-token-0123456789"
BASIC_USER, BASIC_PASSWORD = "tradecloud", "s3cret-pässword"
SIGNATURES: dict[str, str] = fixture("apicbase/signatures.json")
APICBASE_SECRET = SIGNATURES["key"]

BEARER = {"Authorization": f"Bearer {TOKEN}"}
BASIC = {
    "Authorization": "Basic " + base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
}
JSON_CT = {"Content-Type": "application/json"}


def test_deps(publisher: Publisher, **overrides: Any) -> IngressDeps:
    """Deps with every credential configured, a fixed clock and a fresh registry."""
    deps = IngressDeps(
        publisher=publisher,
        registry=new_registry(),
        tradecloud=TradecloudAuth(
            username=BASIC_USER.encode(), password=BASIC_PASSWORD.encode(), token=TOKEN.encode()
        ),
        apicbase=ApicbaseSignature.of([b"an-older-secret", APICBASE_SECRET.encode()]),
        clock=lambda: NOW,
    )
    return replace(deps, **overrides)


test_deps.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@asynccontextmanager
async def serve(deps: IngressDeps) -> AsyncIterator[tuple[str, web.Application]]:
    """The app on 127.0.0.1 with an ephemeral port, as the service runs it."""
    app = create_app(deps)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", app
    finally:
        await runner.cleanup()


@asynccontextmanager
async def client(base_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url, timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


async def post(
    session: aiohttp.ClientSession,
    path: str,
    body: bytes,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, Any], aiohttp.ClientResponse]:
    async with session.request(method, path, data=body, headers=headers) as response:
        payload = json.loads(await response.read())
        return response.status, payload, response


class EventTap:
    """An exclusive queue bound to ``orderbridge.events`` with ``#``: what was published."""

    def __init__(self, channel: AbstractChannel, queue: AbstractQueue) -> None:
        self.channel = channel
        self.queue = queue

    @classmethod
    async def open(cls, connection: AbstractRobustConnection, pattern: str = "#") -> EventTap:
        channel = await connection.channel()
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(EVENTS_EXCHANGE, pattern)
        return cls(channel, queue)

    async def next(self, within: float = 10.0) -> AbstractIncomingMessage:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            message = await self.queue.get(no_ack=True, fail=False)
            if message is not None:
                return message
            await asyncio.sleep(0.02)
        raise AssertionError(f"nothing arrived on {self.queue.name} within {within}s")

    async def until(self, message_id: str, within: float = 10.0) -> list[AbstractIncomingMessage]:
        """Every message up to and including the one with ``message_id``."""
        seen: list[AbstractIncomingMessage] = []
        while True:
            message = await self.next(within)
            seen.append(message)
            if message.message_id == message_id:
                return seen

    async def close(self) -> None:
        await self.channel.close()
