"""Poison input is answered 4xx, quickly, and publishes nothing (issue 14).

Tradecloud retries every 5xx forever, so a body that can never succeed must
never get a 503: each case here once answered 503 (or froze the event loop).
The publisher builds the real AMQP envelope and encodes its headers as pamqp
does on the wire, so a value that cannot travel fails here as it would on the
broker.
"""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pamqp.encode
import pytest

from shared.broker.envelope import envelope_for
from shared.schema.codec import dumps_exact
from shared.schema.models import CanonicalEvent
from shared.testing import RecordingPublisher
from tests.support.files import fixture
from tests.support.ingress import BEARER, JSON_CT, client, post, serve, test_deps

pytestmark = pytest.mark.unit

ORDER: dict[str, Any] = fixture("tradecloud/order-webhook-proposal.json")
ORDER_PATH = "/webhooks/tradecloud/orders"


class WirePublisher(RecordingPublisher):
    """Records events after building their envelope and encoding its headers as AMQP would."""

    async def publish(self, event: CanonicalEvent) -> None:
        envelope = envelope_for(event)
        pamqp.encode.field_table(envelope.headers)
        pamqp.encode.short_string(envelope.routing_key)
        pamqp.encode.short_string(envelope.message_id)
        await super().publish(event)

    async def publish_many(self, events: Sequence[CanonicalEvent]) -> None:
        for event in events:
            await self.publish(event)


def order_with(**changes: Any) -> bytes:
    body = copy.deepcopy(ORDER)
    body["orderEvent"].update(changes)
    return dumps_exact(body)


def nested(depth: int) -> bytes:
    """An order whose unknown field nests ``depth`` objects (written by hand: encoders stop at 254)."""
    deep = b'{"x":' * depth + b'"deep"' + b"}" * depth
    return order_with(futureField="PLACEHOLDER").replace(b'"PLACEHOLDER"', deep)


CASES: list[tuple[str, bytes, dict[str, str], int, str]] = [
    (
        "nesting 300 deep in an unknown field",
        nested(300),
        BEARER,
        422,
        "body",
    ),
    (
        "nesting 70 deep in an unknown field",
        nested(70),
        BEARER,
        422,
        "body",
    ),
    ("a bare array 5000 deep", b"[" * 5000 + b"]" * 5000, BEARER, 422, "body"),
    (
        "a version of 40 digits",
        order_with(version=int("9" * 40)),
        BEARER,
        422,
        "orderEvent.version",
    ),
    ("a version of 2**63", order_with(version=2**63), BEARER, 422, "orderEvent.version"),
    ("a negative version", order_with(version=-1), BEARER, 422, "orderEvent.version"),
    (
        "a 100,000-character order id",
        order_with(orderId="o" * 100_000),
        BEARER,
        422,
        "orderEvent.orderId",
    ),
    (
        "a 300-character process status",
        order_with(status={"processStatus": "x" * 300}),
        BEARER,
        422,
        "orderEvent.status.processStatus",
    ),
]


@pytest.mark.parametrize(
    ("body", "headers", "status", "field"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_poison_input_is_refused_with_the_field_named(
    body: bytes, headers: dict[str, str], status: int, field: str
) -> None:
    publisher = WirePublisher()
    async with serve(test_deps(publisher)) as (url, _), client(url) as session:
        answer, payload, _ = await post(session, ORDER_PATH, body, {**JSON_CT, **headers})
    assert (answer, payload.get("path") or "") == (status, field), payload
    assert publisher.events == []


async def test_a_bearer_token_that_is_not_utf8_is_refused_401() -> None:
    """Raw header bytes 0xFF 0xFE (aiohttp's client would not send them, so a socket does)."""
    body = order_with()
    async with serve(test_deps(WirePublisher())) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST " + ORDER_PATH.encode() + b" HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer \xff\xfe\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
    assert status_line.split()[1] == b"401", status_line


async def test_a_well_formed_order_still_passes_through_the_wire_publisher() -> None:
    publisher = WirePublisher()
    async with serve(test_deps(publisher)) as (url, _), client(url) as session:
        answer, payload, _ = await post(session, ORDER_PATH, order_with(), {**JSON_CT, **BEARER})
    assert answer == 202, payload
    assert len(publisher.events) == 1


async def test_a_huge_exponent_is_refused_at_once_while_health_answers() -> None:
    """``"version": 1e1000000`` once froze the event loop for 34 s converting it to an int."""
    body = order_with(version="HUGE").replace(b'"HUGE"', b"1e1000000")
    publisher = WirePublisher()
    async with serve(test_deps(publisher)) as (url, _), client(url) as session:
        started = time.perf_counter()
        (answer, payload, _), (health, _, _) = await asyncio.gather(
            post(session, ORDER_PATH, body, {**JSON_CT, **BEARER}),
            post(session, "/healthz", b"", method="GET"),
        )
        elapsed = time.perf_counter() - started
    assert (answer, payload["path"], health) == (422, "orderEvent.version", 200)
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert publisher.events == []


async def test_a_client_that_aborts_mid_body_is_a_client_outcome() -> None:
    """Counted as ``client_disconnected`` (not ``internal_error``, which feeds the 5xx alert)."""
    publisher = WirePublisher()
    deps = test_deps(publisher)
    async with serve(deps) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        _reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST "
            + ORDER_PATH.encode()
            + b" HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {BEARER['Authorization']}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"orderEvent":'
        )
        await writer.drain()
        writer.close()

        def counted(outcome: str) -> float:
            value = deps.registry.get_sample_value(
                "orderbridge_ingress_requests_total",
                {"endpoint": "tradecloud_orders", "outcome": outcome},
            )
            return value or 0.0

        deadline = asyncio.get_running_loop().time() + 10
        while counted("client_disconnected") == 0:
            assert asyncio.get_running_loop().time() < deadline, "never counted"
            await asyncio.sleep(0.02)
        assert counted("internal_error") == 0
    assert publisher.events == []


async def test_a_body_that_trickles_past_the_timeout_gets_408_and_the_connection_closes() -> None:
    """A slow client cannot hold a connection (and a request slot) open forever."""
    publisher = WirePublisher()
    deps = replace(test_deps(publisher), body_timeout_seconds=0.3)
    async with serve(deps) as (url, _):
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(
            b"POST "
            + ORDER_PATH.encode()
            + b" HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: {BEARER['Authorization']}\r\n".encode()
            + b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"orderEvent":'
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        length = int(re.search(rb"(?i)content-length: *(\d+)", head)[1])  # type: ignore[index]
        body = await asyncio.wait_for(reader.readexactly(length), 10)
        writer.close()
    assert head.split()[1] == b"408", head
    assert re.search(rb"(?i)\r\nconnection: *close\r\n", head), head  # no keep-alive after it
    assert b'"body_timeout"' in body
    assert publisher.events == []
