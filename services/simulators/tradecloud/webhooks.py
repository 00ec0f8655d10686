"""Tradecloud's webhook sender, as the platform behaves (api-facts §1.3).

* Each integration (order, order-documents, shipment) has its own URL and
  credentials (Basic or a static Bearer token) and receives the JSON body
  Tradecloud sends (``WebhookTarget``).
* A 2xx marks the event delivered. Any 4xx, and a plain 500, marks it failed
  and is **never retried** (a 500 is taken as a functional error).
* A status above 500 (and a connection failure) is retried with exponential
  backoff, indefinitely as on the real platform (``max_attempts=None``, what
  the command line uses) or until ``max_attempts`` (tests).
* Deliveries to one target go out one at a time, in the order the changes
  happened, so a retried event holds back the ones behind it.

Every attempt is recorded (``Delivery``) for tests, demos and the control API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp

from services.simulators.tradecloud.world import MetaPlacement
from shared.logging import get_logger
from shared.schema.codec import dumps_exact

log = get_logger(__name__)

Kind = Literal["order", "order_documents", "shipment"]


@dataclass(frozen=True)
class WebhookTarget:
    kind: Kind
    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    single_delivery: bool = False
    method: Literal["POST", "PUT"] = "POST"
    meta: MetaPlacement = "top"
    """Where the message meta goes: beside ``eventName``, inside the event, or both."""
    legacy: bool = False
    """Single-delivery events named ``simpleOrderEvent``, as before 2024-04."""

    def headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        elif self.username is not None:
            basic = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        return headers


@dataclass
class Delivery:
    """One event sent to one target, with every attempt's outcome."""

    kind: Kind
    url: str
    event_name: str
    document_id: str
    message_id: str
    attempts: list[int | str] = field(default_factory=list)
    """HTTP status per attempt, or the error text of a failed connection."""
    state: Literal["pending", "delivered", "failed", "gave_up"] = "pending"

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "event_name": self.event_name,
            "document_id": self.document_id,
            "message_id": self.message_id,
            "attempts": self.attempts,
            "state": self.state,
        }


def should_retry(status: int) -> bool:
    """Tradecloud retries only answers above 500."""
    return status > 500


class WebhookSender:
    def __init__(
        self,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_attempts: int | None = 50,
        timeout: float = 60.0,
    ) -> None:
        self.targets: dict[Kind, WebhookTarget] = {}
        self.deliveries: list[Delivery] = []
        self._initial = initial_backoff
        self._max = max_backoff
        self._max_attempts = max_attempts
        self._timeout = timeout
        self._queues: dict[str, asyncio.Queue[tuple[Delivery, bytes, WebhookTarget]]] = {}
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    def configure(self, target: WebhookTarget) -> None:
        self.targets[target.kind] = target

    def enqueue(
        self,
        kind: Kind,
        event_name: str,
        document_id: str,
        message_id: str,
        body: Callable[[WebhookTarget], dict[str, Any]],
    ) -> Delivery | None:
        """Queue one event for the target of ``kind`` (None when none is configured)."""
        target = self.targets.get(kind)
        if target is None:
            return None
        delivery = Delivery(kind, target.url, event_name, document_id, message_id)
        self.deliveries.append(delivery)
        queue = self._queues.get(target.url)
        if queue is None:
            queue = self._queues[target.url] = asyncio.Queue()
            self._workers[target.url] = asyncio.create_task(self._work(queue))
        queue.put_nowait((delivery, dumps_exact(body(target)), target))
        return delivery

    async def idle(self, within: float = 30.0) -> None:
        """Wait until every queued delivery finished (delivered, failed or gave up)."""
        deadline = time.monotonic() + within
        while any(d.state == "pending" for d in self.deliveries):
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still pending")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        for worker in self._workers.values():
            worker.cancel()
        for worker in self._workers.values():
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        if self._session is not None:
            await self._session.close()

    async def _work(self, queue: asyncio.Queue[tuple[Delivery, bytes, WebhookTarget]]) -> None:
        while True:
            delivery, body, target = await queue.get()
            await self._deliver(delivery, body, target)

    async def _deliver(self, delivery: Delivery, body: bytes, target: WebhookTarget) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        backoff = self._initial
        while True:
            try:
                async with self._session.request(
                    target.method,
                    target.url,
                    data=body,
                    headers=target.headers(),
                    timeout=aiohttp.ClientTimeout(total=self._timeout),
                ) as response:
                    await response.read()
                    status = response.status
                delivery.attempts.append(status)
                if 200 <= status < 300:
                    delivery.state = "delivered"
                    return
                if not should_retry(status):
                    delivery.state = "failed"
                    log.info(
                        "webhook refused; Tradecloud does not retry",
                        status=status,
                        url=target.url,
                        message_id=delivery.message_id,
                    )
                    return
            except (aiohttp.ClientError, TimeoutError) as exc:
                delivery.attempts.append(f"{type(exc).__name__}: {exc}"[:200])
            if self._max_attempts is not None and len(delivery.attempts) >= self._max_attempts:
                delivery.state = "gave_up"
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max)
