"""The legacy GET webhook end to end: ingress + Tradecloud simulator + real RabbitMQ."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
from aio_pika.abc import AbstractIncomingMessage, AbstractRobustConnection

from services.ingress.fetch import TradecloudFetcher
from shared.broker.publisher import RabbitPublisher
from shared.broker.quarantine import REASON_HEADER, BrokerQuarantine
from shared.broker.topology import DEAD_LETTER_EXCHANGE, INVALID_QUEUE
from shared.clients.tradecloud import TradecloudClient
from shared.schema.codec import decode_event
from shared.settings import BrokerSettings
from tests.integration.ingress.test_ingress_process import _env, ingress
from tests.support.ingress import BEARER, TOKEN, EventTap, client, serve, test_deps
from tests.support.simulators import PASSWORD, USERNAME, running_tradecloud

pytestmark = pytest.mark.integration


@asynccontextmanager
async def dead_letter_quarantine(
    connection: AbstractRobustConnection, broker_settings: BrokerSettings
) -> AsyncIterator[BrokerQuarantine]:
    """What the composition root gives ingress: a confirmed publisher to the dead-letter exchange."""
    dead_letters = await RabbitPublisher.open(
        connection, broker_settings, exchange=DEAD_LETTER_EXCHANGE
    )
    try:
        yield BrokerQuarantine(dead_letters, source="tradecloud")
    finally:
        await dead_letters.close()


class InvalidQueue:
    """Reads ``orderbridge.invalid`` of the test vhost, taking only this test's messages.

    Other tests' messages are left unacknowledged and so go back to the queue when
    the channel closes.
    """

    def __init__(self, connection: AbstractRobustConnection) -> None:
        self._connection = connection

    async def take(self, document_id: str, within: float = 10.0) -> AbstractIncomingMessage:
        """The message recording ``document_id``, acknowledged; fails after ``within`` s."""
        channel = await self._connection.channel()
        try:
            queue = await channel.get_queue(INVALID_QUEUE, ensure=False)
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    await asyncio.sleep(0.02)
                    continue
                if _document_id(message) == document_id:
                    await message.ack()
                    return message
            raise AssertionError(f"{document_id} not in {INVALID_QUEUE} within {within}s")
        finally:
            await channel.close()

    async def ids_now(self) -> set[str | None]:
        """The document ids of every message in the queue at this moment (none taken)."""
        channel = await self._connection.channel()
        try:
            queue = await channel.get_queue(INVALID_QUEUE, ensure=False)
            ids: set[str | None] = set()
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                ids.add(_document_id(message))
            return ids
        finally:
            await channel.close()


def _document_id(message: AbstractIncomingMessage) -> str | None:
    try:
        body: Any = orjson.loads(message.body)
    except orjson.JSONDecodeError:
        return None
    return body.get("document_id") if isinstance(body, dict) else None


async def test_get_webhook_fetches_the_whole_order_with_a_bearer_token_and_publishes_it(
    connection: AbstractRobustConnection, publisher: RabbitPublisher
) -> None:
    async with running_tradecloud(seed=4, orders=20, rate_limit=1000) as tradecloud:
        world = tradecloud.simulator.world
        order_id = world.issue_order(lines=3).document_id
        world.advance(order_id, "propose")
        fetcher = TradecloudFetcher(TradecloudClient(tradecloud.client_settings()))
        tap = await EventTap.open(connection, "tradecloud.order.#")
        try:
            async with (
                serve(test_deps(publisher, fetcher=fetcher)) as (base, _),
                client(base) as http,
            ):
                for path in (
                    f"/webhooks/tradecloud/orders/{order_id}",
                    f"/webhooks/tradecloud/orders?orderId={order_id}",
                ):
                    async with http.get(path, headers=BEARER) as response:
                        assert response.status == 202
                        event_id = (await response.json())["event_id"]
                    (message,) = await tap.until(event_id)
                    event = decode_event(message.body)
                    assert (event.channel, event.event_name) == ("webhook", None)
                    assert event.document_id == order_id
                    assert event.version == world.orders[order_id].version
                    assert event.order is not None and event.order.lines_complete
                    assert len(event.order.lines) == 3
        finally:
            await tap.close()
            await fetcher.close()


async def test_get_webhook_answers_503_while_the_tradecloud_api_is_unreachable(
    publisher: RabbitPublisher,
) -> None:
    async with running_tradecloud() as tradecloud:
        settings = tradecloud.client_settings(tradecloud_retry_seconds=0.5)
    fetcher = TradecloudFetcher(TradecloudClient(settings))  # the simulator is gone now
    try:
        async with (
            serve(test_deps(publisher, fetcher=fetcher)) as (base, _),
            client(base) as http,
            http.get("/webhooks/tradecloud/orders/some-order", headers=BEARER) as response,
        ):
            assert response.status == 503
            assert "Retry-After" in response.headers
    finally:
        await fetcher.close()


async def test_get_webhook_for_a_document_tradecloud_does_not_have_is_404_and_quarantined(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
) -> None:
    """The simulator answers 404 to GET /v2/order/{id} for an id it does not know."""
    invalid = InvalidQueue(connection)
    async with (
        running_tradecloud(seed=5, orders=3, rate_limit=1000) as tradecloud,
        dead_letter_quarantine(connection, broker_settings) as quarantine,
    ):
        fetcher = TradecloudFetcher(TradecloudClient(tradecloud.client_settings()))
        tap = await EventTap.open(connection, "tradecloud.#")
        try:
            async with (
                serve(test_deps(publisher, fetcher=fetcher, quarantine=quarantine)) as (base, _),
                client(base) as http,
            ):
                for path, kind in (
                    ("/webhooks/tradecloud/orders/{}", "order"),
                    ("/webhooks/tradecloud/orders?orderId={}", "order"),
                    ("/webhooks/tradecloud/shipments/{}", "shipment"),
                ):
                    missing = f"gone-{uuid.uuid4()}"
                    async with http.get(path.format(missing), headers=BEARER) as response:
                        payload = await response.json()
                        assert response.status == 404, payload
                    assert payload["error"] == "document_not_found"
                    assert missing in payload["message"]
                    message = await invalid.take(missing)
                    assert message.routing_key == f"invalid.tradecloud.{kind}"
                    assert message.headers["kind"] == kind
                    assert message.headers["source"] == "tradecloud"
                    reason = str(message.headers[REASON_HEADER])
                    assert reason.startswith("document_not_found") and missing in reason
                    assert f"GET /v2/{kind}/{missing} answered 404" in reason
                    record = orjson.loads(message.body)
                    assert (record["kind"], record["upstream_status"]) == (kind, 404)
            assert await tap.queue.get(no_ack=True, fail=False) is None  # nothing published
        finally:
            await tap.close()
            await fetcher.close()


async def test_a_wrong_api_base_url_is_502_and_records_nothing(
    connection: AbstractRobustConnection,
    broker_settings: BrokerSettings,
    publisher: RabbitPublisher,
) -> None:
    """The login on a wrong base URL answers 404 too; that must not read as "no such order".

    Otherwise every GET webhook would be refused (4xx: never retried) and lost.
    """
    invalid = InvalidQueue(connection)
    async with (
        running_tradecloud(seed=6, orders=3, rate_limit=1000) as tradecloud,
        dead_letter_quarantine(connection, broker_settings) as quarantine,
    ):
        order_id = next(iter(tradecloud.simulator.world.orders))
        for wrong in (tradecloud.url.removesuffix("/v2"), tradecloud.url + "/order"):
            settings = tradecloud.client_settings(tradecloud_api_url=wrong)
            fetcher = TradecloudFetcher(TradecloudClient(settings))
            try:
                async with (
                    serve(test_deps(publisher, fetcher=fetcher, quarantine=quarantine)) as (
                        base,
                        _,
                    ),
                    client(base) as http,
                    http.get(f"/webhooks/tradecloud/orders/{order_id}", headers=BEARER) as response,
                ):
                    payload = await response.json()
                    assert response.status == 502, payload
                    assert payload["error"] == "upstream_rejected"
                    assert "login" in payload["message"]
                    assert response.headers["Retry-After"]
            finally:
                await fetcher.close()
        # The 502 was answered after any quarantine publish would have been confirmed.
        assert order_id not in await invalid.ids_now()


async def test_the_ingress_process_wires_the_quarantine_and_the_fetch_budget(
    amqp_url: str, connection: AbstractRobustConnection
) -> None:
    """The composition root: the real ``orderbridge ingress`` against the simulator."""
    invalid = InvalidQueue(connection)
    async with running_tradecloud(seed=7, orders=3, rate_limit=1000) as tradecloud:
        env = _env(
            ORDERBRIDGE_AMQP_URL=amqp_url,
            ORDERBRIDGE_TRADECLOUD_WEBHOOK_TOKEN=TOKEN,
            ORDERBRIDGE_TRADECLOUD_API_URL=tradecloud.url,
            ORDERBRIDGE_TRADECLOUD_USERNAME=USERNAME,
            ORDERBRIDGE_TRADECLOUD_PASSWORD=PASSWORD,
            ORDERBRIDGE_INGRESS_FETCH_TIMEOUT_SECONDS="4",
        )
        async with ingress(env=env) as proc:
            await proc.wait_listening()
            (listening,) = [line for line in proc.lines if line.get("event") == "ingress listening"]
            assert listening["get_webhook"] == "enabled"
            assert listening["get_webhook_fetch_timeout_seconds"] == 4.0
            missing = f"gone-{uuid.uuid4()}"
            async with (
                client(proc.url) as http,
                http.get(
                    f"/webhooks/tradecloud/shipments?shipmentId={missing}", headers=BEARER
                ) as response,
            ):
                payload = await response.json()
                assert (response.status, payload["error"]) == (404, "document_not_found"), payload
            message = await invalid.take(missing)
            assert missing in str(message.headers[REASON_HEADER])
