import json

import pytest

from shared.broker import definitions
from shared.broker.topology import (
    ARCHIVE_QUEUE,
    EVENTS_EXCHANGE,
    core_topology,
    quorum_queue,
    routing_key,
)


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        (("tradecloud", "order", "Confirmed", "Open"), "tradecloud.order.Confirmed.Open"),
        (("apicbase", "order", "Issued", "Open"), "apicbase.order.Issued.Open"),
        (("tradecloud", "shipment", "Issued", None), "tradecloud.shipment.Issued.unknown"),
        (("tradecloud", "order", "", None), "tradecloud.order.unknown.unknown"),
        (
            ("tradecloud", "order", "Very.Odd *Status#", "Open"),
            "tradecloud.order.Very_Odd_Status_.Open",
        ),
    ],
)
def test_routing_keys_always_have_four_words(
    parts: tuple[str, str, str | None, str | None], key: str
) -> None:
    assert routing_key(*parts) == key
    assert len(routing_key(*parts).split(".")) == 4


def test_archive_stream_keeps_every_event() -> None:
    topology = core_topology()
    archive = next(q for q in topology.queues if q.name == ARCHIVE_QUEUE)
    assert archive.arguments["x-queue-type"] == "stream"
    assert archive.arguments["x-max-age"] == "7D"
    assert archive.arguments["x-max-length-bytes"] == 5_000_000_000
    assert any(b.source == EVENTS_EXCHANGE and b.routing_key == "#" for b in topology.bindings)


def test_quorum_queues_set_the_delivery_limit_explicitly() -> None:
    queue = quorum_queue("orderbridge.route.erp", delivery_limit=4, single_active_consumer=True)
    assert queue.arguments == {
        "x-queue-type": "quorum",
        "x-delivery-limit": 4,
        "x-single-active-consumer": True,
    }


def test_committed_definitions_equal_the_code() -> None:
    committed = json.loads(definitions.DEFINITIONS_PATH.read_text())
    assert committed == definitions.definitions(), "run: python -m shared.broker.definitions"
