from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import unquote, urlsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.settings import BrokerSettings
from tests.support.rabbit import private_vhost


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with private_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def vhost(amqp_url: str) -> str:
    return unquote(urlsplit(amqp_url).path[1:]) or "/"


@pytest.fixture(scope="session")
def broker_settings(amqp_url: str) -> BrokerSettings:
    return BrokerSettings(amqp_url=SecretStr(amqp_url), publish_timeout_seconds=3.0)


@pytest.fixture(scope="session")
async def connection(broker_settings: BrokerSettings) -> AsyncIterator[AbstractRobustConnection]:
    conn = await connect(broker_settings, name="tests", wait_seconds=10)
    await declare_topology(conn, broker_settings.topology())
    yield conn
    await conn.close()


@pytest.fixture
async def publisher(
    connection: AbstractRobustConnection, broker_settings: BrokerSettings
) -> AsyncIterator[RabbitPublisher]:
    """A confirmed publisher on the session's vhost."""
    pub = await RabbitPublisher.open(connection, broker_settings)
    yield pub
    await pub.close()
