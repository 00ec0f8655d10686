"""Which layout a route takes on the broker a user has (pure: a table)."""

from __future__ import annotations

import pytest

from services.consumers.config import ConsumerConfig, Route
from services.consumers.topology import (
    RouteLayout,
    choose_layout,
    existing_exchange_type,
    mismatch_warning,
    missing_plugin_warning,
    route_topology,
)
from shared.broker.topology import ENABLE_CONSISTENT_HASH
from shared.errors import ConfigurationError


def route(shards: int = 4, name: str = "erp") -> Route:
    raw = {
        "routes": [
            {
                "name": name,
                "bindings": ["tradecloud.order.#"],
                "shards": shards,
                "retry_delays": [5, 30],
                "adapter": {"type": "file", "path": "/inbox"},
            }
        ]
    }
    return ConsumerConfig.model_validate(raw).routes[0]


@pytest.mark.parametrize(
    ("plugin", "shards", "existing", "expected"),
    [
        # a new route: the broker decides
        (True, 4, None, RouteLayout("x-consistent-hash", 4)),
        (True, 1, None, RouteLayout("x-consistent-hash", 1)),
        (False, 4, None, RouteLayout("fanout", 1)),
        (False, 1, None, RouteLayout("fanout", 1)),
        # the exchange exists already: keep what works
        (True, 4, "fanout", RouteLayout("fanout", 1)),  # created before the plugin was on
        (False, 4, "fanout", RouteLayout("fanout", 1)),
        (True, 4, "x-consistent-hash", RouteLayout("x-consistent-hash", 4)),
    ],
)
def test_the_layout_follows_the_broker_and_what_exists(
    plugin: bool, shards: int, existing: str | None, expected: RouteLayout
) -> None:
    assert choose_layout(route(shards), consistent_hash=plugin, existing=existing) == expected


@pytest.mark.parametrize(
    ("existing", "message"),
    [
        ("x-consistent-hash", "no longer has the plugin"),  # the plugin was turned off
        ("topic", "already exists as a topic exchange"),  # made by hand
    ],
)
def test_an_exchange_that_cannot_work_is_a_configuration_error(existing: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:
        choose_layout(route(), consistent_hash=False, existing=existing)
    assert "\n" not in str(raised.value)


def test_both_layouts_keep_every_name() -> None:
    hashed = route_topology(route(), RouteLayout("x-consistent-hash", 4))
    plain = route_topology(route(), RouteLayout("fanout", 1))
    (hash_exchange,) = hashed.exchanges
    (plain_exchange,) = plain.exchanges
    assert hash_exchange.name == plain_exchange.name == "orderbridge.route.erp"
    assert (hash_exchange.type, plain_exchange.type) == ("x-consistent-hash", "fanout")
    assert plain_exchange.arguments == {}
    assert [q.name for q in plain.queues] == [
        "orderbridge.route.erp.shard-0",
        "orderbridge.route.erp.retry-5s",
        "orderbridge.route.erp.retry-30s",
        "orderbridge.route.erp.dead-letter",
    ]
    # the same arguments and bindings: switching layouts never meets a 406 on a queue
    assert all(queue in hashed.queues for queue in plain.queues)
    assert all(binding in hashed.bindings for binding in plain.bindings)
    shard = plain.queues[0]
    assert shard.arguments["x-single-active-consumer"] is True
    retry = plain.queues[1]
    assert retry.arguments["x-dead-letter-exchange"] == "orderbridge.route.erp"
    assert route_topology(route()) == hashed  # the default: what the compose broker runs


@pytest.mark.parametrize(
    ("text", "current"),
    [
        (
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'orderbridge.route.erp'"
            " in vhost '/': received 'x-consistent-hash' but current is 'fanout'",
            "fanout",
        ),
        (
            "(406, \"PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'e' in vhost "
            "'/': received 'fanout' but current is 'x-consistent-hash'\")",
            "x-consistent-hash",
        ),
        (  # RabbitMQ 3.10 after the plugin was disabled: the unknown type quoted twice
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'orderbridge.route.x' "
            "in vhost '/': received 'fanout' but current is ''x-consistent-hash''",
            "x-consistent-hash",
        ),
        ("PRECONDITION_FAILED - inequivalent arg 'durable' for exchange 'e'", None),
    ],
)
def test_the_current_type_is_read_from_the_refusal(text: str, current: str | None) -> None:
    assert existing_exchange_type(text) == current


def test_the_missing_plugin_warning_is_one_line_naming_the_fix_and_the_routes() -> None:
    text = missing_plugin_warning([route(4, "erp"), route(1, "ships")])
    assert "\n" not in text
    assert "rabbitmq_consistent_hash_exchange" in text and ENABLE_CONSISTENT_HASH in text
    assert "erp (4)" in text and "ships" not in text
    assert "one shard" in text
    assert "configured" not in missing_plugin_warning([route(1)])
    assert "\n" not in mismatch_warning(route(4), RouteLayout("fanout", 1))
