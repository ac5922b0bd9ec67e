"""Anomaly page: failed outbound webhooks (deliveries that gave up or keep failing, and the
endpoints disabled because of them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from tallybook.console import charts, tables
from tallybook.console.anomalies import BADGE_COUNT_MAX, AnomalyPage
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.webhooks import service
from tallybook.webhooks.models import WebhookDelivery, WebhookEndpoint

if TYPE_CHECKING:
    from tallybook.console.web import ConsoleContext

#: The page sorts and pages this many of the newest failing deliveries.
DELIVERIES_SHOWN_MAX: Final = 500
ENDPOINTS_SCANNED_MAX: Final = 100
CHART_DAYS: Final = 14

DELIVERY_COLUMNS: Final[list[tables.Column[WebhookDelivery]]] = [
    tables.Column("event", "Event", value=lambda d: d.event_id),
    tables.Column("type", "Type", value=lambda d: d.event_type),
    tables.Column("endpoint", "Endpoint", value=lambda d: d.endpoint_id),
    tables.Column("status", "Status", value=lambda d: d.status),
    tables.Column("attempts", "Attempts", value=lambda d: d.attempts, numeric=True),
    tables.Column("last", "Last answer", value=lambda d: d.last_status_code or 0),
    tables.Column("next", "Next attempt", value=lambda d: d.next_attempt_at),
    tables.Column("error", "Error"),
    tables.Column("action", ""),
]


def count(tx: Tx) -> int:
    failing = len(service.failing_deliveries(tx, limit=BADGE_COUNT_MAX + 1))
    return failing


def endpoints(tx: Tx) -> list[WebhookEndpoint]:
    return list(service.list_endpoints(tx, PageRequest(limit=ENDPOINTS_SCANNED_MAX)).data)


def context(tx: Tx, ctx: ConsoleContext) -> Mapping[str, Any]:
    all_endpoints = endpoints(tx)
    deliveries = service.failing_deliveries(tx, limit=DELIVERIES_SHOWN_MAX)
    table = tables.from_list(
        ctx.request,
        deliveries,
        columns=DELIVERY_COLUMNS,
        default_sort=tables.Sort("event", descending=True),
    )
    chart = charts.bar_chart(
        charts.daily_counts([d.created_at for d in deliveries], end=tx.now(), days=CHART_DAYS),
        title=f"Failing deliveries by the day their event was queued (last {CHART_DAYS} days)",
        unit="deliveries",
        height=160,
    )
    return {
        "chart": chart,
        "disabled_endpoints": [e for e in all_endpoints if e.status == service.DISABLED],
        "endpoint_urls": {e.id: e.url for e in all_endpoints},
        "deliveries": table,
        "deliveries_capped": len(deliveries) >= DELIVERIES_SHOWN_MAX,
    }


PAGE: Final = AnomalyPage(
    key="failed-webhooks",
    title="Failed webhooks",
    description=(
        "Outbound webhook deliveries that gave up after the retry schedule (about three days) "
        "or are still retrying, and endpoints disabled because of them. Disabled endpoints keep "
        "queueing events; once the receiver is fixed, re-enable the endpoint and the queued "
        "events are delivered in order. A delivery that gave up can be sent again."
    ),
    count=count,
    context=context,
    template="anomalies/failed_webhooks.html",
)
