"""Ingestion: the batch pipeline, its SQL, its rollup deltas and its caches."""

from tallybook.metering.ingest.pipeline import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    REJECTED,
    EventOutcome,
    IngestResult,
    ingest_events,
)

__all__ = [
    "ACCEPTED",
    "CONFLICT",
    "DUPLICATE",
    "REJECTED",
    "EventOutcome",
    "IngestResult",
    "ingest_events",
]
