"""Ingress metrics (the publisher's own, confirm latency included, are ``PublisherMetrics``).

Labels are bounded: ``endpoint`` is a route name from ``ENDPOINTS``, ``outcome``
an error code from ``answers.OUTCOMES``. Children are bound once per endpoint,
so the hot path does no label lookups.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS

ENDPOINTS: Final = (
    "tradecloud_orders",
    "tradecloud_shipments",
    "tradecloud_orders_get",
    "tradecloud_shipments_get",
    "apicbase_orders",
    "ops",
    "unmatched",
)
BODY_BUCKETS: Final = tuple(float(2**n) for n in range(8, 26, 2))  # 256 B .. 16 MiB


@dataclass(frozen=True, slots=True)
class EndpointMetrics:
    duration: Histogram
    body_bytes: Histogram


class IngressMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "orderbridge_ingress_requests_total",
            "Webhook and ops requests answered, by endpoint and outcome.",
            ["endpoint", "outcome"],
            registry=registry,
        )
        duration = Histogram(
            "orderbridge_ingress_request_duration_seconds",
            "Time from request start to answer (a 202 includes the broker confirm).",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        body = Histogram(
            "orderbridge_ingress_request_body_bytes",
            "Size of webhook bodies read.",
            ["endpoint"],
            buckets=BODY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "orderbridge_ingress_requests_in_flight",
            "Webhook requests being handled.",
            registry=registry,
        )
        self.signatures = Counter(
            "orderbridge_ingress_apicbase_signatures_total",
            "Accepted Apicbase signatures by the body form they covered "
            "(raw bytes, or the json.dumps re-serialization fallback).",
            ["form"],
            registry=registry,
        )
        self.coalesced = Counter(
            "orderbridge_ingress_coalesced_total",
            "Duplicate deliveries that joined a publish of the same event already in flight.",
            registry=registry,
        )
        self.endpoints = {
            name: EndpointMetrics(duration.labels(name), body.labels(name)) for name in ENDPOINTS
        }
