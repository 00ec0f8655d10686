import pytest

from services.consumers.config import parse_config
from services.consumers.topology import route_topology
from shared.errors import ConfigurationError

TOML = """
[[routes]]
name = "erp-confirmed"
bindings = ["tradecloud.order.Confirmed.*", "apicbase.order.#"]
[routes.adapter]
type = "file"
path = "./erp-inbox"
"""

YAML = """
routes:
  - name: erp-http
    bindings: ["*.order.*.Shipped"]
    shards: 2
    retry_delays: [1, 2]
    filter: {kinds: [order], line_process_statuses: [Confirmed]}
    adapter: {type: http, url: "https://erp.example/orders", headers: {Authorization: "Bearer ${ERP_TOKEN}"}}
"""


def test_the_documented_toml_shape_parses_with_defaults() -> None:
    config = parse_config(TOML, fmt="toml")
    (route,) = config.routes
    assert route.name == "erp-confirmed"
    assert route.bindings == ("tradecloud.order.Confirmed.*", "apicbase.order.#")
    assert route.adapter.type == "file"
    assert route.adapter.options() == {"path": "./erp-inbox"}
    assert (route.shards, route.retry_delays, route.skip_echo) == (4, (5.0, 30.0, 300.0), True)


def test_yaml_with_environment_expansion() -> None:
    config = parse_config(YAML, fmt="yaml", env={"ERP_TOKEN": "t0k3n"})
    route = config.route("erp-http")
    assert route.adapter.options()["headers"] == {"Authorization": "Bearer t0k3n"}
    assert route.filter.line_process_statuses == ("Confirmed",)
    with pytest.raises(ConfigurationError, match="ERP_TOKEN"):
        parse_config(YAML, fmt="yaml", env={})
    with pytest.raises(ConfigurationError, match="no route named"):
        config.route("other")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[[routes]]\nname = "Bad Name"\nbindings = ["#"]\n[routes.adapter]\ntype = "file"',
            "name",
        ),
        (
            '[[routes]]\nname = "r"\nbindings = ["a..b"]\n[routes.adapter]\ntype = "file"',
            "topic pattern",
        ),
        ('[[routes]]\nname = "r"\nbindings = []\n[routes.adapter]\ntype = "file"', "bindings"),
        ('[[routes]]\nname = "r"\nbindings = ["#"]', "adapter"),
        (
            '[[routes]]\nname = "r"\nbindings = ["#"]\nshard = 3\n[routes.adapter]\ntype = "file"',
            "shard",
        ),
        ("routes = [", "not valid TOML"),
    ],
)
def test_bad_configs_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_config(text, fmt="toml")


def test_route_topology_shards_by_document_with_single_active_consumers() -> None:
    route = parse_config(YAML, fmt="yaml", env={"ERP_TOKEN": "x"}).routes[0]
    topology = route_topology(route)
    (exchange,) = topology.exchanges
    assert exchange.name == "orderbridge.route.erp-http"
    assert exchange.type == "x-consistent-hash"
    assert exchange.arguments == {"hash-header": "document_id"}
    shards = [q for q in topology.queues if ".shard-" in q.name]
    assert [q.name for q in shards] == [
        "orderbridge.route.erp-http.shard-0",
        "orderbridge.route.erp-http.shard-1",
    ]
    for shard in shards:
        assert shard.arguments["x-queue-type"] == "quorum"
        assert shard.arguments["x-single-active-consumer"] is True
        assert shard.arguments["x-delivery-limit"] == 5
        assert shard.arguments["x-dead-letter-routing-key"] == "erp-http"
    retries = {q.name: q.arguments for q in topology.queues if ".retry-" in q.name}
    assert retries["orderbridge.route.erp-http.retry-1s"]["x-message-ttl"] == 1000
    assert retries["orderbridge.route.erp-http.retry-2s"]["x-dead-letter-exchange"] == exchange.name
    bindings = {(b.source, b.destination, b.routing_key) for b in topology.bindings}
    assert ("orderbridge.events", exchange.name, "*.order.*.Shipped") in bindings
    assert (
        "orderbridge.dead-letter",
        "orderbridge.route.erp-http.dead-letter",
        "erp-http",
    ) in bindings
