"""Prometheus metrics: conventional names, bounded labels, an explicit registry.

Every metric family orderbridge exposes is created by a class in this module
(or a sibling ``*_metrics`` class in the service that owns it) from a
``CollectorRegistry`` passed in, never the global one: tests build many apps in
one process, and the dashboard/alert cross-check imports these to list names.
Labels are bounded sets (source, kind, channel, outcome, route, stream), never ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


def new_registry() -> CollectorRegistry:
    return CollectorRegistry(auto_describe=True)


class PublisherMetrics:
    """What the confirmed publisher did: the basis of the 'nothing lost' dashboards."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "orderbridge_events_published_total",
            "Events confirmed by the broker.",
            ["source", "kind", "channel"],
            registry=registry,
        )
        self.failures = Counter(
            "orderbridge_publish_failures_total",
            "Publishes that were not confirmed, by reason.",
            ["reason"],
            registry=registry,
        )
        self.confirm_seconds = Histogram(
            "orderbridge_publish_confirm_seconds",
            "Time from publish to broker confirm.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "orderbridge_publish_in_flight",
            "Publishes awaiting a broker confirm.",
            registry=registry,
        )
