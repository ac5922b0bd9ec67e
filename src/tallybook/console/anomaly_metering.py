"""Anomaly pages from metering: dead-lettered events (with replay) and metering lag."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from tallybook.console import charts, tables
from tallybook.console.anomalies import BADGE_COUNT_MAX, AnomalyPage
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.metering import service as metering
from tallybook.metering.models import DeadLetter
from tallybook.observability.metrics import REGISTRY

if TYPE_CHECKING:
    from tallybook.console.web import ConsoleContext

#: The page sorts and pages this many of the newest pending letters.
LETTERS_SHOWN_MAX: Final = 100
#: Seconds without a committed event before the lag page says so (informational).
QUIET_SECONDS: Final = 3600
LAG_METRIC: Final = "tallybook_metering_lag_seconds"

LETTER_COLUMNS: Final[list[tables.Column[DeadLetter]]] = [
    tables.Column("received", "First received", value=lambda d: d.received_at),
    tables.Column("code", "Why", value=lambda d: d.code),
    tables.Column("event", "Event", value=lambda d: d.event_id),
    tables.Column("subject", "Subject", value=lambda d: d.subject),
    tables.Column("attempts", "Attempts", value=lambda d: d.attempts, numeric=True),
    tables.Column("action", ""),
]


def dead_letter_count(tx: Tx) -> int:
    page = metering.list_dead_letters(tx, PageRequest(limit=BADGE_COUNT_MAX))
    return len(page.data) + (1 if page.has_more else 0)


def dead_letters_context(tx: Tx, ctx: ConsoleContext) -> Mapping[str, Any]:
    page = metering.list_dead_letters(tx, PageRequest(limit=LETTERS_SHOWN_MAX))
    status = metering.metering_status(tx)
    table = tables.from_list(
        ctx.request,
        page.data,
        columns=LETTER_COLUMNS,
        default_sort=tables.Sort("received", descending=True),
    )
    by_code = [
        charts.Bar(code, Decimal(count))
        for code, count in sorted(status.dead_letters_pending_by_code.items())
    ]
    return {
        "letters": table,
        "letters_capped": page.has_more,
        "by_code": status.dead_letters_pending_by_code,
        "chart": charts.bar_chart(by_code, title="Pending dead letters by reason", unit="events")
        if by_code
        else None,
    }


DEAD_LETTERS: Final = AnomalyPage(
    key="dead-letters",
    title="Dead-lettered events",
    description=(
        "Usage events that could not be accepted (unknown customer or meter, bad data) and "
        "wait for a person. Fix the cause (create the customer, define the meter), then replay: "
        "an accepted replay is counted in its own time window; one still rejected stays here "
        "with its new reason."
    ),
    count=dead_letter_count,
    context=dead_letters_context,
    template="anomalies/dead_letters.html",
)


def lag_count(tx: Tx) -> int:
    """Meters still counting events stored before they were defined (usage is not final)."""
    return len(metering.metering_status(tx).backfilling)


def _lag_histogram() -> dict[str, float] | None:
    """This process's lag histogram (count and mean), when metering ran here."""
    for metric in REGISTRY.collect():
        if metric.name != LAG_METRIC:
            continue
        total = count = 0.0
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                total = sample.value
            elif sample.name.endswith("_count"):
                count = sample.value
        if count:
            return {"count": count, "mean_seconds": total / count}
    return None


def lag_context(tx: Tx, ctx: ConsoleContext) -> Mapping[str, Any]:
    status = metering.metering_status(tx)
    return {
        "status": status,
        "quiet": (status.seconds_since_last_event or 0) > QUIET_SECONDS,
        "histogram": _lag_histogram(),
    }


METERING_LAG: Final = AnomalyPage(
    key="metering-lag",
    title="Metering lag",
    description=(
        "How far metering is behind: the newest committed event and how long ago it arrived, "
        "meters still backfilling (their usage is not final until they finish), late events "
        "waiting for the next invoice, and the lag from an event's time to its commit in this "
        "process. The badge counts meters still backfilling."
    ),
    count=lag_count,
    context=lag_context,
    template="anomalies/metering_lag.html",
)
