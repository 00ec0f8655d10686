"""What the broker a user already has can do (I/O, one probe per start).

RabbitMQ ships the consistent-hash exchange as a bundled plugin that is off by
default (Debian's ``rabbitmq-server``, the official image without
``enabled_plugins``). Consumers shard a route with it; without it a route must
take the plain topology, and ``orderbridge check`` reports which one applies.
AMQP cannot list exchange types, so the probe declares a throw-away,
auto-deleted exchange of that type on its own channel: the broker answers
``COMMAND_INVALID - unknown exchange type`` (a connection-level error in
RabbitMQ 3.x, a channel error in newer releases) when the plugin is missing.
The probe therefore runs on its own short-lived connection, never on a
service's working one.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator

import aio_pika
from aio_pika.exceptions import AMQPError

# The names live with the (pure) topology so pure modules can quote them.
from shared.broker.topology import CONSISTENT_HASH_PLUGIN, ENABLE_CONSISTENT_HASH

__all__ = ["CONSISTENT_HASH_PLUGIN", "ENABLE_CONSISTENT_HASH", "consistent_hash_available"]


class _DropExpectedClose(logging.Filter):
    """aiormq logs the broker's expected refusal with a traceback; it is the answer here."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not ("unknown exchange type" in text or "cause reader exited" in text)


@contextlib.contextmanager
def _quiet_aiormq() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in ("aiormq.connection", "aio_pika.connection")]
    expected = _DropExpectedClose()
    for logger in loggers:
        logger.addFilter(expected)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(expected)


async def consistent_hash_available(amqp_url: str, *, connect_timeout: float = 10.0) -> bool:
    """True when the broker at ``amqp_url`` knows the ``x-consistent-hash`` exchange type.

    Connection failures (wrong password, unreachable broker) propagate: the
    caller reports those with their own message.
    """
    connection = await aio_pika.connect(
        amqp_url,
        timeout=connect_timeout,
        client_properties={"connection_name": "orderbridge-probe"},
    )
    with _quiet_aiormq():
        return await _declare_probe(connection)


async def _declare_probe(connection: aio_pika.abc.AbstractConnection) -> bool:
    try:
        channel = await connection.channel(publisher_confirms=False)
        name = f"orderbridge.probe.{uuid.uuid4().hex}"
        try:
            exchange = await channel.declare_exchange(
                name, type="x-consistent-hash", durable=False, auto_delete=True
            )
        except AMQPError as exc:
            if "unknown exchange type" in str(exc) or "COMMAND_INVALID" in str(exc):
                return False
            raise
        await exchange.delete()
        return True
    finally:
        if not connection.is_closed:
            await connection.close()
