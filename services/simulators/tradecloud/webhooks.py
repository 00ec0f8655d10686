"""Tradecloud's webhook sender, as the platform behaves (api-facts §1.3).

* Each integration (order, order-documents, shipment) has its own URL and
  credentials (Basic or a static Bearer token) and receives the JSON body
  Tradecloud sends (``WebhookTarget``).
* A 2xx marks the event delivered. Any 4xx, and a plain 500, marks it failed
  and is **never retried** (a 500 is taken as a functional error).
* A status above 500 (and a connection failure) is retried with exponential
  backoff, indefinitely as on the real platform (``max_attempts=None``, what
  the command line uses) or until ``max_attempts`` (tests).
* By default deliveries to one target go out one at a time, in the order the
  changes happened, so a retried event holds back the ones behind it. The
  documentation promises no order at all, so the sender can also behave as
  a platform is allowed to (documented mode, ``WebhookSender.documented``):
  ``parallel`` deliveries per target at once, a retried delivery goes back
  to the queue after its backoff so the ones behind it overtake it
  (``overtake``), a little random latency per attempt (``jitter``) and a share
  of deliveries held back for a while (``hold_share``, or ``hold`` on demand).
* Legacy GET targets (api-facts §1.1, removed from the docs in 2024): no
  body and no event name, the document id substituted into an ``{orderId}`` or
  ``{shipmentId}`` placeholder in the URL's path or query.

Every attempt is recorded (``Delivery``) for tests, demos and the control API.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

import aiohttp

from services.simulators.tradecloud.world import MetaPlacement
from shared.logging import get_logger
from shared.schema.codec import dumps_exact

log = get_logger(__name__)

Kind = Literal["order", "order_documents", "shipment"]
Method = Literal["POST", "PUT", "GET"]
PLACEHOLDERS = ("{orderId}", "{shipmentId}")


@dataclass(frozen=True)
class WebhookTarget:
    kind: Kind
    url: str
    username: str | None = None
    password: str | None = None
    token: str | None = None
    single_delivery: bool = False
    method: Method = "POST"
    """``GET``: the legacy webhook, no body, the id in the URL's placeholder."""
    meta: MetaPlacement = "top"
    """Where the message meta goes: beside ``eventName``, inside the event, or both."""
    legacy: bool = False
    """Single-delivery events named ``simpleOrderEvent``, as before 2024-04."""
    parallel: int | None = None
    """Deliveries in flight at once to this URL (None: the sender's setting)."""

    def url_for(self, document_id: str) -> str:
        """The URL called for ``document_id``: a GET target's placeholders filled in."""
        if self.method != "GET":
            return self.url
        url = self.url
        for placeholder in PLACEHOLDERS:
            url = url.replace(placeholder, quote(document_id, safe=""))
        return url

    def headers(self) -> dict[str, str]:
        headers = {} if self.method == "GET" else {"Content-Type": "application/json"}
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
    method: Method = "POST"
    sequence: int = 0
    """Enqueue order (1, 2, …) across the sender: the order the changes happened in."""
    finished: int | None = None
    """Completion order (1, 2, …) across the sender: the order the receiver got them in."""
    held: float = 0.0
    """Seconds it was held back before its first attempt."""

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "url": self.url,
            "event_name": self.event_name,
            "document_id": self.document_id,
            "message_id": self.message_id,
            "attempts": self.attempts,
            "state": self.state,
            "method": self.method,
            "sequence": self.sequence,
            "finished": self.finished,
            "held": self.held,
        }


def should_retry(status: int) -> bool:
    """Tradecloud retries only answers above 500."""
    return status > 500


@dataclass
class _Job:
    delivery: Delivery
    body: bytes
    target: WebhookTarget
    backoff: float


