"""Prometheus metrics shared by the edges. Domains declare their own metrics in their
packages with the helpers here, so names stay consistent (``tallybook_<area>_<what>_<unit>``)."""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY: Final = CollectorRegistry(auto_describe=True)

LATENCY_BUCKETS_SECONDS: Final = (
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
LAG_BUCKETS_SECONDS: Final = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
    86400.0,
)
DURATION_BUCKETS_SECONDS: Final = (0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


def counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Counter:
    return Counter(name, documentation, labelnames=labels, registry=REGISTRY)


def histogram(
    name: str,
    documentation: str,
    labels: tuple[str, ...] = (),
    buckets: tuple[float, ...] = LATENCY_BUCKETS_SECONDS,
) -> Histogram:
    return Histogram(name, documentation, labelnames=labels, buckets=buckets, registry=REGISTRY)


def gauge(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Gauge:
    return Gauge(name, documentation, labelnames=labels, registry=REGISTRY)


HTTP_REQUESTS: Final = counter(
    "tallybook_http_requests_total",
    "HTTP requests by route and status",
    ("method", "route", "status"),
)
HTTP_REQUEST_SECONDS: Final = histogram(
    "tallybook_http_request_duration_seconds", "HTTP request latency", ("method", "route")
)
JOB_RUN_SECONDS: Final = histogram(
    "tallybook_job_run_duration_seconds",
    "Duration of job runs",
    ("job", "outcome"),
    buckets=DURATION_BUCKETS_SECONDS,
)
OUTBOX_DELIVERIES: Final = counter(
    "tallybook_outbox_deliveries_total", "Outbox delivery outcomes", ("topic", "outcome")
)
