"""Prometheus metrics of invoicing (``/metrics``)."""

from __future__ import annotations

from typing import Final

from tallybook.observability.metrics import DURATION_BUCKETS_SECONDS, counter, histogram

INVOICES_FINALIZED: Final = counter(
    "tallybook_invoicing_invoices_finalized_total", "Invoices finalized, by kind", ("kind",)
)
INVOICE_AMOUNT_MINOR: Final = counter(
    "tallybook_invoicing_invoiced_amount_minor_total",
    "Sum of finalized invoice totals (minor units), by currency",
    ("currency",),
)
INVOICE_FAILURES: Final = counter(
    "tallybook_invoicing_failures_total", "Billing attempts that failed and will retry", ("kind",)
)
CLOSE_SECONDS: Final = histogram(
    "tallybook_invoicing_close_duration_seconds",
    "Duration of one run of the period-close job",
    buckets=DURATION_BUCKETS_SECONDS,
)
