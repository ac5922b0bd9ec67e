"""Metering's Prometheus metrics (served on ``/metrics``)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Final

from prometheus_client import Histogram

from tallybook.observability.metrics import LAG_BUCKETS_SECONDS, counter, histogram

EVENTS: Final = counter(
    "tallybook_metering_events_total",
    "Events by outcome: accepted, duplicate, conflict, rejected (late ones also count as late)",
    ("outcome",),
)
INGEST_SECONDS: Final = histogram(
    "tallybook_metering_ingest_seconds",
    "Time to validate, store and roll up one batch, commit included",
    ("path",),
)
ROLLUP_SECONDS: Final = histogram(
    "tallybook_metering_rollup_seconds", "Time to apply one batch's rollup deltas"
)
LAG_SECONDS: Final = histogram(
    "tallybook_metering_lag_seconds",
    "Metering lag: from an accepted event's time to its commit",
    buckets=LAG_BUCKETS_SECONDS,
)
BATCH_EVENTS: Final = histogram(
    "tallybook_metering_batch_events",
    "Events per ingested batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000),
)


def observe_many(metric: Histogram, values: Iterable[float]) -> None:
    """Observe a batch of values with one increment per bucket, not one lock round per value
    (a batch of 1,000 events observes 1,000 lags). Falls back to ``observe`` if the client
    library's internals ever change."""
    bounds = getattr(metric, "_upper_bounds", None)
    buckets = getattr(metric, "_buckets", None)
    total = getattr(metric, "_sum", None)
    if bounds is None or buckets is None or total is None:
        for value in values:
            metric.observe(value)
        return
    counts = [0] * len(bounds)
    value_sum = 0.0
    for value in values:
        counts[bisect.bisect_left(bounds, value)] += 1
        value_sum += value
    for index, count in enumerate(counts):
        if count:
            buckets[index].inc(count)
    total.inc(value_sum)
