"""The plugin probe against a stock broker and against the shared test broker."""

from __future__ import annotations

import aio_pika
import pytest

from shared.broker.capabilities import consistent_hash_available

pytestmark = pytest.mark.integration


async def test_a_stock_broker_has_no_consistent_hash_exchange(stock_amqp_url: str) -> None:
    assert await consistent_hash_available(stock_amqp_url) is False
    # the probe used its own connection: a working connection is unaffected
    connection = await aio_pika.connect(stock_amqp_url)
    channel = await connection.channel()
    await channel.declare_exchange("after-probe", type="fanout", auto_delete=True)
    await connection.close()


async def test_the_test_broker_has_the_plugin(amqp_url: str) -> None:
    assert await consistent_hash_available(amqp_url) is True


async def test_a_wrong_password_is_not_mistaken_for_a_missing_plugin(amqp_url: str) -> None:
    wrong = amqp_url.replace("guest:guest", "guest:wrong", 1)
    assert wrong != amqp_url
    with pytest.raises(aio_pika.exceptions.AMQPError):
        await consistent_hash_available(wrong)
