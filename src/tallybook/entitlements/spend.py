"""Spend limits: a customer's maximum **on-demand spend** per billing period, and the alerts
fired as spend approaches it.

On-demand spend, exactly: for each of the customer's subscriptions that is active, past due or
unpaid, the **usage lines** that rating computes for its current billing period from the usage
so far (each usage price on the meter's quantity in the period, after the price's included
quantity, capped by its ``max_charge_minor``, prorated per phase exactly as invoicing rates the
period), summed, in the customer's currency. Flat fees, minimum true-ups, discounts and credits
do not count: the limit is about what usage adds to the bill.

A check with a quantity prices the increment: the same rating with the quantity added to the
feature's meter (for a meter priced by several group-filtered prices, whichever one the
increment makes most expensive: the check never lets spend pass the limit by guessing wrong),
and refuses with ``spend_limit_exceeded`` if spend would pass the limit.

Alerts: ``limit.threshold_reached`` once per (customer, period, threshold) when spend reaches
a threshold (default 50, 80 and 100 % of the limit), and ``limit.exceeded`` once per
(customer, subject, period) when a check or reservation is refused for a limit. A unique row
(``entitlements_limit_alerts``) makes "once" hold across processes and retries; the
``entitlements.spend_alerts`` job sweeps customers with limits, and checks fire them as they
see them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from sqlalchemy import update

from tallybook.catalog import plans as catalog_plans
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.entitlements import catalog_cache, repository
from tallybook.entitlements.domain import (
    ENTITLED_STATUSES,
    PlanFacts,
    SpendFacts,
    SubscriptionFacts,
)
from tallybook.entitlements.errors import EntitlementCode
from tallybook.entitlements.models import LimitAlert, SpendLimit
from tallybook.entitlements.usage import grouped_usage
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.ids import new_id
from tallybook.kit.money import check_amount_minor, normalize_currency
from tallybook.rating import (
    BillingPeriod,
    LineKind,
    RatingPhase,
    UsageRequest,
    rate_subscription_period,
    usage_requests,
)
from tallybook.subscriptions import service as subscriptions
from tallybook.work import events

THRESHOLDS_DEFAULT: Final = (50, 80, 100)
THRESHOLDS_MAX: Final = 10
SPEND: Final = "spend"
#: Statuses whose usage is billed (a trial's is not).
BILLED_STATUSES: Final = ENTITLED_STATUSES - {"trialing"}


@dataclass(frozen=True, slots=True)
class SpendLimitInput:
    amount_minor: int
    currency: str | None = None
    thresholds: Sequence[int] | None = None
    reason: str | None = None


def _thresholds(values: Sequence[int] | None) -> list[int]:
    if values is None:
        return list(THRESHOLDS_DEFAULT)
    if len(values) > THRESHOLDS_MAX or any(
        isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 100 for v in values
    ):
        raise InvalidRequest(
            EntitlementCode.SPEND_LIMIT_THRESHOLDS_INVALID,
            f"thresholds are up to {THRESHOLDS_MAX} whole percentages from 1 to 100",
            param="thresholds",
        )
    return sorted(set(values))


def set_spend_limit(tx: Tx, customer: Customer, data: SpendLimitInput) -> SpendLimit:
    amount = check_amount_minor(data.amount_minor)
    if amount < 0:
        raise InvalidRequest(
            EntitlementCode.SPEND_LIMIT_INVALID,
            "amount_minor must not be negative",
            param="amount_minor",
        )
    if customer.currency is None:
        raise InvalidRequest(
            EntitlementCode.SPEND_LIMIT_CURRENCY_MISMATCH,
            "the customer has no billing currency yet (it is set by the first subscription)",
            param="currency",
        )
    currency = normalize_currency(data.currency) if data.currency else customer.currency
    if currency != customer.currency:
        raise InvalidRequest(
            EntitlementCode.SPEND_LIMIT_CURRENCY_MISMATCH,
            f"spend limits are in the customer's currency, {customer.currency}",
            param="currency",
        )
    thresholds = _thresholds(data.thresholds)
    now = tx.now()
    row = repository.spend_limit(tx, customer.id)
    if row is None:
        row = SpendLimit(
            customer_id=customer.id,
            amount_minor=amount,
            currency=currency,
            thresholds=thresholds,
            set_by=tx.actor,
            reason=data.reason,
            created_at=now,
            updated_at=now,
        )
        tx.session.add(row)
    else:
        row.amount_minor = amount
        row.thresholds = thresholds
        row.set_by = tx.actor
        row.reason = data.reason
        row.updated_at = now
    tx.session.flush()
    events.emit(
        tx,
        "spend_limit.updated",
        customer_id=customer.id,
        object_id=customer.id,
        data={"amount_minor": amount, "currency": currency, "thresholds": thresholds},
    )
    return row


def remove_spend_limit(tx: Tx, customer: Customer) -> bool:
    row = repository.spend_limit(tx, customer.id)
    if row is None:
        return False
    tx.session.delete(row)
    events.emit(tx, "spend_limit.removed", customer_id=customer.id, object_id=customer.id, data={})
    return True


# Measuring spend -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rating:
    period: BillingPeriod
    phases: tuple[RatingPhase, ...]
    requests: tuple[UsageRequest, ...]


def _rating_of(tx: Tx, subscription_id: str, now: datetime) -> _Rating | None:
    row = subscriptions.get(tx, subscription_id)
    period = subscriptions.current_period(tx, row, now)
    if period is None:
        return None
    if period.id is not None:
        rating_input = subscriptions.period_rating_input(tx, period.id)
        return _Rating(
            rating_input.billing_period, rating_input.phases, rating_input.usage_requests
        )
    # A projected period (the job has not opened it yet): the open phase continues into it.
    phase = next(p for p in reversed(subscriptions.phases(tx, row.id)) if p.end_at is None)
    billing = BillingPeriod(
        period.start_at, period.end_at, period.nominal_start_at, period.nominal_end_at
    )
    phases = (
        RatingPhase(
            phase_id=phase.id,
            start=phase.start_at,
            end=None,
            terms=catalog_plans.version_terms(tx, phase.plan_version_id),
        ),
    )
    return _Rating(billing, phases, tuple(usage_requests(billing, phases)))


def _usage_minor(rating: _Rating, quantities: dict[tuple[str, str], Decimal]) -> int:
    if not rating.phases:
        return 0
    rated = rate_subscription_period(rating.period, rating.phases, quantities)
    return sum((line.amount_minor for line in rated.lines if line.kind == LineKind.USAGE), start=0)


def _same_meter(tx: Tx, a: str, b: str) -> bool:
    return a == b or catalog_cache.meter_facts(tx, a).key == catalog_cache.meter_facts(tx, b).key


def subscription_spend(
    tx: Tx,
    customer_id: str,
    subscription_id: str,
    *,
    now: datetime,
    meter_id: str | None = None,
    quantity: Decimal | None = None,
) -> tuple[int, int]:
    """(on-demand spend so far, what ``quantity`` more of ``meter_id`` would add) for one
    subscription's current period, in minor units."""
    rating = _rating_of(tx, subscription_id, now)
    if rating is None or rating.period.trial:
        return 0, 0
    quantities = {
        request.key: grouped_usage(
            tx,
            meter_id=request.meter_id,
            customer_id=customer_id,
            start=request.start,
            end=request.end,
            group_filter=request.group_filter,
        )
        for request in rating.requests
    }
    spent = _usage_minor(rating, quantities)
    if meter_id is None or not quantity:
        return spent, 0
    increment = 0
    for request in rating.requests:
        if not (request.start <= now < request.end) or not _same_meter(
            tx, request.meter_id, meter_id
        ):
            continue
        more = dict(quantities)
        more[request.key] = more[request.key] + quantity
        increment = max(increment, _usage_minor(rating, more) - spent)
    return spent, increment


