"""Prometheus metrics: conventional names, bounded labels, an explicit registry.

Every metric family orderbridge exposes is created by a class in this module
(or a sibling ``*_metrics`` class in the service that owns it) from a
``CollectorRegistry`` passed in, never the global one: tests build many apps in
one process, and the dashboard/alert cross-check imports these to list names.
Labels are bounded sets (source, kind, channel, outcome, route, stream), never ids.

``new_registry(service)`` is where every service's registry starts, wherever its
``/metrics`` is served: it carries the process and Python (platform, GC)
collectors and ``orderbridge_build_info``, and no ``_created`` series (one per
counter and histogram child, doubling the series count for a value nobody
graphs; ``rate()`` does not need it).
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.schema.models import SCHEMA_VERSION

DISTRIBUTION: Final = "orderbridge"
RUNTIME_COLLECTORS: Final[tuple[Collector, ...]] = (
    PROCESS_COLLECTOR,
    PLATFORM_COLLECTOR,
    GC_COLLECTOR,
)

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


def new_registry(service: str | None = None) -> CollectorRegistry:
    """A service's registry: runtime collectors and build info, no ``_created`` series.

    ``service`` (``ingress``, ``poller``, ``apicbase-fetcher``, ``consumer``) labels
    ``orderbridge_build_info``, so an alert can tell which service stopped
    reporting whatever the scrape jobs are called; ``None`` (tests, benches)
    leaves build info out.
    """
    # prometheus_client decides at exposition time, process-wide; every registry in
    # an orderbridge process is one of these, so switching it off here covers /metrics
    # wherever it is served.
    disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped upstream
    registry = CollectorRegistry(auto_describe=True)
    # The default collectors are stateless readers of /proc, platform and gc; the
    # same instances serve the global registry and ours.
    for collector in RUNTIME_COLLECTORS:
        registry.register(collector)
    if service is not None:
        BuildInfo(registry, service=service)
    return registry


def package_version() -> str:
    """The installed distribution's version (``unknown`` when run from a bare checkout)."""
    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown"


class BuildInfo:
    """``orderbridge_build_info{service, version, schema_version} 1``.

    ``version`` comes from the package metadata, ``schema_version`` is the
    canonical event version this build writes (see "Schema evolution"), so a
    mixed fleet during an upgrade or a schema migration shows in one query.
    """

    def __init__(self, registry: CollectorRegistry, *, service: str) -> None:
        self.info = Gauge(
            "orderbridge_build_info",
            "Always 1; the labels say which build of which service runs.",
            ["service", "version", "schema_version"],
            registry=registry,
        )
        self.info.labels(service, package_version(), str(SCHEMA_VERSION)).set(1)


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
