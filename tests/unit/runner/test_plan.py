"""What ``orderbridge run`` starts, and how the demo wires the pieces together."""

from __future__ import annotations

from pathlib import Path

from services.consumers.config import parse_config
from services.runner.plan import DEMO_ROUTES, DemoPorts, demo_plan, environment_plan


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
