"""Reconciliation metrics (exported by the process that runs the job: the worker)."""

from __future__ import annotations

from typing import Final

from tallybook.observability.metrics import counter, gauge

DISCREPANCIES: Final = gauge(
    "tallybook_reconciliation_discrepancies",
    "Open reconciliation discrepancies after the latest run, by kind",
    ("kind",),
)
LAST_RUN_TIMESTAMP: Final = gauge(
    "tallybook_reconciliation_last_run_timestamp_seconds",
    "When the latest reconciliation run completed (Unix time)",
)
RUNS: Final = counter("tallybook_reconciliation_runs_total", "Reconciliation runs completed")
