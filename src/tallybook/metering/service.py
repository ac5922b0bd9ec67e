"""Metering's public service API. Other domains import this module and nothing deeper.

Every function takes the caller's ``Tx`` (never commits) unless it says ``Database``.

**Meters** (definitions live in ``catalog.meters``)
    ``define_meter(tx, MeterInput) -> Meter``: create a meter or its next version (prefer this
    over ``catalog.meters.create_meter``: it also settles the backfill at once when possible).
    ``get_meter``, ``get_meter_by_key``, ``resolve_meter``, ``list_meters``, ``archive_meter``.

**Ingestion**
    ``ingest_events(tx, raw_events, settings=…) -> IngestResult``: one batch, per-event outcomes.

**Usage** (exact for arbitrary instants, half-open ``[start, end)``)
    ``usage_total(tx, *, meter_id, customer_id, start, end, group_by=False)``
    ``usage_series(tx, *, meter_id, customer_id, start, end, window, group_by=False)``
    ``list_events(tx, *, meter_id, customer_id, start, end, after=None, limit=100)``

**Late events** (invoicing)
    ``mark_invoiced_through(tx, customer_id, instant)`` (before reading the period's usage),
    ``invoiced_through``, ``list_late_events``, ``late_usage_total``, ``late_seq_max``,
    ``mark_late_billed``.

**Dead letters**
    ``list_dead_letters``, ``get_dead_letter``, ``replay_dead_letters``, ``replay_dead_letter``,
    ``discard_dead_letter``.

**Operations**
    ``metering_status(tx)``, ``run_backfills(db, owner=…)``.
"""

from __future__ import annotations

from tallybook.catalog.meters import (
    MeterInput,
    archive_meter,
    get_meter,
    get_meter_by_key,
    list_meters,
    resolve_meter,
)
from tallybook.metering.aggregate import Dims, Window
from tallybook.metering.backfill import backfill_meter, define_meter, run_backfills
from tallybook.metering.deadletters import (
    ReplayResult,
    discard_dead_letter,
    get_dead_letter,
    list_dead_letters,
    replay_dead_letter,
    replay_dead_letters,
)
from tallybook.metering.explain import EventPage, MeteredEvent, list_events
from tallybook.metering.ingest import EventOutcome, IngestResult, ingest_events
from tallybook.metering.late import (
    LateEventRecord,
    invoiced_through,
    late_seq_max,
    late_usage_total,
    list_late_events,
    mark_invoiced_through,
    mark_invoiced_through_many,
    mark_late_billed,
)
from tallybook.metering.settings import MeteringSettings
from tallybook.metering.status import MeteringStatus, metering_status
from tallybook.metering.usage import UsageSeries, UsageWindow, usage_series, usage_total

__all__ = [
    "Dims",
    "EventOutcome",
    "EventPage",
    "IngestResult",
    "LateEventRecord",
    "MeterInput",
    "MeteredEvent",
    "MeteringSettings",
    "MeteringStatus",
    "ReplayResult",
    "UsageSeries",
    "UsageWindow",
    "Window",
    "archive_meter",
    "backfill_meter",
    "define_meter",
    "discard_dead_letter",
    "get_dead_letter",
    "get_meter",
    "get_meter_by_key",
    "ingest_events",
    "invoiced_through",
    "late_seq_max",
    "late_usage_total",
    "list_dead_letters",
    "list_events",
    "list_late_events",
    "list_meters",
    "mark_invoiced_through",
    "mark_invoiced_through_many",
    "mark_late_billed",
    "metering_status",
    "replay_dead_letter",
    "replay_dead_letters",
    "resolve_meter",
    "run_backfills",
    "usage_series",
    "usage_total",
]
