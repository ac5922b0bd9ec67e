"""Anomaly page from payments: collections whose attempts failed (retrying on the dunning
schedule, or exhausted), with a manual retry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from tallybook.console import charts, tables
from tallybook.console.anomalies import BADGE_COUNT_MAX, AnomalyPage
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.payments import service as payments
from tallybook.payments.domain import CollectionStatus
from tallybook.payments.models import Collection

if TYPE_CHECKING:
    from tallybook.console.web import ConsoleContext

#: Per status, the page sorts and pages this many of the newest collections.
COLLECTIONS_SHOWN_MAX: Final = 100
FAILING: Final = (CollectionStatus.RETRYING, CollectionStatus.EXHAUSTED)
CHART_DAYS: Final = 30

COLUMNS: Final[list[tables.Column[Collection]]] = [
    tables.Column("failed", "First failed", value=lambda c: c.first_failed_at),
    tables.Column("customer", "Customer", value=lambda c: c.customer_id),
    tables.Column("invoice", "Invoice", value=lambda c: c.invoice_number or c.invoice_id),
    tables.Column("due", "Due", value=lambda c: (c.currency, c.amount_due_minor), numeric=True),
    tables.Column("status", "Status", value=lambda c: c.status),
    tables.Column("attempts", "Attempts", value=lambda c: c.attempt_count, numeric=True),
    tables.Column("why", "Last failure", value=lambda c: c.last_failure_code),
    tables.Column("next", "Next attempt", value=lambda c: c.next_attempt_at),
    tables.Column("action", ""),
]


def _failing(tx: Tx, limit: int) -> tuple[list[Collection], bool]:
    found: list[Collection] = []
    capped = False
    for status in FAILING:
        page = payments.list_collections(tx, PageRequest(limit=limit), status=status)
        found.extend(page.data)
        capped = capped or page.has_more
    return found, capped


def count(tx: Tx) -> int:
    found, capped = _failing(tx, BADGE_COUNT_MAX)
    return len(found) + (1 if capped else 0)


def context(tx: Tx, ctx: ConsoleContext) -> Mapping[str, Any]:
    found, capped = _failing(tx, COLLECTIONS_SHOWN_MAX)
    table = tables.from_list(
        ctx.request, found, columns=COLUMNS, default_sort=tables.Sort("failed", descending=True)
    )
    chart = charts.bar_chart(
        charts.daily_counts(
            [c.first_failed_at for c in found if c.first_failed_at is not None],
            end=tx.now(),
            days=CHART_DAYS,
        ),
        title=f"Collections by the day their first attempt failed (last {CHART_DAYS} days)",
        unit="collections",
        height=160,
    )
    return {"collections": table, "capped": capped, "chart": chart}


PAGE: Final = AnomalyPage(
    key="failed-payments",
    title="Failed payments",
    description=(
        "Invoices whose payment attempts failed: retrying on the dunning schedule (the next "
        "attempt is shown), or exhausted after every retry (the subscription may be past due or "
        "unpaid). Once the customer has fixed their payment method, retry now."
    ),
    count=count,
    context=context,
    template="anomalies/failed_payments.html",
)
