"""No 2xx without a broker confirm: paused, cut, blocked and stopped brokers.

* A paused TCP connection (``TcpProxy``) swallows the publish and its confirm:
  the request waits for the publish deadline, then answers 503.
* A cut connection answers 503 at once; when the broker is reachable again the
  robust connection comes back and requests are accepted again.
* A private node (``LocalRabbit``, ports 5710-5719) with a memory alarm blocks
  publishers; stopping it makes the broker unreachable. Both → 503; both recover.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.local_rabbit import LocalRabbit, installed
from shared.settings import BrokerSettings
from tests.support.files import fixture_bytes
from tests.support.ingress import BEARER, JSON_CT, EventTap, client, post, serve, test_deps
from tests.support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration

TIMEOUT = 1.0
ORDER = fixture_bytes("tradecloud/order-webhook-proposal.json")


def _order_body() -> bytes:
    """A fresh order (new id) so each request is its own event."""
    return ORDER.replace(b"b7e2c1d0-4f3a-4e8b-9c1d-2a3b4c5d6e7f", str(uuid.uuid4()).encode())


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"guest:guest@127.0.0.1:{port}"))


async def _statuses(session: aiohttp.ClientSession, count: int) -> list[tuple[int, str, float]]:
    async def one() -> tuple[int, str, float]:
        started = time.monotonic()
        status, payload, _ = await post(
            session, "/webhooks/tradecloud/orders", _order_body(), BEARER | JSON_CT
        )
        return status, payload.get("error", ""), time.monotonic() - started

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def _ready(session: aiohttp.ClientSession, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with session.get("/readyz") as response:
            if response.status == 200:
                return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not ready within {within}s")


async def _accepted_again(session: aiohttp.ClientSession, within: float) -> dict[str, Any]:
    """Requests are accepted again (the first ones may still see a reconnecting channel)."""
    deadline = time.monotonic() + within
    while True:
        status, payload, _ = await post(
            session, "/webhooks/tradecloud/orders", _order_body(), BEARER | JSON_CT
        )
        if status == 202:
            return payload
        assert status == 503, payload
        if time.monotonic() > deadline:
            raise AssertionError(f"still {payload} after {within}s")
        await asyncio.sleep(0.2)


# ---------------------------------------------------------------- proxy to the shared broker


@asynccontextmanager
async def via_proxy(
    amqp_url: str, **limits: int
) -> AsyncIterator[tuple[TcpProxy, RabbitPublisher, str]]:
    """Ingress whose broker connection runs through a ``TcpProxy`` the test controls."""
    target = urlsplit(amqp_url)
    proxy = await TcpProxy(target.hostname or "127.0.0.1", target.port or 5672).start()
    settings = BrokerSettings(
        amqp_url=SecretStr(_via(amqp_url, proxy.port)),
        publish_timeout_seconds=TIMEOUT,
        **limits,  # type: ignore[arg-type]
    )
    connection = await connect(settings, name="ingress-tests", wait_seconds=10)
    publisher = await RabbitPublisher.open(connection, settings)
    try:
        async with serve(test_deps(publisher, ready=publisher.not_ready_reason)) as (url, _):
            yield proxy, publisher, url
    finally:
        proxy.resume()
        await publisher.close()
        await connection.close()
        await proxy.cut()


@pytest.fixture
async def proxied(
    amqp_url: str, connection: AbstractRobustConnection
) -> AsyncIterator[tuple[TcpProxy, str]]:
    async with via_proxy(amqp_url) as (proxy, _, url):
        yield proxy, url


async def test_paused_broker_no_2xx_then_503_at_the_deadline(
    proxied: tuple[TcpProxy, str], connection: AbstractRobustConnection
) -> None:
    proxy, url = proxied
    tap = await EventTap.open(connection)
    async with client(url) as session:
        assert (await _statuses(session, 1))[0][0] == 202
        proxy.pause()
        results = await _statuses(session, 8)
        for status, error, elapsed in results:
            assert (status, error) == (503, "publish_timeout")
            assert TIMEOUT * 0.9 <= elapsed < TIMEOUT + 3, elapsed  # waited for the confirm
        # The connection and channel look open (nothing was reset): readiness still knows.
        async with session.get("/readyz") as response:
            assert response.status == 503
            assert "confirmed nothing" in (await response.json())["reason"]
        proxy.resume()
        accepted = await _accepted_again(session, within=10)
        await _ready(session, within=10)  # a confirm arrived again
    # Messages written before the pause ended may reach the broker after all: at-least-once.
    # What matters: the accepted one is there.
    assert accepted["event_id"] in [m.message_id for m in await tap.until(accepted["event_id"])]
    await tap.close()


async def test_cut_broker_503_then_recovery(
    proxied: tuple[TcpProxy, str], connection: AbstractRobustConnection
) -> None:
    proxy, url = proxied
    tap = await EventTap.open(connection)
    async with client(url) as session:
        await proxy.cut()
        results = await _statuses(session, 4)
        for status, error, elapsed in results:
            assert status == 503
            assert error in {"broker_unavailable", "publish_timeout"}
            assert elapsed < TIMEOUT + 3
        async with session.get("/readyz") as response:
            assert response.status == 503
        await proxy.restore()
        await _ready(session, within=20)
        accepted = await _accepted_again(session, within=10)
    published = await tap.until(accepted["event_id"])
    assert published[-1].message_id == accepted["event_id"]
    await tap.close()


async def test_confirms_pipeline_and_the_backlog_is_bounded(
    amqp_url: str, connection: AbstractRobustConnection
) -> None:
    """Publishes wait for confirms concurrently, up to the in-flight limit; a few more
    wait for a slot; the rest are shed at once with 503 instead of queueing in memory."""
    async with (
        via_proxy(amqp_url, publish_max_in_flight=4, publish_max_waiting=2) as (
            proxy,
            publisher,
            url,
        ),
        client(url) as session,
    ):
        proxy.pause()
        requests = asyncio.ensure_future(_statuses(session, 10))
        peak = 0
        while not requests.done():
            peak = max(peak, publisher.in_flight)
            await asyncio.sleep(0.01)
        results = requests.result()
        proxy.resume()
        assert (await _accepted_again(session, within=10))["event_id"]
    assert peak == 4  # four confirms awaited at once, not one at a time
    # 4 awaiting confirms + 2 waiting for a slot time out at their deadline; the
    # other 4 are shed at once. A slot waiter's deadline and the release of a slot
    # by a timed-out publish fall on the same instant, so a waiter reports either.
    shed = [(error, t) for _, error, t in results if t < TIMEOUT / 2]
    assert [error for error, _ in shed] == ["backpressure"] * 4
    late = sorted(error for _, error, t in results if t >= TIMEOUT / 2)
    assert late.count("publish_timeout") >= 4
    assert set(late) <= {"publish_timeout", "backpressure"} and len(late) == 6
    assert {status for status, _, _ in results} == {503}


# ---------------------------------------------------------------- a private node


@pytest.fixture(scope="module")
def rabbit() -> Iterator[LocalRabbit]:
    if not installed():
        pytest.skip("rabbitmq-server is not installed here")
    directory = Path(tempfile.mkdtemp(prefix="orderbridge-ingress-rabbit-", dir="/tmp"))
    node = LocalRabbit(directory, port=5710, name=f"ingress{uuid.uuid4().hex[:6]}")
    node.start()
    yield node
    node.stop()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
async def private_ingress(rabbit: LocalRabbit) -> AsyncIterator[tuple[str, BrokerSettings]]:
    settings = BrokerSettings(amqp_url=SecretStr(rabbit.url), publish_timeout_seconds=TIMEOUT)
    connection = await connect(settings, name="ingress-tests", wait_seconds=20)
    await declare_topology(connection, settings.topology())
    publisher = await RabbitPublisher.open(connection, settings)
    async with serve(test_deps(publisher, ready=publisher.not_ready_reason)) as (url, _):
        yield url, settings
    await publisher.close()
    await connection.close()


async def test_memory_alarm_blocks_publishers_no_2xx_until_it_clears(
    rabbit: LocalRabbit, private_ingress: tuple[str, BrokerSettings]
) -> None:
    url, settings = private_ingress
    probe = await connect(settings, name="ingress-probe", wait_seconds=5)
    tap = await EventTap.open(probe)
    async with client(url) as session:
        assert (await _statuses(session, 1))[0][0] == 202
        rabbit.ctl("set_vm_memory_high_watermark", "0.0000001")
        try:
            results = await _statuses(session, 6)
        finally:
            rabbit.ctl("set_vm_memory_high_watermark", "0.4")
        for status, error, elapsed in results:
            assert (status, error) == (503, "publish_timeout")
            assert elapsed >= TIMEOUT * 0.9  # waited for a confirm that never came
        accepted = await _accepted_again(session, within=15)
    # Once the alarm clears the broker reads what it had blocked (those requests got
    # 503, so their senders retry: at-least-once), then the accepted event.
    assert (await tap.until(accepted["event_id"]))[-1].message_id == accepted["event_id"]
    await tap.close()
    await probe.close()


async def test_stopped_broker_503_then_recovery_after_restart(
    rabbit: LocalRabbit, private_ingress: tuple[str, BrokerSettings]
) -> None:
    url, _ = private_ingress
    async with client(url) as session:
        assert (await _statuses(session, 1))[0][0] == 202
        await asyncio.to_thread(rabbit.stop)
        results = await _statuses(session, 4)
        for status, error, elapsed in results:
            assert status == 503
            assert error in {"broker_unavailable", "publish_timeout"}
            assert elapsed < TIMEOUT + 3
        await asyncio.to_thread(rabbit.start)
        await _ready(session, within=30)
        await _accepted_again(session, within=15)
