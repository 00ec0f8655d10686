"""The alert rules: unit-tested with ``promtool test rules``, each with its runbook.

``deploy/prometheus/alerts.test.yml`` holds the series that make each alert fire
(and beside them series that must not); promtool (Debian package ``prometheus``)
evaluates them. Where promtool is missing those checks skip and say so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "deploy/prometheus/alerts.yml"
ALERT_TESTS = REPO / "deploy/prometheus/alerts.test.yml"
RUNBOOK = "https://orderbridge.dev/README.md#runbook-"
SERVICES = ("ingress", "poller", "apicbase-fetcher", "consumer")

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def github_anchor(heading: str) -> str:
    """The id GitHub gives a heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def readme_anchors() -> set[str]:
    readme = (REPO / "README.md").read_text()
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+ (.+)$", readme, re.MULTILINE)}


@needs_promtool
def test_promtool_unit_tests_of_every_alert_pass() -> None:
    result = subprocess.run(
        ["promtool", "test", "rules", str(ALERT_TESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        ["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing() -> None:
    tested = {
        case["alertname"]
        for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules()} <= tested


def test_every_alert_has_a_summary_a_description_and_its_runbook() -> None:
    anchors = readme_anchors()
    for rule in rules():
        name, annotations = rule["alert"], rule["annotations"]
        assert annotations.get("summary") and annotations.get("description"), name
        assert annotations["runbook_url"] == RUNBOOK + name.lower(), name
        assert f"runbook-{name.lower()}" in anchors, f"README lacks '### Runbook: {name}'"
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name


def test_the_rules_cover_what_an_operator_must_hear_about() -> None:
    by_name: dict[str, list[str]] = {}
    for rule in rules():
        by_name.setdefault(rule["alert"], []).append(rule["expr"])
    assert by_name["OrderbridgeTargetDown"] == ["up == 0"]
    missing = " ".join(by_name["OrderbridgeServiceMissing"])
    for service in SERVICES:
        assert f'absent(orderbridge_build_info{{service="{service}"}})' in missing, service
    assert 'queue="orderbridge.invalid"' in by_name["OrderbridgeInvalidDocuments"][0]
    assert "retry-" in by_name["OrderbridgeRetryQueueGrowing"][0]
    assert {
        "OrderbridgeDeadLetters",
        "OrderbridgeQueueMetricsMissing",
        "OrderbridgePollLagging",
        "OrderbridgePublishFailures",
        "OrderbridgeRouteWithoutConsumer",
        "OrderbridgeIngress5xx",
    } <= by_name.keys()


def test_the_readme_runbook_lists_no_alert_that_does_not_exist() -> None:
    names = {rule["alert"].lower() for rule in rules()}
    sections = {a.removeprefix("runbook-") for a in readme_anchors() if a.startswith("runbook-")}
    assert sections == names
