"""The Grafana dashboard, generated: ``python -m shared.dashboard [--check]``.

Written as data here (not hand-edited JSON) so that panels stay consistent and
a test can check every ``orderbridge_*`` name in it against the metrics the code
registers. Output: ``deploy/grafana/dashboards/orderbridge.json``.

Every panel reads the ``datasource`` template variable (any Prometheus the
Grafana knows, the provisioned one by default); the first row is stat panels
an operator reads at a glance: events in and out per minute, dead letters,
cursor lag, which scrape jobs answer.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

DASHBOARD_PATH = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/orderbridge.json"
DATASOURCE_VARIABLE = "datasource"
DATASOURCE = {"type": "prometheus", "uid": f"${{{DATASOURCE_VARIABLE}}}"}

# (title, unit, [(legend, PromQL)], width); rows of 24 columns, panels 8 high.
Panel = tuple[str, str, list[tuple[str, str]], int]
# (title, unit, [(legend, PromQL)], width, thresholds as [(from value, colour)]); 4 high.
Stat = tuple[str, str, list[tuple[str, str]], int, list[tuple[float | None, str]]]

# RabbitMQ queue names by kind (services/consumers/topology.py, shared/broker/topology.py),
# as regular expressions for rabbitmq_prometheus's per-object ``queue`` label.
QUEUE_KINDS: dict[str, str] = {
    "shard": r"orderbridge\.route\..+\.shard-[0-9]+",
    "retry": r"orderbridge\.route\..+\.retry-.+",
    "dead-letter": r"orderbridge\.route\..+\.dead-letter",
    "invalid": r"orderbridge\.invalid",
    "archive": r"orderbridge\.archive",
}


def _queues(kind: str) -> str:
    """A PromQL label matcher for one queue kind (backslashes doubled inside the string)."""
    escaped = QUEUE_KINDS[kind].replace("\\", "\\\\")
    return f'queue=~"{escaped}"'


GREEN, ORANGE, RED = "green", "orange", "red"
STATS: list[Stat] = [
    (
        "Events in / min (published)",
        "short",
        [("in", "sum(rate(orderbridge_events_published_total[$__rate_interval])) * 60")],
        5,
        [(None, GREEN)],
    ),
    (
        "Events out / min (applied to ERPs)",
        "short",
        [
            (
                "out",
                'sum(rate(orderbridge_consumer_events_total{outcome="applied"}[$__rate_interval])) * 60',
            )
        ],
        5,
        [(None, GREEN)],
    ),
    (
        "Dead letters waiting",
        "short",
        [("dead letters", "sum(max by (route) (orderbridge_consumer_dead_letter_messages))")],
        4,
        [(None, GREEN), (1, RED)],
    ),
    (
        "Cursor lag (oldest stream)",
        "s",
        [("lag", "max(orderbridge_poll_cursor_lag_seconds)")],
        4,
        [(None, GREEN), (900, ORANGE)],
    ),
    (
        "Services up (targets answering, by job)",
        "short",
        [("{{job}}", "sum by (job) (up)")],
        6,
        [(None, RED), (1, GREEN)],
    ),
]

ROWS: list[tuple[str, list[Panel]]] = [
    (
        "Intake",
        [
            (
                "Webhooks by endpoint and outcome",
                "reqps",
                [
                    (
                        "{{endpoint}} {{outcome}}",
                        'sum by (endpoint, outcome) (rate(orderbridge_ingress_requests_total{endpoint!="ops"}[$__rate_interval]))',
                    )
                ],
                12,
            ),
            (
                "Webhook answer time (202 includes the broker confirm)",
                "s",
                [
                    (
                        "p50",
                        "histogram_quantile(0.5, sum by (le) (rate(orderbridge_ingress_request_duration_seconds_bucket[$__rate_interval])))",
                    ),
                    (
                        "p99",
                        "histogram_quantile(0.99, sum by (le) (rate(orderbridge_ingress_request_duration_seconds_bucket[$__rate_interval])))",
                    ),
                ],
                12,
            ),
            (
                "Events published by source, kind and channel",
                "ops",
                [
                    (
                        "{{source}} {{kind}} {{channel}}",
                        "sum by (source, kind, channel) (rate(orderbridge_events_published_total[$__rate_interval]))",
                    )
                ],
                8,
            ),
            (
                "Publish confirm latency",
                "s",
                [
                    (
                        "p50 {{job}}",
                        "histogram_quantile(0.5, sum by (job, le) (rate(orderbridge_publish_confirm_seconds_bucket[$__rate_interval])))",
                    ),
                    (
                        "p99 {{job}}",
                        "histogram_quantile(0.99, sum by (job, le) (rate(orderbridge_publish_confirm_seconds_bucket[$__rate_interval])))",
                    ),
                ],
                8,
            ),
            (
                "Publish failures by reason",
                "ops",
                [
                    (
                        "{{job}} {{reason}}",
                        "sum by (job, reason) (rate(orderbridge_publish_failures_total[$__rate_interval]))",
                    )
                ],
                8,
            ),
        ],
    ),
    (
        "Polling and fetching",
        [
            (
                "Cursor lag by stream",
                "s",
                [
                    ("cursor {{stream}}", "max by (stream) (orderbridge_poll_cursor_lag_seconds)"),
                    (
                        "since last drain {{stream}}",
                        "time() - max by (stream) (orderbridge_poll_last_drained_timestamp_seconds)",
                    ),
                ],
                8,
            ),
            (
                "Polled events and pages",
                "ops",
                [
                    (
                        "events {{stream}}",
                        "sum by (stream) (rate(orderbridge_poll_events_total[$__rate_interval]))",
                    ),
                    (
                        "pages {{stream}}",
                        "sum by (stream) (rate(orderbridge_poll_pages_total[$__rate_interval]))",
                    ),
                    (
                        "refused {{stream}}",
                        "sum by (stream) (rate(orderbridge_poll_quarantined_total[$__rate_interval]))",
                    ),
                ],
                8,
            ),
            (
                "Upstream errors and 429s",
                "ops",
                [
                    (
                        "{{upstream}} {{kind}}",
                        "sum by (upstream, kind) (rate(orderbridge_upstream_errors_total[$__rate_interval]))",
                    ),
                    (
                        "failed drains {{stream}} {{outcome}}",
                        'sum by (stream, outcome) (rate(orderbridge_polls_total{outcome!="drained"}[$__rate_interval]))',
                    ),
                ],
                8,
            ),
        ],
    ),
    (
        "Consumers",
        [
            (
                "Consumer outcomes by route",
                "ops",
                [
                    (
                        "{{route}} {{outcome}}",
                        "sum by (route, outcome) (rate(orderbridge_consumer_events_total[$__rate_interval]))",
                    )
                ],
                12,
            ),
            (
                "Adapter latency by route",
                "s",
                [
                    (
                        "p50 {{route}}",
                        "histogram_quantile(0.5, sum by (route, le) (rate(orderbridge_consumer_adapter_seconds_bucket[$__rate_interval])))",
                    ),
                    (
                        "p99 {{route}}",
                        "histogram_quantile(0.99, sum by (route, le) (rate(orderbridge_consumer_adapter_seconds_bucket[$__rate_interval])))",
                    ),
                ],
                12,
            ),
            (
                "Dead letters by route",
                "short",
                [("{{route}}", "max by (route) (orderbridge_consumer_dead_letter_messages)")],
                8,
            ),
            (
                "Events in flight by route",
                "short",
                [("{{route}}", "sum by (route) (orderbridge_consumer_in_flight)")],
                8,
            ),
        ],
    ),
    (
        "Queues (RabbitMQ)",
        [
            (
                "Messages by queue kind",
                "short",
                [
                    (kind, f"sum(rabbitmq_queue_messages{{{_queues(kind)}}})")
                    for kind in QUEUE_KINDS
                ],
                12,
            ),
            (
                "Shard queues: ready and unacked by queue",
                "short",
                [
                    (
                        "ready {{queue}}",
                        f"sum by (queue) (rabbitmq_queue_messages_ready{{{_queues('shard')}}})",
                    ),
                    (
                        "unacked {{queue}}",
                        f"sum by (queue) (rabbitmq_queue_messages_unacked{{{_queues('shard')}}})",
                    ),
                ],
                12,
            ),
            (
                "Retry queues by queue",
                "short",
                [("{{queue}}", f"sum by (queue) (rabbitmq_queue_messages{{{_queues('retry')}}})")],
                8,
            ),
            (
                "Dead-letter queues by queue",
                "short",
                [
                    (
                        "{{queue}}",
                        f"sum by (queue) (rabbitmq_queue_messages{{{_queues('dead-letter')}}})",
                    )
                ],
                8,
            ),
            (
                "Refused documents (orderbridge.invalid) and the archive stream",
                "short",
                [
                    ("invalid", f"sum(rabbitmq_queue_messages{{{_queues('invalid')}}})"),
                    ("archive", f"sum(rabbitmq_queue_messages{{{_queues('archive')}}})"),
                ],
                8,
            ),
        ],
    ),
]


def _targets(queries: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": expr,
            "legendFormat": legend,
        }
        for i, (legend, expr) in enumerate(queries)
    ]


def _panel(panel_id: int, panel: Panel, x: int, y: int) -> dict[str, Any]:
    title, unit, queries, width = panel
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 8, "w": width, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
        "targets": _targets(queries),
    }


def _stat(panel_id: int, stat: Stat, x: int) -> dict[str, Any]:
    title, unit, queries, width, thresholds = stat
    return {
        "id": panel_id,
        "type": "stat",
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"h": 4, "w": width, "x": x, "y": 0},
        "fieldConfig": {
            "defaults": {
                "unit": unit,
                **({"decimals": 0} if unit == "short" else {}),
                "color": {"mode": "thresholds"},
                "thresholds": {
                    "mode": "absolute",
                    "steps": [{"value": value, "color": colour} for value, colour in thresholds],
                },
            },
            "overrides": [],
        },
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "value_and_name" if len(queries) > 1 or "{{" in queries[0][0] else "value",
            "orientation": "auto",
            "justifyMode": "auto",
        },
        "targets": _targets(queries),
    }


def _templating() -> dict[str, Any]:
    return {
        "list": [
            {
                "name": DATASOURCE_VARIABLE,
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {"text": "Prometheus", "value": "prometheus"},
                "hide": 0,
                "refresh": 1,
                "regex": "",
                "options": [],
            }
        ]
    }


def dashboard() -> dict[str, Any]:
    panels: list[dict[str, Any]] = []
    next_id = 1
    x = 0
    for stat in STATS:
        panels.append(_stat(next_id, stat, x))
        next_id += 1
        x += stat[3]
    y = 4
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
                "panels": [],
            }
        )
        next_id += 1
        y += 1
        x = 0
        for panel in row_panels:
            if x + panel[3] > 24:
                x, y = 0, y + 8
            panels.append(_panel(next_id, panel, x, y))
            next_id += 1
            x += panel[3]
        y += 8
    return {
        "uid": "orderbridge",
        "title": "orderbridge",
        "tags": ["orderbridge"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": _templating(),
        "panels": panels,
    }


def expressions() -> list[str]:
    """Every PromQL expression of the dashboard (for the metric-name cross-check)."""
    stats = [expr for _, _, queries, _, _ in STATS for _, expr in queries]
    return stats + [
        expr for _, panels in ROWS for _, _, queries, _ in panels for _, expr in queries
    ]


def render() -> bytes:
    return orjson.dumps(dashboard(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str]) -> int:
    rendered = render()
    if "--check" in argv:
        if not DASHBOARD_PATH.exists() or DASHBOARD_PATH.read_bytes() != rendered:
            sys.stderr.write(f"{DASHBOARD_PATH} is stale: run python -m shared.dashboard\n")
            return 1
        return 0
    DASHBOARD_PATH.parent.mkdir(parents=True, exist_ok=True)
    DASHBOARD_PATH.write_bytes(rendered)
    sys.stdout.write(f"wrote {DASHBOARD_PATH}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