def spend_facts_for(
    tx: Tx,
    customer: Customer,
    *,
    meter_id: str | None,
    quantity: Decimal | None,
    facts: Sequence[tuple[SubscriptionFacts, PlanFacts]],
    now: datetime,
) -> SpendFacts | None:
    """The customer's spend against their limit, or None without a limit (or a period)."""
    limit = repository.spend_limit(tx, customer.id)
    if limit is None:
        return None
    live = sorted(
        (s for s, _ in facts if s.status in ENTITLED_STATUSES and s.period_start is not None),
        key=lambda s: (s.created_at, s.id),
    )
    if not live:
        return None
    spent = increment = 0
    for subscription in live:
        if subscription.status not in BILLED_STATUSES:
            continue
        part, more = subscription_spend(
            tx, customer.id, subscription.id, now=now, meter_id=meter_id, quantity=quantity
        )
        spent += part
        increment += more
    primary = live[0]
    assert primary.period_start is not None and primary.period_end is not None
    return SpendFacts(
        limit_minor=limit.amount_minor,
        currency=limit.currency,
        spend_minor=spent,
        increment_minor=increment,
        period_start=primary.period_start,
        period_end=primary.period_end,
        thresholds=tuple(limit.thresholds),
    )


# Alerts --------------------------------------------------------------------------------------


def thresholds_reached(facts: SpendFacts) -> list[int]:
    """The thresholds current spend has reached (a zero limit: any spend reaches all)."""
    if facts.limit_minor == 0:
        return list(facts.thresholds) if facts.spend_minor > 0 else []
    return [t for t in facts.thresholds if facts.spend_minor * 100 >= facts.limit_minor * t]


def record_alert(
    tx: Tx,
    *,
    customer_id: str,
    subject: str,
    period_start: datetime,
    kind: str,
    threshold_percent: int,
    measured: str,
    limit_value: str,
    data: dict[str, object],
) -> bool:
    """Fire an alert unless it fired already (the unique row decides). Returns whether this
    call fired it."""
    event_type = "limit.threshold_reached" if kind == "threshold" else "limit.exceeded"
    alert_id = new_id("lalrt")
    fired = repository.insert_alert(
        tx,
        {
            "id": alert_id,
            "customer_id": customer_id,
            "subject": subject,
            "period_start": period_start,
            "kind": kind,
            "threshold_percent": threshold_percent,
            "measured": measured,
            "limit_value": limit_value,
            "event_id": "",
            "created_at": tx.now(),
        },
    )
    if not fired:
        return False
    event_id = events.emit(
        tx,
        event_type,
        customer_id=customer_id,
        object_id=alert_id,
        data={
            "subject": subject,
            "period_start": period_start,
            "threshold_percent": threshold_percent if kind == "threshold" else None,
            "measured": measured,
            "limit": limit_value,
            **data,
        },
    )
    tx.session.execute(
        update(LimitAlert).where(LimitAlert.id == alert_id).values(event_id=event_id)
    )
    return True


def record_spend_thresholds(tx: Tx, customer_id: str, facts: SpendFacts) -> int:
    fired = 0
    for threshold in thresholds_reached(facts):
        fired += record_alert(
            tx,
            customer_id=customer_id,
            subject=SPEND,
            period_start=facts.period_start,
            kind="threshold",
            threshold_percent=threshold,
            measured=str(facts.spend_minor),
            limit_value=str(facts.limit_minor),
            data={
                "currency": facts.currency,
                "spend_minor": facts.spend_minor,
                "limit_minor": facts.limit_minor,
                "period_end": facts.period_end,
            },
        )
    return fired
