"""The legacy GET webhook end to end: ingress + Tradecloud simulator + real RabbitMQ."""

from __future__ import annotations

import pytest
from aio_pika.abc import AbstractRobustConnection

from services.ingress.fetch import TradecloudFetcher
from shared.broker.publisher import RabbitPublisher
from shared.clients.tradecloud import TradecloudClient
from shared.schema.codec import decode_event
from tests.support.ingress import BEARER, EventTap, client, serve, test_deps
from tests.support.simulators import running_tradecloud

pytestmark = pytest.mark.integration


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
