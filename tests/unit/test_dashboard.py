"""The generated Grafana dashboard's shape: what an operator sees first, from which source."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import dashboard

VARIABLE = "${datasource}"


def committed() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(dashboard.DASHBOARD_PATH.read_text())
    return loaded


def panels() -> list[dict[str, Any]]:
    return [p for p in committed()["panels"] if p["type"] != "row"]


def test_a_prometheus_datasource_variable_is_what_every_panel_and_query_uses() -> None:
    [variable] = committed()["templating"]["list"]
    assert variable["type"] == "datasource" and variable["query"] == "prometheus"
    assert f"${{{variable['name']}}}" == VARIABLE
    for panel in panels():
        assert panel["datasource"] == {"type": "prometheus", "uid": VARIABLE}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == VARIABLE, panel["title"]


def test_the_first_row_is_stat_panels_at_a_glance() -> None:
    stats = [p for p in panels() if p["type"] == "stat"]
    top = min(p["gridPos"]["y"] for p in committed()["panels"])
    first_row = [p for p in committed()["panels"] if p["gridPos"]["y"] == top]
    assert first_row == stats, "the stat panels, and only they, make the first row"
    assert sum(p["gridPos"]["w"] for p in stats) <= 24
    exprs = " ".join(t["expr"] for p in stats for t in p["targets"])
    for needed in (
        "orderbridge_events_published_total",  # events in
        'orderbridge_consumer_events_total{outcome="applied"}',  # events out
        "orderbridge_consumer_dead_letter_messages",
        "orderbridge_poll_cursor_lag_seconds",
        "(up)",
    ):
        assert needed in exprs, needed


def test_queue_depth_is_shown_for_every_queue_kind() -> None:
    [by_kind] = [p for p in panels() if p["title"] == "Messages by queue kind"]
    assert [t["legendFormat"] for t in by_kind["targets"]] == [
        "shard",
        "retry",
        "dead-letter",
        "invalid",
        "archive",
    ]
    assert all("rabbitmq_queue_messages{queue=~" in t["expr"] for t in by_kind["targets"])


def test_panels_do_not_overlap() -> None:
    cells: set[tuple[int, int]] = set()
    for panel in committed()["panels"]:
        pos = panel["gridPos"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells |= mine


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)"
)
def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each expression as a recording rule (Grafana's $__rate_interval as 5m)."""
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": e.replace("$__rate_interval", "5m")}
                    for i, e in enumerate(dashboard.expressions())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
