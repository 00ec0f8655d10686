"""The loop every pull service runs per stream: hold the lease, drain, wait, repeat.

Shared by the Tradecloud poller and the Apicbase fetcher, which differ only in
what one drain does. A drain either finishes (its cursor or marks committed)
or raises; this loop turns the error into an outcome label, backs off, and
tries again, so one bad minute upstream or at the broker never kills the
service. Only ``ConfigurationError`` is fatal.

``--once`` mode drains each stream once and reports whether all succeeded
(exit status for cron and tests); loop mode runs until ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from aio_pika.abc import AbstractRobustConnection
from aiohttp import web
from prometheus_client import CollectorRegistry

from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.broker.quarantine import BrokerQuarantine
from shared.broker.topology import DEAD_LETTER_EXCHANGE
from shared.errors import (
    ConfigurationError,
    LeaseLost,
    RetryableError,
    StateUnavailable,
    UpstreamRejected,
    UpstreamUnavailable,
)
from shared.gc_tuning import tune_for_throughput
from shared.logging import configure_logging, get_logger
from shared.metrics import PublisherMetrics, PullMetrics, new_registry
from shared.ops import start_ops_server
from shared.settings import BrokerSettings, LogSettings, StateSettings
from shared.state import open_state_store
from shared.state.lease import LeaseKeeper
from shared.state.port import StateStore

log = get_logger(__name__)

T = TypeVar("T")

ERROR_BACKOFF_SECONDS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass
class PullRuntime:
    """What every pull service works with, opened and closed by ``pull_runtime``."""

    registry: CollectorRegistry
    metrics: PullMetrics
    store: StateStore
    connection: AbstractRobustConnection
    publisher: RabbitPublisher
    quarantine: BrokerQuarantine

    def trouble_counter(self, upstream: str) -> Callable[[str], None]:
        """The API client's ``on_trouble``: counts failed attempts by kind."""
        return lambda kind: self.metrics.upstream_errors.labels(upstream, kind).inc()

    async def serve_ops(self, host: str, port: int) -> web.AppRunner:
        """/healthz, /readyz, /metrics in the background (closed with the runtime)."""
        return await start_ops_server(
            self.registry, self.publisher.not_ready_reason, host=host, port=port
        )


@contextlib.asynccontextmanager
async def pull_runtime(
    service: str, *, source: str, broker: BrokerSettings, state: StateSettings
) -> AsyncIterator[PullRuntime]:
    """State store, broker connection, topology, confirmed publisher and quarantine."""
    registry = new_registry(service)
    store = await open_state_store(
        state.state_url.get_secret_value(), wait_seconds=state.startup_wait_seconds
    )
    try:
        connection = await connect(broker, name=service, wait_seconds=broker.startup_wait_seconds)
        try:
            await declare_topology(connection, broker.topology())
            publisher = await RabbitPublisher.open(
                connection, broker, metrics=PublisherMetrics(registry)
            )
            dead_letters = await RabbitPublisher.open(
                connection, broker, exchange=DEAD_LETTER_EXCHANGE
            )
            yield PullRuntime(
                registry,
                PullMetrics(registry),
                store,
                connection,
                publisher,
                BrokerQuarantine(dead_letters, source=source),
            )
            await publisher.close()
            await dead_letters.close()
        finally:
            await connection.close()
    finally:
        await store.close()


def run_service(service: str, main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    """Run a pull service's ``main``; what stops it at start propagates.

    ``services.cli`` turns a ``ConfigurationError`` (exit 78), refused
    credentials (77) or an unreachable broker or state store (69) into one line.
    """
    configure_logging(LogSettings(), service=service)
    tune_for_throughput()  # here, not in pull_runtime: tests open runtimes in-process
    return asyncio.run(main())


def outcome_of(exc: BaseException) -> str:
    """The ``orderbridge_polls_total`` outcome label of a failed drain."""
    if isinstance(exc, LeaseLost):
        return "lease_lost"
    if isinstance(exc, UpstreamUnavailable | UpstreamRejected):
        return "upstream_error"
    if isinstance(exc, StateUnavailable):
        return "state_error"
    if isinstance(exc, RetryableError):
        return "broker_error"
    return "crashed"


async def until_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """``work``'s result, or None (work cancelled) once ``stop`` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return None


async def keep_pulling(
    stream: str,
    drain_once: Callable[[asyncio.Event], Awaitable[bool]],
    *,
    lease: LeaseKeeper,
    metrics: PullMetrics,
    stop: asyncio.Event,
    interval: float,
    once: bool,
) -> bool:
    """Run ``drain_once(stop)`` under ``lease`` every ``interval`` seconds.

    ``drain_once`` returns True when it drained the backlog (False: stopped
    early). Returns False in ``once`` mode when the drain failed.
    """
    failures = 0
    try:
        while not stop.is_set():
            if not lease.held:
                await until_stopped(lease.acquire(), stop)
                if stop.is_set():
                    break
            try:
                drained = await lease.run_while_held(lambda: drain_once(stop))
            except ConfigurationError:
                raise
            except Exception as exc:
                outcome = outcome_of(exc)
                metrics.polls.labels(stream, outcome).inc()
                log.error("drain failed", stream=stream, outcome=outcome, error=str(exc))
                if outcome == "crashed":
                    log.exception("unexpected error while draining", stream=stream)
                if isinstance(exc, LeaseLost):
                    await lease.release()
                if once:
                    return False
                pause = ERROR_BACKOFF_SECONDS[min(failures, len(ERROR_BACKOFF_SECONDS) - 1)]
                failures += 1
                await _sleep(min(pause, interval), stop)
                continue
            failures = 0
            metrics.polls.labels(stream, "drained" if drained else "stopped").inc()
            if once:
                return drained
            await _sleep(interval, stop)
        return not once  # stopped before a --once drain finished
    finally:
        await lease.release()


async def _sleep(seconds: float, stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
