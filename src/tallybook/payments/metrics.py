"""Payments metrics (added by the observability work: payment outcomes and inbox lag)."""

from __future__ import annotations

from typing import Final

from tallybook.observability.metrics import LAG_BUCKETS_SECONDS, counter, histogram

PAYMENT_STATES: Final = counter(
    "tallybook_payments_payments_total",
    "Payment attempts reaching a state (succeeded, failed, requires_action, canceled…)",
    ("provider", "state"),
)
INBOX_LAG_SECONDS: Final = histogram(
    "tallybook_payments_inbox_lag_seconds",
    "From receiving a provider webhook to processing it",
    buckets=LAG_BUCKETS_SECONDS,
)
