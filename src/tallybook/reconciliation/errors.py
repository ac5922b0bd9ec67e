"""Reconciliation error codes (documented in docs/errors.md)."""

from __future__ import annotations

from enum import StrEnum


class ReconciliationCode(StrEnum):
    KIND_INVALID = "reconciliation_kind_invalid"
    STATUS_INVALID = "reconciliation_status_invalid"
    RUN_IN_PROGRESS = "reconciliation_run_in_progress"
