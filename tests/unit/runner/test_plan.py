"""What ``orderbridge run`` starts, and how the demo wires the pieces together."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from services.consumers.config import parse_config
from services.runner.__main__ import print_plan
from services.runner.plan import DEMO_ROUTES, DemoPorts, demo_inbox, demo_plan, environment_plan
from services.runner.supervisor import ChildSpec
from shared.errors import ConfigurationError


def test_the_demo_wires_simulators_and_services_with_matching_credentials(tmp_path: Path) -> None:
    plan = demo_plan(
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        workdir=tmp_path,
        inbox=tmp_path / "inbox",
        ports=DemoPorts().shifted(100),
    )
    children = {child.name: child for child in plan.children}
    assert list(children) == [
        "tradecloud-sim",
        "apicbase-sim",
        "ingress",
        "poller",
        "fetcher",
        "consumer",
    ]
    tradecloud = list(children["tradecloud-sim"].argv)
    ingress = children["ingress"].env
    assert "http://127.0.0.1:8180/webhooks/tradecloud/orders" in tradecloud
    user = tradecloud[tradecloud.index("--webhook-username") + 1]
    password = tradecloud[tradecloud.index("--webhook-password") + 1]
    assert (user, password) == (
        ingress["ORDERBRIDGE_TRADECLOUD_WEBHOOK_USERNAME"],
        ingress["ORDERBRIDGE_TRADECLOUD_WEBHOOK_PASSWORD"],
    )
    apicbase = list(children["apicbase-sim"].argv)
    secret = apicbase[apicbase.index("--client-secret") + 1]
    assert ingress["ORDERBRIDGE_APICBASE_WEBHOOK_SECRET"] == secret
    assert children["fetcher"].env["ORDERBRIDGE_APICBASE_CLIENT_SECRET"] == secret
    assert children["poller"].env["ORDERBRIDGE_TRADECLOUD_API_URL"] == "http://127.0.0.1:8190/v2"
    states = {child.env.get("ORDERBRIDGE_STATE_URL") for child in plan.children if child.env}
    assert states == {f"sqlite:///{tmp_path.resolve() / 'state.db'}"}
    assert plan.urls["ERP inbox"] == str((tmp_path / "inbox").resolve())


def test_the_demo_routes_parse_and_cover_orders_and_shipments() -> None:
    config = parse_config(DEMO_ROUTES, fmt="toml", env={"ORDERBRIDGE_ERP_INBOX": "/inbox"})
    bindings = {b for route in config.routes for b in route.bindings}
    assert {"tradecloud.order.#", "apicbase.order.#", "tradecloud.shipment.#"} <= bindings


def test_the_committed_example_routes_parse() -> None:
    text = (Path(__file__).parents[3] / "deploy" / "consumer" / "routes.toml").read_text()
    config = parse_config(text, fmt="toml", env={"ORDERBRIDGE_ERP_INBOX": "/data"})
    assert [route.name for route in config.routes] == [
        "erp-orders",
        "erp-shipments",
        "purchasing-proposals",
    ]


def test_run_without_demo_starts_what_the_environment_configures() -> None:
    plan = environment_plan({"ORDERBRIDGE_CONSUMER_CONFIG": "/etc/routes.toml"})
    assert [child.name for child in plan.children] == ["ingress", "consumer"]
    assert set(plan.skipped) == {"poller", "apicbase-fetcher"}
    full = environment_plan(
        {
            "ORDERBRIDGE_TRADECLOUD_USERNAME": "u",
            "ORDERBRIDGE_TRADECLOUD_ROLE": "buyer",
            "ORDERBRIDGE_APICBASE_CLIENT_ID": "c",
            "ORDERBRIDGE_CONSUMER_CONFIG": "/etc/routes.toml",
        }
    )
    assert [child.name for child in full.children] == [
        "ingress",
        "poller",
        "fetcher",
        "consumer",
    ]
    assert full.skipped == {}


def _demo(env: dict[str, str], tmp_path: Path) -> dict[str, ChildSpec]:
    plan = demo_plan(
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        workdir=tmp_path,
        inbox=tmp_path / "inbox",
        env=env,
    )
    return {child.name: child for child in plan.children}


def _webhook_urls(children: dict[str, ChildSpec]) -> set[str]:
    argv = [*children["tradecloud-sim"].argv, *children["apicbase-sim"].argv]
    return {arg for arg in argv if "/webhooks/" in arg}


@pytest.mark.parametrize(
    ("env", "child", "variable", "expected"),
    [
        # no environment: the demo's defaults
        ({}, "ingress", "ORDERBRIDGE_INGRESS_PORT", "8080"),
        ({}, "poller", "ORDERBRIDGE_METRICS_PORT", "9101"),
        ({}, "fetcher", "ORDERBRIDGE_METRICS_PORT", "9102"),
        ({}, "consumer", "ORDERBRIDGE_METRICS_PORT", "9103"),
        ({}, "poller", "ORDERBRIDGE_POLL_INTERVAL_SECONDS", "15"),
        ({}, "fetcher", "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS", "15"),
        # the environment wins
        ({"ORDERBRIDGE_INGRESS_PORT": "18080"}, "ingress", "ORDERBRIDGE_INGRESS_PORT", "18080"),
        ({"ORDERBRIDGE_METRICS_PORT": "9200"}, "poller", "ORDERBRIDGE_METRICS_PORT", "9200"),
        ({"ORDERBRIDGE_METRICS_PORT": "9200"}, "fetcher", "ORDERBRIDGE_METRICS_PORT", "9201"),
        ({"ORDERBRIDGE_METRICS_PORT": "9200"}, "consumer", "ORDERBRIDGE_METRICS_PORT", "9202"),
        ({"ORDERBRIDGE_METRICS_PORT": "0"}, "consumer", "ORDERBRIDGE_METRICS_PORT", "0"),
        (
            {"ORDERBRIDGE_STATE_URL": "postgresql://u:p@db/ob"},
            "consumer",
            "ORDERBRIDGE_STATE_URL",
            "postgresql://u:p@db/ob",
        ),
        (
            {"ORDERBRIDGE_CONSUMER_CONFIG": "/etc/routes.toml"},
            "consumer",
            "ORDERBRIDGE_CONSUMER_CONFIG",
            "/etc/routes.toml",
        ),
        (
            {"ORDERBRIDGE_POLL_INTERVAL_SECONDS": "60"},
            "poller",
            "ORDERBRIDGE_POLL_INTERVAL_SECONDS",
            "60",
        ),
        (
            {"ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS": "60"},
            "fetcher",
            "ORDERBRIDGE_APICBASE_FETCH_INTERVAL_SECONDS",
            "60",
        ),
        # the wiring between simulators and services stays the demo's
        (
            {"ORDERBRIDGE_TRADECLOUD_API_URL": "https://api.tradecloud1.com/v2"},
            "poller",
            "ORDERBRIDGE_TRADECLOUD_API_URL",
            "http://127.0.0.1:8090/v2",
        ),
    ],
)
def test_the_environment_wins_over_the_demo_defaults(
    env: dict[str, str], child: str, variable: str, expected: str, tmp_path: Path
) -> None:
    assert _demo(env, tmp_path)[child].env[variable] == expected


def test_no_child_gets_an_argument_that_overrides_its_environment(tmp_path: Path) -> None:
    children = _demo({"ORDERBRIDGE_INGRESS_PORT": "18080"}, tmp_path)
    for name in ("ingress", "poller", "fetcher", "consumer"):
        assert "--port" not in children[name].argv and "--host" not in children[name].argv


@pytest.mark.parametrize(
    ("env", "webhook_base"),
    [
        ({}, "http://127.0.0.1:8080/"),
        ({"ORDERBRIDGE_INGRESS_PORT": "18080"}, "http://127.0.0.1:18080/"),
        ({"ORDERBRIDGE_INGRESS_HOST": "0.0.0.0"}, "http://127.0.0.1:8080/"),
        ({"ORDERBRIDGE_INGRESS_HOST": "127.0.0.5"}, "http://127.0.0.5:8080/"),
    ],
)
def test_the_simulators_send_webhooks_where_ingress_listens(
    env: dict[str, str], webhook_base: str, tmp_path: Path
) -> None:
    urls = _webhook_urls(_demo(env, tmp_path))
    assert len(urls) == 3 and all(url.startswith(webhook_base) for url in urls)


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, Path("erp-inbox")),
        (None, {"ORDERBRIDGE_ERP_INBOX": "/srv/erp"}, Path("/srv/erp")),
        (Path("mine"), {"ORDERBRIDGE_ERP_INBOX": "/srv/erp"}, Path("mine")),
        (None, {"ORDERBRIDGE_ERP_INBOX": ""}, Path("erp-inbox")),
    ],
)
def test_the_inbox_is_the_flag_then_the_environment_then_the_default(
    flag: Path | None, env: dict[str, str], expected: Path
) -> None:
    assert demo_inbox(flag, env) == expected


def test_disabled_metrics_are_not_listed_and_ignored_variables_are_named(tmp_path: Path) -> None:
    plan = demo_plan(
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        workdir=tmp_path,
        inbox=tmp_path / "inbox",
        env={"ORDERBRIDGE_METRICS_PORT": "0", "ORDERBRIDGE_TRADECLOUD_API_URL": "https://x/v2"},
    )
    assert not any(name in plan.urls for name in ("poller metrics", "consumer metrics"))
    assert list(plan.ignored) == ["ORDERBRIDGE_TRADECLOUD_API_URL"]


@pytest.mark.parametrize(
    "env",
    [
        {"ORDERBRIDGE_INGRESS_PORT": "http"},
        {"ORDERBRIDGE_INGRESS_PORT": "70000"},
        {"ORDERBRIDGE_METRICS_PORT": "-1"},
    ],
)
def test_a_bad_port_names_the_variable(env: dict[str, str], tmp_path: Path) -> None:
    (name,) = env
    with pytest.raises(ConfigurationError, match=name):
        _demo(env, tmp_path)


def test_the_printed_plan_names_the_variables_the_demo_ignores(tmp_path: Path) -> None:
    plan = demo_plan(
        amqp_url="amqp://guest:guest@127.0.0.1:5672/",
        workdir=tmp_path,
        inbox=tmp_path / "inbox",
        env={"ORDERBRIDGE_APICBASE_API_URL": "https://api.apicbase.com"},
    )
    out = io.StringIO()
    print_plan(plan, out)
    (note,) = [line for line in out.getvalue().splitlines() if "note:" in line]
    assert "ORDERBRIDGE_APICBASE_API_URL" in note and "simulator" in note
