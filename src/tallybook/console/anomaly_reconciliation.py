"""Anomaly page: reconciliation discrepancies (open ones from the daily run, newest seen first,
with the latest run's scope)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from tallybook.console import charts, tables
from tallybook.console.anomalies import BADGE_COUNT_MAX, AnomalyPage
from tallybook.db import Tx
from tallybook.reconciliation import service
from tallybook.reconciliation.models import Discrepancy

if TYPE_CHECKING:
    from tallybook.console.web import ConsoleContext

#: The page sorts and pages this many of the most recently seen open discrepancies.
SHOWN_MAX: Final = 500
CHART_DAYS: Final = 30

COLUMNS: Final[list[tables.Column[Discrepancy]]] = [
    tables.Column("kind", "Kind", value=lambda d: d.kind),
    tables.Column("objects", "Objects"),
    tables.Column("expected", "Expected", value=lambda d: d.expected_minor, numeric=True),
    tables.Column("actual", "Actual", value=lambda d: d.actual_minor, numeric=True),
    tables.Column("first", "First seen", value=lambda d: d.first_seen_at),
    tables.Column("last", "Last seen", value=lambda d: d.last_seen_at),
    tables.Column("detail", "Detail"),
]


def count(tx: Tx) -> int:
    return min(service.count_open(tx), BADGE_COUNT_MAX + 1)


def context(tx: Tx, ctx: ConsoleContext) -> Mapping[str, Any]:
    rows = service.list_discrepancies(tx, open_only=True, limit=SHOWN_MAX)
    table = tables.from_list(
        ctx.request, rows, columns=COLUMNS, default_sort=tables.Sort("last", descending=True)
    )
    chart = charts.bar_chart(
        charts.daily_counts([d.first_seen_at for d in rows], end=tx.now(), days=CHART_DAYS),
        title=f"Open discrepancies by the day first seen (last {CHART_DAYS} days)",
        unit="discrepancies",
        height=160,
    )
    return {
        "chart": chart,
        "discrepancies": table,
        "capped": len(rows) >= SHOWN_MAX,
        "run": service.latest_run(tx),
    }


PAGE: Final = AnomalyPage(
    key="reconciliation",
    title="Reconciliation discrepancies",
    description=(
        "What the daily reconciliation found wrong: the ledger's own invariants, invoices "
        "against the ledger, invoiced quantities against usage, rollups against raw events, "
        "our payments against the provider's, and clearing accounts that should return to zero. "
        "A row is resolved by itself when a later run no longer finds it; fix the cause (a "
        "credit note, an adjustment, a replayed event) rather than the numbers. "
        "`tallybook reconcile` runs it now."
    ),
    count=count,
    context=context,
    template="anomalies/reconciliation.html",
)
