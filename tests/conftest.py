from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from shared.broker.connection import connect, declare_topology
from shared.broker.publisher import RabbitPublisher
from shared.local_rabbit import LocalRabbit, installed
from shared.settings import BrokerSettings
from tests.support.rabbit import private_vhost

_TIERS = {"unit": pytest.mark.unit, "integration": pytest.mark.integration, "e2e": pytest.mark.e2e}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test carries its folder's tier marker, so ``pytest -m unit`` picks a tier."""
    for item in items:
        parts = item.path.parts
        tier = parts[parts.index("tests") + 1] if "tests" in parts else ""
        marker = _TIERS.get(tier)
        if marker is not None and item.get_closest_marker(tier) is None:
            item.add_marker(marker)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    with private_vhost() as url:
        yield url


@pytest.fixture(scope="session")
def stock_amqp_url() -> Iterator[str]:
    """A private RabbitMQ node with no plugins at all: the broker a user already has.

    Debian's ``rabbitmq-server`` and the official image start without the
    consistent-hash exchange; tests of the plain topology run here. One node
    for the whole session (it takes about 5 s to start).
    """
    if not installed():
        pytest.skip("rabbitmq-server is not installed here")
    directory = Path(tempfile.mkdtemp(prefix="orderbridge-stock-rabbit-", dir="/tmp"))
    node = LocalRabbit(directory, port=5697, name=f"stock{uuid.uuid4().hex[:6]}", plugins=())
    node.start()
    yield node.url
    node.stop()
    shutil.rmtree(directory, ignore_errors=True)


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
