"""``orderbridge dlq …`` and ``orderbridge invalid …`` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from aio_pika.abc import AbstractRobustConnection
from pydantic import SecretStr

from services.consumers import dlq
from services.consumers.config import load_config
from services.consumers.topology import dead_letter_queue
from shared import exit_codes
from shared.broker.connection import connect, declare_topology
from shared.broker.envelope import Envelope, envelope_for
from shared.broker.publisher import RabbitPublisher
from shared.broker.quarantine import quarantine_envelope
from shared.broker.topology import DEAD_LETTER_EXCHANGE, INVALID_QUEUE
from shared.settings import BrokerSettings
from tests.support.cli import cli_env, orderbridge
from tests.support.consumers import running, sqlite_state
from tests.support.events import order_event
from tests.support.rabbit import private_vhost

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROUTES = """
[[routes]]
name = "erp"
bindings = ["tradecloud.#"]
shards = 1
[routes.adapter]
type = "file"
path = "{tmp}/erp"

[[routes]]
name = "purchasing"
bindings = ["tradecloud.#"]
[routes.adapter]
type = "file"
path = "{tmp}/purchasing"
"""


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[AbstractRobustConnection, dict[str, str], str]]:
    """A vhost with one dead letter in route ``erp`` and one quarantined document."""
    with private_vhost("orderbridge-dlq") as url:
        broker = BrokerSettings(amqp_url=SecretStr(url), publish_timeout_seconds=3.0)
        connection = await connect(broker, name="tests", wait_seconds=10)
        await declare_topology(connection, broker.topology())
        routes = tmp_path / "routes.toml"
        routes.write_text(ROUTES.format(tmp=tmp_path))
        async with (
            sqlite_state(tmp_path) as state,
            running(load_config(routes).route("erp"), connection, broker, state),
        ):
            pass  # declares the route's queues
        event = order_event()
        letter = envelope_for(event)
        dead = await RabbitPublisher.open(connection, broker, exchange=DEAD_LETTER_EXCHANGE)
        await dead.send(
            Envelope(
                body=letter.body,
                routing_key="erp",
                message_id=letter.message_id,
                headers={
                    **letter.headers,
                    "x-orderbridge-reason": "permanent",
                    "x-orderbridge-error": "UpstreamRejected: 422",
                    "x-orderbridge-routing-key": letter.routing_key,
                },
            )
        )
        await dead.send(
            quarantine_envelope(
                {"id": "po-1", "price": Decimal("26.10")},
                "lines[0].quantity: not a number",
                source="apicbase",
                kind="order",
            )
        )
        await dead.close()
        env = cli_env(
            ORDERBRIDGE_AMQP_URL=url,
            ORDERBRIDGE_CONSUMER_CONFIG=str(routes),
            ORDERBRIDGE_LOG_FORMAT="console",  # errors as the one text line a person reads
        )
        try:
            yield connection, env, event.event_id
        finally:
            await connection.close()


async def test_dlq_commands(setup: tuple[AbstractRobustConnection, dict[str, str], str]) -> None:
    connection, env, event_id = setup
    unknown = await orderbridge("dlq", "list", "no-such-route", env=env)
    assert unknown.code == exit_codes.USAGE and unknown.stdout == ""
    assert unknown.stderr.strip().splitlines() == [
        "orderbridge dlq list: no route named 'no-such-route' (known routes: erp, purchasing)"
    ]

    listed = await orderbridge("dlq", "list", "erp", "--json", env=env)
    assert listed.code == 0, listed.stderr
    shown = json.loads(listed.stdout)
    assert shown["total"] == 1
    assert [(d["message_id"], d["reason"]) for d in shown["dead_letters"]] == [
        (event_id, "permanent")
    ]
    empty = json.loads((await orderbridge("dlq", "list", "purchasing", "--json", env=env)).stdout)
    assert empty["total"] == 0, "a known route whose queues do not exist yet has none"
    none = await orderbridge("dlq", "replay", "purchasing", "--all", "--json", env=env)
    assert (none.code, json.loads(none.stdout)["replayed"]) == (0, 0), none.stderr
    nothing = await orderbridge("dlq", "show", "purchasing", event_id, env=env)
    assert nothing.code == exit_codes.USAGE, nothing.stderr
    assert "no dead letter of purchasing" in nothing.stderr

    one = await orderbridge("dlq", "show", "erp", event_id, "--json", env=env)
    assert one.code == 0, one.stderr
    (message,) = json.loads(one.stdout)["messages"]
    assert message["headers"]["x-orderbridge-error"] == "UpstreamRejected: 422"
    assert message["body_encoding"] == "json" and message["body"]["event_id"] == event_id
    human = await orderbridge("dlq", "show", "erp", event_id, env=env)
    assert f"message id:  {event_id}" in human.stdout and '"event_id"' in human.stdout
    missing = await orderbridge("dlq", "show", "erp", "nope", env=env)
    assert missing.code == exit_codes.USAGE and "no dead letter of erp" in missing.stderr

    refused = await orderbridge("dlq", "purge", "erp", env=env)
    assert refused.code == exit_codes.ARGUMENTS and "pass --yes" in refused.stderr
    assert await dlq.count(connection, "erp") == 1, "listing and showing remove nothing"
    purged = await orderbridge("dlq", "purge", "erp", "--yes", "--json", env=env)
    assert json.loads(purged.stdout) == {"queue": dead_letter_queue("erp"), "purged": 1}
    assert await dlq.count(connection, "erp") == 0


async def test_invalid_commands(
    setup: tuple[AbstractRobustConnection, dict[str, str], str],
) -> None:
    connection, env, _ = setup
    listed = json.loads((await orderbridge("invalid", "list", "--json", env=env)).stdout)
    assert listed["total"] == 1
    (document,) = listed["documents"]
    assert (document["source"], document["kind"], document["reason"]) == (
        "apicbase",
        "order",
        "lines[0].quantity: not a number",
    )
    shown = await orderbridge("invalid", "show", document["message_id"], "--json", env=env)
    (message,) = json.loads(shown.stdout)["messages"]
    assert '"price":26.10' in shown.stdout, "decimals exactly as quarantined"
    assert message["routing_key"] == "invalid.apicbase.order"
    purged = await orderbridge("invalid", "purge", "--yes", env=env)
    assert purged.stdout.strip() == f"purged 1 quarantined document(s) from {INVALID_QUEUE}"
    assert await dlq.queue_count(connection, INVALID_QUEUE) == 0
