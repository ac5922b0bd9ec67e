"""Reading subscriptions, and the contract with invoicing and entitlements. Never commits.

Invoicing closes a period in four steps (see ``docs/subscriptions.md``):

1. :func:`~tallybook.subscriptions.service.lifecycle.advance_by_id` brings the subscription up
   to now (renewals record the new period's in-advance fees);
2. :func:`ended_periods` lists the periods that ended, and :func:`rate_period` prices what is
   billed at their end (usage per phase, in-arrears fees, minimum true-up);
3. :func:`pending_charges` lists the in-advance fees and prorations whose service has started;
4. :func:`mark_charges_invoiced` records which invoice took them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from tallybook.db import Tx
from tallybook.kit.errors import Conflict, NotFound
from tallybook.kit.invariant import invariant
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.rating import (
    BillingPeriod,
    RatedPeriod,
    RatingPhase,
    UsageRequest,
    rate_subscription_period,
    usage_requests,
)
from tallybook.subscriptions import repository
from tallybook.subscriptions.domain import RENEWING, Status
from tallybook.subscriptions.errors import SubscriptionCode
from tallybook.subscriptions.models import Subscription
from tallybook.subscriptions.periods import period_containing
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.views import (
    ChangeView,
    PendingChargeView,
    PeriodView,
    PhaseView,
    SubscriptionView,
)

RESULTS_MAX: Final = 1000


def get(tx: Tx, subscription_id: str) -> Subscription:
    subscription = repository.get(tx, subscription_id)
    if subscription is None:
        raise NotFound("subscription", subscription_id)
    return subscription


def view(tx: Tx, subscription_id: str) -> SubscriptionView:
    return SubscriptionView.of(
        get(tx, subscription_id), state.scheduled_change(tx, subscription_id)
    )


def list_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    plan_version_id: str | None = None,
) -> Page[SubscriptionView]:
    rows = repository.page(
        tx, request, customer_id=customer_id, status=status, plan_version_id=plan_version_id
    )
    page = page_from_rows(rows, request)
    return Page(
        data=[SubscriptionView.of(r, state.scheduled_change(tx, r.id)) for r in page.data],
        has_more=page.has_more,
    )


def for_customer(
    tx: Tx, customer_id: str, *, include_canceled: bool = False
) -> list[SubscriptionView]:
    """A customer's subscriptions, oldest first (not canceled, unless asked): what the
    entitlement checks start from (each one's ``plan_version_id`` → its terms)."""
    rows = repository.of_customer(
        tx, customer_id, include_canceled=include_canceled, limit=RESULTS_MAX
    )
    return [SubscriptionView.of(r, state.scheduled_change(tx, r.id)) for r in rows]


def phases(tx: Tx, subscription_id: str) -> list[PhaseView]:
    get(tx, subscription_id)
    return [PhaseView.of(row) for row in repository.phases(tx, subscription_id)]


def phases_overlapping(
    tx: Tx, subscription_id: str, start: datetime, end: datetime
) -> list[PhaseView]:
    """The phases with a non-empty overlap with ``[start, end)``, in order."""
    return [
        PhaseView.of(row) for row in repository.phases_overlapping(tx, subscription_id, start, end)
    ]


def periods(tx: Tx, subscription_id: str) -> list[PeriodView]:
    get(tx, subscription_id)
    return [PeriodView.of(row) for row in repository.periods(tx, subscription_id)]


def get_period(tx: Tx, period_id: str) -> PeriodView:
    row = repository.get_period(tx, period_id)
    if row is None:
        raise NotFound("subscription period", period_id)
    return PeriodView.of(row)


def changes(tx: Tx, subscription_id: str, *, limit: int = 100) -> list[ChangeView]:
    get(tx, subscription_id)
    rows = repository.changes(tx, subscription_id, limit=min(limit, RESULTS_MAX))
    return [ChangeView.of(row) for row in rows]


def current_period(tx: Tx, subscription: Subscription, at: datetime) -> PeriodView | None:
    """The billing period containing ``at``: a recorded one, or for an instant past the
    current period of a renewing subscription, the period it will be in (projected from the
    current phase's anchor; ``id`` None). None before the start, after the end, in a pause.
    Entitlements use this as the window of a usage limit."""
    row = repository.period_containing(tx, subscription.id, at)
    if row is not None:
        return PeriodView.of(row)
    if (
        Status(subscription.status) not in RENEWING
        or subscription.current_period_end_at is None
        or at < subscription.current_period_end_at
        or subscription.cancel_at_period_end
    ):
        return None
    phase = state.current_phase(tx, subscription)
    terms = state.terms_of(tx, phase.plan_version_id)
    invariant(phase.billing_anchor_at is not None, "a renewing phase has an anchor")
    projected = period_containing(phase.billing_anchor_at, terms.interval, at)  # type: ignore[arg-type]
    return PeriodView(
        id=None,
        subscription_id=subscription.id,
        kind="regular",
        status="projected",
        start_at=projected.start,
        end_at=projected.end,
        nominal_start_at=projected.start,
        nominal_end_at=projected.end,
        end_reason=None,
    )


def subscriptions_with_period_ending_between(
    tx: Tx, start: datetime, end: datetime, *, limit: int = RESULTS_MAX
) -> list[SubscriptionView]:
    """Subscriptions whose current period (or trial) ends in ``[start, end)``."""
    rows = repository.with_period_ending_between(tx, start, end, limit=min(limit, RESULTS_MAX))
    return [SubscriptionView.of(r, state.scheduled_change(tx, r.id)) for r in rows]


def ended_periods(
    tx: Tx,
    ended_from: datetime,
    ended_before: datetime,
    *,
    after: tuple[datetime, str] | None = None,
    limit: int = RESULTS_MAX,
) -> list[PeriodView]:
    """Regular periods that ended in ``[ended_from, ended_before)`` (renewed, cut short by a
    cancellation or a change of interval), ordered by (end, id); page with ``after`` = the
    last (end_at, id) seen."""
    rows = repository.ended_periods(
        tx, ended_from, ended_before, after=after, limit=min(limit, RESULTS_MAX)
    )
    return [PeriodView.of(row) for row in rows]


# Rating a period ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PeriodRatingInput:
    """Everything needed to rate one period, except the usage quantities themselves."""

    subscription_id: str
    customer_id: str
    currency: str
    period: PeriodView
    billing_period: BillingPeriod
    phases: tuple[RatingPhase, ...]
    #: Measure each of these (``metering`` usage of the meter, for the customer, in the
    #: window, restricted to the group filter) and pass the quantities keyed by ``.key``.
    usage_requests: tuple[UsageRequest, ...]
    #: In-advance fees and prorations recorded for this period, net (counts toward the
    #: minimum commitment).
    advance_charged_minor: int


def period_rating_input(tx: Tx, period_id: str) -> PeriodRatingInput:
    row = repository.get_period(tx, period_id)
    if row is None:
        raise NotFound("subscription period", period_id)
    subscription = get(tx, row.subscription_id)
    billing_period = state.billing_period(row)
    phase_rows = repository.phases_overlapping(tx, subscription.id, row.start_at, row.end_at)
    rating_phases = tuple(
        RatingPhase(
            phase_id=phase.id,
            start=phase.start_at,
            end=phase.end_at,
            terms=state.terms_of(tx, phase.plan_version_id),
        )
        for phase in phase_rows
    )
    charged = sum(
        (charge.amount_minor for charge in repository.charges_of_period(tx, row.id)), start=0
    )
    return PeriodRatingInput(
        subscription_id=subscription.id,
        customer_id=subscription.customer_id,
        currency=subscription.currency,
        period=PeriodView.of(row),
        billing_period=billing_period,
        phases=rating_phases,
        usage_requests=tuple(usage_requests(billing_period, rating_phases)),
        advance_charged_minor=charged,
    )


def rate_period(
    tx: Tx, period_id: str, usage: Callable[[str, UsageRequest], Decimal]
) -> RatedPeriod:
    """Rate what is billed at the end of a period. ``usage(customer_id, request)`` returns
    the measured quantity for one request (in production: the metering usage query over the
    request's meter, window and group filter)."""
    rating_input = period_rating_input(tx, period_id)
    if not rating_input.phases:
        return RatedPeriod(rating_input.currency, ())
    quantities = {
        request.key: usage(rating_input.customer_id, request)
        for request in rating_input.usage_requests
    }
    return rate_subscription_period(
        rating_input.billing_period,
        rating_input.phases,
        quantities,
        advance_charged_minor=rating_input.advance_charged_minor,
    )


# Pending charges ---------------------------------------------------------------------------


def pending_charges(
    tx: Tx, subscription_id: str, up_to: datetime, *, limit: int = RESULTS_MAX
) -> list[PendingChargeView]:
    """Charges not yet invoiced whose service starts at or before ``up_to`` (the invoice at
    a period boundary takes the new period's fees and every proration since the last one)."""
    rows = repository.charges(
        tx, subscription_id, status=state.PENDING, service_start_up_to=up_to, limit=limit
    )
    return [PendingChargeView.of(row) for row in rows]


def charges(tx: Tx, subscription_id: str, *, limit: int = RESULTS_MAX) -> list[PendingChargeView]:
    """Every charge of a subscription, pending or invoiced (for support and the console)."""
    get(tx, subscription_id)
    rows = repository.charges(
        tx, subscription_id, status=None, service_start_up_to=None, limit=limit
    )
    return [PendingChargeView.of(row) for row in rows]


def mark_charges_invoiced(tx: Tx, charge_ids: Sequence[str], invoice_id: str) -> int:
    """Record that ``invoice_id`` bills these charges. Idempotent for the same invoice; a
    charge already on another invoice is ``subscription_charge_already_invoiced``. Returns
    how many charges changed."""
    ids = sorted(set(charge_ids))
    rows = repository.charges_by_id(tx, ids, for_update=True)
    found = {row.id for row in rows}
    missing = [charge_id for charge_id in ids if charge_id not in found]
    if missing:
        raise NotFound("subscription charge", missing[0], param="charge_ids")
    changed = 0
    for row in rows:
        if row.status == state.INVOICED:
            if row.invoice_id != invoice_id:
                raise Conflict(
                    SubscriptionCode.CHARGE_ALREADY_INVOICED,
                    f"charge {row.id} is on invoice {row.invoice_id}",
                    param="charge_ids",
                )
            continue
        row.status = state.INVOICED
        row.invoice_id = invoice_id
        row.invoiced_at = tx.now()
        changed += 1
    tx.session.flush()
    return changed