class WebhookSender:
    def __init__(
        self,
        *,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_attempts: int | None = 50,
        timeout: float = 60.0,
        parallel: int = 1,
        overtake: bool = False,
        jitter: float = 0.0,
        hold_share: float = 0.0,
        hold_seconds: float = 1.0,
        seed: int = 1,
    ) -> None:
        self.targets: dict[Kind, WebhookTarget] = {}
        self.deliveries: list[Delivery] = []
        self._initial = initial_backoff
        self._max = max_backoff
        self._max_attempts = max_attempts
        self._timeout = timeout
        self.parallel = parallel
        """Deliveries in flight at once per target URL (1: strictly in order)."""
        self.overtake = overtake
        """A retried delivery waits out its backoff outside the queue: later ones pass it."""
        self.jitter = jitter
        """Up to this many seconds of random latency before each attempt."""
        self.hold_share = hold_share
        """Share of deliveries held back ``hold_seconds`` (±50 %) before their first attempt."""
        self.hold_seconds = hold_seconds
        self._rng = random.Random(seed * 7_340_033 + 5)
        self._holds: dict[Kind, list[float]] = {}
        self._sequence = itertools.count(1)
        self._finished = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[_Job]] = {}
        self._workers: dict[str, list[asyncio.Task[None]]] = {}
        self._timers: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None

    def use_documented(self, seed: int = 1, *, parallel: int = 4) -> None:
        """Deliver as the platform is allowed to: in parallel, out of order (documented mode).

        Four deliveries per target at once, overtaken retries, up to 50 ms of
        latency per attempt and one delivery in twenty held back about a second.
        """
        self.parallel = max(self.parallel, parallel)
        self.overtake = True
        self.jitter = max(self.jitter, 0.05)
        self.hold_share = max(self.hold_share, 0.05)
        self._rng = random.Random(seed * 7_340_033 + 5)

    def configure(self, target: WebhookTarget) -> None:
        self.targets[target.kind] = target

    def hold(self, kind: Kind, seconds: float, count: int = 1) -> None:
        """Hold back the next ``count`` deliveries of ``kind`` ``seconds`` each: later ones pass.

        Whatever the ``parallel`` setting, a held delivery enters its target's
        queue only after ``seconds``, so deliveries enqueued after it go first.
        """
        self._holds.setdefault(kind, []).extend([seconds] * count)

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
        delivery = Delivery(
            kind,
            target.url_for(document_id),
            event_name,
            document_id,
            message_id,
            method=target.method,
            sequence=next(self._sequence),
        )
        self.deliveries.append(delivery)
        queue = self._queues.get(target.url)
        if queue is None:
            queue = self._queues[target.url] = asyncio.Queue()
        workers = self._workers.setdefault(target.url, [])
        while len(workers) < (target.parallel or self.parallel):
            workers.append(asyncio.create_task(self._work(queue)))
        payload = b"" if target.method == "GET" else dumps_exact(body(target))
        job = _Job(delivery, payload, target, self._initial)
        held = self._holds.get(kind)
        if held:
            delivery.held = held.pop(0)
        elif self.hold_share and self._rng.random() < self.hold_share:
            delivery.held = round(self.hold_seconds * self._rng.uniform(0.5, 1.5), 3)
        if delivery.held:
            self._later(queue, job, delivery.held)
        else:
            queue.put_nowait(job)
        return delivery

    def _later(self, queue: asyncio.Queue[_Job], job: _Job, seconds: float) -> None:
        async def put() -> None:
            await asyncio.sleep(seconds)
            queue.put_nowait(job)

        timer = asyncio.create_task(put())
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def idle(self, within: float = 30.0) -> None:
        """Wait until every queued delivery finished (delivered, failed or gave up)."""
        deadline = time.monotonic() + within
        while any(d.state == "pending" for d in self.deliveries):
            if time.monotonic() > deadline:
                raise TimeoutError("webhook deliveries still pending")
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        tasks = [*self._timers, *(w for ws in self._workers.values() for w in ws)]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    async def _work(self, queue: asyncio.Queue[_Job]) -> None:
        while True:
            job = await queue.get()
            while not await self._attempt(job):
                if self.overtake:  # wait outside the queue: the ones behind go ahead
                    self._later(queue, job, job.backoff)
                    job.backoff = min(job.backoff * 2, self._max)
                    break
                await asyncio.sleep(job.backoff)
                job.backoff = min(job.backoff * 2, self._max)

    async def _attempt(self, job: _Job) -> bool:
        """One attempt; True when the delivery is finished (delivered, failed, gave up)."""
        delivery, target = job.delivery, job.target
        if self._session is None:
            self._session = aiohttp.ClientSession()
        if self.jitter:
            await asyncio.sleep(self._rng.uniform(0, self.jitter))
        try:
            async with self._session.request(
                target.method,
                delivery.url,
                data=job.body if target.method != "GET" else None,
                headers=target.headers(),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                await response.read()
                status = response.status
            delivery.attempts.append(status)
            if 200 <= status < 300:
                return self._finish(delivery, "delivered")
            if not should_retry(status):
                log.info(
                    "webhook refused; Tradecloud does not retry",
                    status=status,
                    url=delivery.url,
                    message_id=delivery.message_id,
                )
                return self._finish(delivery, "failed")
        except (aiohttp.ClientError, TimeoutError) as exc:
            delivery.attempts.append(f"{type(exc).__name__}: {exc}"[:200])
        if self._max_attempts is not None and len(delivery.attempts) >= self._max_attempts:
            return self._finish(delivery, "gave_up")
        return False

    def _finish(self, delivery: Delivery, state: Literal["delivered", "failed", "gave_up"]) -> bool:
        delivery.state = state
        delivery.finished = next(self._finished)
        return True
