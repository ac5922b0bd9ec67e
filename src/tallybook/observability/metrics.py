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
JOB_LAST_SUCCESS: Final = gauge(
    "tallybook_job_last_success_timestamp_seconds",
    "When each scheduled job last completed without error (Unix time)",
    ("job",),
)
OUTBOX_DELIVERIES: Final = counter(
    "tallybook_outbox_deliveries_total", "Outbox delivery outcomes", ("topic", "outcome")
)


#: The worker's metrics port (``TALLYBOOK_WORKER_METRICS_PORT``; 0 turns it off): the API
#: serves ``/metrics`` itself; the worker, which runs the jobs, has no HTTP server otherwise.
WORKER_METRICS_PORT_DEFAULT: Final = 9464


def serve_worker_metrics(environ: dict[str, str] | None = None) -> int:
    """Expose this registry on ``/metrics`` from a background thread; returns the port (0:
    off)."""
    import os

    from prometheus_client import start_http_server

    env = os.environ if environ is None else environ
    port = int(env.get("TALLYBOOK_WORKER_METRICS_PORT", str(WORKER_METRICS_PORT_DEFAULT)))
    if port:
        start_http_server(port, registry=REGISTRY)
    return port
