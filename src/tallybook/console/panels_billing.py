"""The customer page's billing panels: subscriptions, entitlements, credit grants, payments,
usage per meter and invoices. Each is a ``(tx, customer) -> context`` function over the owning
domain's service API (one list query per panel; lists are capped), rendered by a template under
``templates/panels/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from markupsafe import Markup
from sqlalchemy import select

from tallybook.catalog import meters as catalog_meters
from tallybook.catalog.meter_models import Meter
from tallybook.console import charts
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.entitlements import service as entitlements
from tallybook.grants import service as grants
from tallybook.invoicing import service as invoicing
from tallybook.kit.assets import is_unit_asset, minor_to_quantity
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.metering import service as metering
from tallybook.metering.models import Rollup
from tallybook.payments import service as payments
from tallybook.subscriptions import service as subscriptions

SUBSCRIPTIONS_SHOWN_MAX: Final = 20
GRANTS_SHOWN_MAX: Final = 20
PAYMENTS_SHOWN_MAX: Final = 20
INVOICES_SHOWN_MAX: Final = 20
#: The usage chart shows this many UTC days, one point per day (aggregated in SQL).
USAGE_CHART_DAYS: Final = 90
USAGE_METERS_MAX: Final = 6
METERS_SCANNED_MAX: Final = 200
#: Collections a person may retry from the console.
RETRYABLE_COLLECTIONS: Final = frozenset({"retrying", "exhausted"})


def subscriptions_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    found = subscriptions.for_customer(tx, customer.id, include_canceled=True)
    live = [s for s in found if s.status != "canceled"]
    ended = [s for s in found if s.status == "canceled"]
    return {"subscriptions": (live + ended)[:SUBSCRIPTIONS_SHOWN_MAX]}


@dataclass(frozen=True, slots=True)
class LimitRow:
    feature_key: str
    allowed: bool
    reason: str
    enabled: bool
    used: Decimal | None
    limit: Decimal | None
    remaining: Decimal | None
    enforcement: str | None
    resets_at: datetime | None
    #: The bar's maximum: the limit, or the usage when it is over the limit.
    bar_max: Decimal | None
    over: bool


def entitlements_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    rows = []
    for result in entitlements.check_all(tx, customer.id):
        limit = result.effective_limit
        used = result.used
        over = limit is not None and used is not None and used > limit
        rows.append(
            LimitRow(
                feature_key=result.feature.key,
                allowed=result.allowed,
                reason=str(result.reason),
                enabled=result.enabled,
                used=used,
                limit=limit,
                remaining=result.remaining,
                enforcement=str(result.enforcement) if result.enforcement else None,
                resets_at=result.resets_at,
                bar_max=(max(limit, used or Decimal(0)) if limit is not None else None),
                over=over,
            )
        )
    return {"limits": rows}


@dataclass(frozen=True, slots=True)
class GrantRow:
    id: str
    kind: str
    status: str
    source: str
    unit: str | None
    granted: Money | Decimal
    remaining: Money | Decimal
    held: Money | Decimal
    effective_at: datetime
    expires_at: datetime | None
    reason: str


def _amount(minor: int, asset: str) -> Money | Decimal:
    return minor_to_quantity(minor) if is_unit_asset(asset) else Money(minor, asset)


def grants_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    page = grants.list_views(tx, PageRequest(limit=GRANTS_SHOWN_MAX), customer=customer.id)
    rows = []
    balances: dict[str, int] = {}
    for item in page.data:
        grant = item.grant
        unit = grant.asset[2:].lower() if is_unit_asset(grant.asset) else None
        rows.append(
            GrantRow(
                id=grant.id,
                kind=grant.kind,
                status=grant.status,
                source=grant.source,
                unit=unit,
                granted=_amount(grant.amount_minor + grant.rollover_minor, grant.asset),
                remaining=_amount(item.remaining_minor, grant.asset),
                held=_amount(item.held_minor, grant.asset),
                effective_at=grant.effective_at,
                expires_at=grant.expires_at,
                reason=grant.reason,
            )
        )
        if grant.status == "active":
            balances[grant.asset] = balances.get(grant.asset, 0) + item.remaining_minor
    money_balances = [Money(v, k) for k, v in sorted(balances.items()) if not is_unit_asset(k)]
    unit_balances = [
        (k[2:].lower(), minor_to_quantity(v))
        for k, v in sorted(balances.items())
        if is_unit_asset(k)
    ]
    return {
        "grants": rows,
        "grants_capped": page.has_more,
        "money_balances": money_balances,
        "unit_balances": unit_balances,
    }


def payments_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    found = payments.list_payments(
        tx, PageRequest(limit=PAYMENTS_SHOWN_MAX), customer_id=customer.id
    )
    collections = payments.list_collections(
        tx, PageRequest(limit=PAYMENTS_SHOWN_MAX), customer_id=customer.id
    )
    return {
        "payments": list(found.data),
        "payments_capped": found.has_more,
        "open_collections": [c for c in collections.data if c.status in RETRYABLE_COLLECTIONS],
    }


def invoices_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    page = invoicing.list_invoices(
        tx, PageRequest(limit=INVOICES_SHOWN_MAX), customer_id=customer.id
    )
    return {"invoices": list(page.data), "invoices_capped": page.has_more}


@dataclass(frozen=True, slots=True)
class MeterChart:
    key: str
    name: str
    unit: str
    total: Decimal
    chart: Markup


def meters_with_usage(tx: Tx, customer_id: str, since: datetime) -> list[Meter]:
    """Meters the customer has rollups for since ``since``: one primary-key probe of
    metering's rollups per meter (metering has no such listing; meters are few)."""
    found = []
    for meter in catalog_meters.all_meters(tx)[:METERS_SCANNED_MAX]:
        probe = (
            select(Rollup.meter_id)
            .where(
                Rollup.meter_id == meter.id,
                Rollup.customer_id == customer_id,
                Rollup.window_start >= since,
            )
            .limit(1)
        )
        if tx.session.scalar(probe) is not None:
            found.append(meter)
            if len(found) >= USAGE_METERS_MAX:
                break
    return found


def usage_context(tx: Tx, customer: Customer) -> Mapping[str, Any]:
    now = tx.now()
    end = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    start = end - timedelta(days=USAGE_CHART_DAYS)
    found = []
    for meter in meters_with_usage(tx, customer.id, start):
        series = metering.usage_series(
            tx, meter_id=meter.id, customer_id=customer.id, start=start, end=end, window="day"
        )
        unit = meter.unit or meter.key
        points = [charts.Point(w.start, w.value) for w in series.windows]
        found.append(
            MeterChart(
                key=meter.key,
                name=meter.name or meter.key,
                unit=unit,
                total=series.total,
                chart=charts.line_chart(
                    [charts.Series(meter.key, points)],
                    title=f"{meter.name or meter.key} per day, last {USAGE_CHART_DAYS} days",
                    unit=unit,
                    height=180,
                ),
            )
        )
    return {"meters": found, "usage_days": USAGE_CHART_DAYS}
