"""Prometheus metrics: conventional names, bounded labels, an explicit registry.

Every metric family orderbridge exposes is created by a class in this module
(or a sibling ``*_metrics`` class in the service that owns it) from a
``CollectorRegistry`` passed in, never the global one: tests build many apps in
one process, and the dashboard/alert cross-check imports these to list names.
Labels are bounded sets (source, kind, channel, outcome, route, stream), never ids.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

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


class PullMetrics:
    """The pull services (Tradecloud poller, Apicbase fetcher), per ``stream``.

    ``stream`` is a state-store cursor name: ``tradecloud.orders``,
    ``tradecloud.shipments``, ``apicbase.orders``.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.polls = Counter(
            "orderbridge_polls_total",
            "Poll runs (one drain of a stream's backlog), by outcome "
            "(drained, stopped, upstream_error, broker_error, state_error, lease_lost).",
            ["stream", "outcome"],
            registry=registry,
        )
        self.pages = Counter(
            "orderbridge_poll_pages_total",
            "Pages fetched from the upstream API.",
            ["stream"],
            registry=registry,
        )
        self.events = Counter(
            "orderbridge_poll_events_total",
            "Events published (and confirmed) from polled or fetched documents.",
            ["stream"],
            registry=registry,
        )
        self.quarantined = Counter(
            "orderbridge_poll_quarantined_total",
            "Documents the normalizer refused, put in the orderbridge.invalid queue.",
            ["stream"],
            registry=registry,
        )
        self.restarts = Counter(
            "orderbridge_poll_restarts_total",
            "Times a backlog shifted under offset paging and was re-read from offset 0.",
            ["stream"],
            registry=registry,
        )
        self.upstream_errors = Counter(
            "orderbridge_upstream_errors_total",
            "Failed upstream attempts (retried by the client), by kind "
            "(throttled, server_error, timeout, connection).",
            ["upstream", "kind"],
            registry=registry,
        )
        self.cursor = Gauge(
            "orderbridge_poll_cursor_timestamp_seconds",
            "The committed cursor as a Unix time; lag = time() - this.",
            ["stream"],
            registry=registry,
        )
        self.last_drained = Gauge(
            "orderbridge_poll_last_drained_timestamp_seconds",
            "When the stream's backlog was last drained completely.",
            ["stream"],
            registry=registry,
        )
        self.lease_held = Gauge(
            "orderbridge_poll_lease_held",
            "1 while this process holds the stream's lease (is the active replica).",
            ["stream"],
            registry=registry,
        )
        self.lag = _CursorLag(self.cursor, registry)


class _CursorLag:
    """``orderbridge_poll_cursor_lag_seconds``: now minus the cursor, computed at scrape time."""

    def __init__(self, cursor: Gauge, registry: CollectorRegistry) -> None:
        self._cursor = cursor
        registry.register(self)

    def describe(self) -> list[Any]:
        return [self._family()]

    def collect(self) -> list[Any]:
        family = self._family()
        now = time.time()
        for metric in self._cursor.collect():
            for sample in metric.samples:
                family.add_metric([sample.labels["stream"]], max(now - sample.value, 0.0))
        return [family]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "orderbridge_poll_cursor_lag_seconds",
            "Seconds between now and the committed cursor of the stream.",
            labels=["stream"],
        )
