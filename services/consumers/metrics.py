"""Consumer metrics: what each route did with each event (labels: route, outcome)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

OUTCOMES = ("applied", "duplicate", "stale", "echo", "filtered", "retried", "dead_lettered")


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "orderbridge_consumer_events_total",
            "Events handled by a route, by outcome "
            "(applied, duplicate, stale, echo, filtered, retried, dead_lettered).",
            ["route", "outcome"],
            registry=registry,
        )
        self.adapter_seconds = Histogram(
            "orderbridge_consumer_adapter_seconds",
            "Time the ERP adapter took to apply (and, if transactional, record) one event.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "orderbridge_consumer_in_flight",
            "Events a route is handling right now.",
            ["route"],
            registry=registry,
        )
        self.dlq_messages = Gauge(
            "orderbridge_consumer_dead_letter_messages",
            "Messages waiting in a route's dead-letter queue.",
            ["route"],
            registry=registry,
        )
