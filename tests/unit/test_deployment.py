"""The deployment files agree with the code: metric names, alert rules, dashboard.

promtool (Debian package ``prometheus``) is installed by ``.ci/services.sh``; where
it is missing, that check skips and says so. The compose file: ``test_compose.py``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.consumers.metrics import ConsumerMetrics
from services.ingress.metrics import IngressMetrics
from shared import dashboard
from shared.metrics import PublisherMetrics, PullMetrics, new_registry

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy/prometheus/alerts.yml"
PROMETHEUS = REPO / "deploy/prometheus/prometheus.yml"
METRIC = re.compile(r"\b(orderbridge_[a-z0-9_]+)")
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
}


def registered() -> set[str]:
    """Every sample name the services' metric classes can expose."""
    registry: CollectorRegistry = new_registry("ingress")
    PublisherMetrics(registry)
    PullMetrics(registry)
    IngressMetrics(registry)
    ConsumerMetrics(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
    return names


def alert_expressions() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_alerts_use_is_registered() -> None:
    known = registered()
    used = {
        name
        for expr in dashboard.expressions() + alert_expressions()
        for name in METRIC.findall(expr)
    }
    assert used, "no orderbridge metric referenced at all?"
    assert used <= known, f"unknown metric names: {sorted(used - known)}"


def test_the_dashboard_covers_what_operators_watch() -> None:
    used = {name for expr in dashboard.expressions() for name in METRIC.findall(expr)}
    for family in (
        "orderbridge_ingress_requests_total",
        "orderbridge_publish_confirm_seconds_bucket",
        "orderbridge_events_published_total",
        "orderbridge_consumer_events_total",
        "orderbridge_consumer_adapter_seconds_bucket",
        "orderbridge_consumer_dead_letter_messages",
        "orderbridge_poll_cursor_lag_seconds",
        "orderbridge_upstream_errors_total",
    ):
        assert family in used, family
    assert any("rabbitmq_queue_messages_ready" in expr for expr in dashboard.expressions())


def test_the_committed_dashboard_is_generated_from_the_code() -> None:
    assert dashboard.DASHBOARD_PATH.read_bytes() == dashboard.render(), (
        "run: python -m shared.dashboard"
    )


def test_the_readme_lists_every_metric_family() -> None:
    readme = (REPO / "README.md").read_text()
    registry = new_registry("ingress")
    PublisherMetrics(registry)
    PullMetrics(registry)
    IngressMetrics(registry)
    ConsumerMetrics(registry)
    for family in registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        assert f"`{name}`" in readme, f"README's metrics table lacks {name}"


def test_the_alert_rules_cover_the_required_conditions() -> None:
    names = {
        rule["alert"]
        for group in yaml.safe_load(ALERTS.read_text())["groups"]
        for rule in group["rules"]
    }
    assert {
        "OrderbridgeDeadLetters",
        "OrderbridgePollLagging",
        "OrderbridgePublishFailures",
        "OrderbridgeRouteWithoutConsumer",
        "OrderbridgeIngress5xx",
    } <= names


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_promtool_accepts_the_rules_and_the_config(tmp_path: Path) -> None:
    rules = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    # The config names the rules by their path inside the container.
    shutil.copy(ALERTS, tmp_path / "alerts.yml")
    config = PROMETHEUS.read_text().replace(
        "/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml")
    )
    (tmp_path / "prometheus.yml").write_text(config)
    checked = subprocess.run(
        ["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_prometheus_scrapes_every_service_and_the_broker() -> None:
    config = yaml.safe_load(PROMETHEUS.read_text())
    targets = {
        t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]
    }
    assert targets == {
        "ingress:9104",
        "poller:9101",
        "apicbase-fetcher:9102",
        "consumer:9103",
        "rabbitmq:15692",
    }
