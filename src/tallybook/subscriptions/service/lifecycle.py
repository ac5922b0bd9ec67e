"""Creating subscriptions and moving them through time: renewals at period boundaries,
scheduled changes and cancellations at period end, trial ends, pause and resume, and the
status transitions payments drive. Never commits."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any, Final

from tallybook.catalog import plans as catalog
from tallybook.catalog.domain import TRIAL_DAYS_MAX, TrialEndBehavior, VersionTerms
from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import CommonCode, Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.kit.metadata import validate_metadata
from tallybook.rating import advance_fee_lines
from tallybook.subscriptions.domain import (
    RENEWING,
    ChangeKind,
    ChangeStatus,
    CreateRequest,
    Status,
    check_transition,
)
from tallybook.subscriptions.errors import SubscriptionCode
from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
    SubscriptionPhase,
)
from tallybook.subscriptions.periods import floor_to_second
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.views import ChangeResult, SubscriptionView
from tallybook.work import events

#: A billing anchor may be set at most this far from the start (either way).
ANCHOR_DISTANCE_MAX: Final = timedelta(days=3660)
#: Boundaries one call to :func:`advance` will cross before stopping (a job continues later).
ADVANCE_STEPS_MAX: Final = 400


def emit(tx: Tx, event_type: str, subscription: Subscription, **extra: Any) -> None:
    data = {"subscription": asdict(state.view(tx, subscription)), **extra}
    events.emit(
        tx, event_type, customer_id=subscription.customer_id, object_id=subscription.id, data=data
    )


def charge_period_fees(
    tx: Tx,
    subscription: Subscription,
    period: SubscriptionPeriod,
    terms: VersionTerms,
    phase: SubscriptionPhase,
    *,
    change_id: str | None = None,
    invoice_now: bool = False,
) -> list[PendingCharge]:
    """Record the in-advance fees of a period that just opened (once per period and price)."""
    charges = []
    for line in advance_fee_lines(terms, state.billing_period(period), phase_id=phase.id):
        charges.append(
            state.record_line(
                tx,
                subscription,
                period,
                line,
                dedup_key=f"fee:{period.id}:{line.price_id}",
                change_id=change_id,
                invoice_now=invoice_now,
            )
        )
    return charges


# Create -----------------------------------------------------------------------------------


def _trial_end(request: CreateRequest, terms: VersionTerms, now: datetime) -> datetime | None:
    if request.trial_end is not None and request.trial_period_days is not None:
        raise InvalidRequest(
            SubscriptionCode.TRIAL_INVALID,
            "pass trial_end or trial_period_days, not both",
            param="trial_end",
        )
    if request.trial_end is not None:
        trial_end = floor_to_second(ensure_utc(request.trial_end, param="trial_end"))
        if not now < trial_end <= now + timedelta(days=TRIAL_DAYS_MAX):
            raise InvalidRequest(
                SubscriptionCode.TRIAL_INVALID,
                f"trial_end must be in the future and within {TRIAL_DAYS_MAX} days",
                param="trial_end",
            )
        return trial_end
    days = request.trial_period_days
    if days is None:
        days = terms.trial_period_days or 0
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= TRIAL_DAYS_MAX:
        raise InvalidRequest(
            SubscriptionCode.TRIAL_INVALID,
            f"trial_period_days must be an integer from 0 to {TRIAL_DAYS_MAX}",
            param="trial_period_days",
        )
    return now + timedelta(days=days) if days else None


def create(tx: Tx, request: CreateRequest, *, preview: bool = False) -> ChangeResult:
    """Subscribe a customer to a published plan version, starting now (to the second).

    Without a trial the first period opens at once and its in-advance fees are recorded as
    pending charges (prorated when the billing anchor puts the first boundary early). With a
    trial, a trial period runs until the trial end and nothing is charged before it.
    """
    try:
        customer = customers.resolve(tx, request.customer)
    except NotFound:
        raise NotFound("customer", request.customer, param="customer") from None
    param = "plan_version" if request.plan_version_id is not None else "plan"
    version = catalog.version_for_subscription(
        tx, plan_version_id=request.plan_version_id, plan=request.plan, param=param
    )
    terms = state.terms_of(tx, version.id)
    if customer.currency is not None and customer.currency != terms.currency:
        raise InvalidRequest(
            SubscriptionCode.CURRENCY_MISMATCH,
            f"the plan bills in {terms.currency} but the customer in {customer.currency}",
            param=param,
        )
    try:
        behavior = TrialEndBehavior(request.trial_end_behavior)
    except ValueError:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            "trial_end_behavior must be convert, cancel or pause",
            param="trial_end_behavior",
        ) from None
    now = floor_to_second(tx.now())
    trial_end = _trial_end(request, terms, now)
    anchor = None
    if request.billing_anchor is not None:
        anchor = floor_to_second(ensure_utc(request.billing_anchor, param="billing_anchor"))
        if abs(anchor - now) > ANCHOR_DISTANCE_MAX:
            raise InvalidRequest(
                SubscriptionCode.ANCHOR_INVALID,
                "billing_anchor must be within ten years of now",
                param="billing_anchor",
            )
    metadata = validate_metadata(request.metadata)
    with state.sandbox(tx, preview):
        customers.set_currency_if_unset(tx, customer, terms.currency)
        subscription = Subscription(
            id=new_id("sub"),
            customer_id=customer.id,
            status=Status.TRIALING if trial_end else Status.ACTIVE,
            currency=terms.currency,
            plan_id=terms.plan_id,
            plan_version_id=terms.plan_version_id,
            anchor_is_explicit=anchor is not None,
            started_at=now,
            trial_start_at=now if trial_end else None,
            trial_end_at=trial_end,
            trial_end_behavior=str(behavior),
            cancel_at_period_end=False,
            metadata_=metadata,
            created_at=now,
            updated_at=now,
        )
        tx.session.add(subscription)
        tx.session.flush()
        phase_anchor = anchor or trial_end or now
        phase = state.open_phase(tx, subscription, terms, now, phase_anchor, change_id=None)
        tx.session.flush()
        charges: list[PendingCharge] = []
        if trial_end is not None:
            state.open_period(tx, subscription, terms, now, trial_end=trial_end)
        else:
            period = state.open_period(tx, subscription, terms, now, anchor=phase_anchor)
            tx.session.flush()
            charges = charge_period_fees(tx, subscription, period, terms, phase)
        state.refresh_next_action(subscription)
        tx.session.flush()
        emit(tx, "subscription.created", subscription)
        return state.result(tx, subscription, None, charges, preview=preview)


# Moving through time ----------------------------------------------------------------------


def advance(tx: Tx, subscription: Subscription, now: datetime) -> int:
    """Bring a (locked) subscription up to ``now``: end a trial that is over, renew every
    period that ended, applying the changes and cancellations scheduled for those
    boundaries. Returns the number of boundaries crossed. Idempotent: a second call with
    the same ``now`` does nothing."""
    steps = 0
    while steps < ADVANCE_STEPS_MAX:
        status = Status(subscription.status)
        if (
            status == Status.TRIALING
            and subscription.trial_end_at is not None
            and subscription.trial_end_at <= now
        ):
            end_trial_at(tx, subscription, subscription.trial_end_at)
        elif (
            status in RENEWING
            and subscription.current_period_end_at is not None
            and subscription.current_period_end_at <= now
        ):
            renew(tx, subscription, subscription.current_period_end_at)
        else:
            break
        steps += 1
    tx.session.flush()
    return steps


def renew(tx: Tx, subscription: Subscription, boundary: datetime) -> None:
    """Cross the boundary at the end of the current period."""
    period = state.current_period(tx, subscription)
    invariant(period is not None and period.end_at == boundary, "renewing the wrong period")
    scheduled = state.scheduled_change(tx, subscription.id)
    if scheduled is not None:
        invariant(scheduled.effective_at == boundary, "a scheduled change missed its boundary")
    if scheduled is not None and scheduled.kind == ChangeKind.CANCEL:
        finish_cancel(tx, subscription, boundary, reason="period_end", change=scheduled)
        return
    state.end_period(period, boundary, "renewed")  # type: ignore[arg-type]
    phase = state.current_phase(tx, subscription)
    terms = state.terms_of(tx, phase.plan_version_id)
    if scheduled is not None:
        phase, terms = apply_scheduled_plan_change(tx, subscription, scheduled, boundary)
    invariant(phase.billing_anchor_at is not None, "a renewing phase has an anchor")
    next_period = state.open_period(
        tx, subscription, terms, boundary, anchor=phase.billing_anchor_at
    )
    subscription.updated_at = tx.now()
    state.refresh_next_action(subscription)
    tx.session.flush()  # one UPDATE of the subscription, and the period before its charges
    charge_period_fees(tx, subscription, next_period, terms, phase)


def apply_scheduled_plan_change(
    tx: Tx, subscription: Subscription, change: SubscriptionChange, boundary: datetime
) -> tuple[SubscriptionPhase, VersionTerms]:
    """Switch to the scheduled version at a boundary. A new interval re-anchors there."""
    invariant(change.to_plan_version_id is not None, "a plan change names its target")
    old_phase = state.current_phase(tx, subscription)
    old_terms = state.terms_of(tx, old_phase.plan_version_id)
    terms = state.terms_of(tx, change.to_plan_version_id)  # type: ignore[arg-type]
    state.close_phase(old_phase, boundary)
    same_interval = old_terms.interval == terms.interval
    anchor = old_phase.billing_anchor_at if same_interval else boundary
    phase = state.open_phase(tx, subscription, terms, boundary, anchor, change_id=change.id)  # type: ignore[arg-type]
    if not same_interval:
        subscription.anchor_is_explicit = False
    change.status = ChangeStatus.APPLIED
    change.applied_at = tx.now()
    tx.session.flush()
    emit(
        tx,
        "subscription.plan_changed",
        subscription,
        change_id=change.id,
        from_plan_version=change.from_plan_version_id,
        to_plan_version=change.to_plan_version_id,
        policy=change.policy,
        effective_at=boundary,
    )
    return phase, terms


def end_trial_at(
    tx: Tx, subscription: Subscription, at: datetime, *, behavior: TrialEndBehavior | None = None
) -> list[PendingCharge]:
    """End the trial at ``at``: convert (first period, its fees charged), cancel or pause."""
    period = state.current_period(tx, subscription)
    invariant(period is not None and period.kind == state.TRIAL, "ending a trial without one")
    state.end_period(period, at, "trial_ended")  # type: ignore[arg-type]
    subscription.trial_end_at = at
    subscription.updated_at = tx.now()
    outcome = behavior or TrialEndBehavior(subscription.trial_end_behavior)
    scheduled = state.scheduled_change(tx, subscription.id)
    if scheduled is not None and scheduled.kind == ChangeKind.CANCEL:
        outcome = TrialEndBehavior.CANCEL
    emit(tx, "subscription.trial_ended", subscription, outcome=str(outcome))
    if outcome == TrialEndBehavior.CANCEL:
        finish_cancel(tx, subscription, at, reason="trial_ended", change=scheduled)
        return []
    if outcome == TrialEndBehavior.PAUSE:
        check_transition(Status(subscription.status), Status.PAUSED)
        subscription.status = Status.PAUSED
        subscription.current_period_id = None
        subscription.current_period_start_at = None
        subscription.current_period_end_at = None
        state.refresh_next_action(subscription)
        emit(tx, "subscription.updated", subscription, reason="paused")
        return []
    check_transition(Status(subscription.status), Status.ACTIVE)
    subscription.status = Status.ACTIVE
    return start_billing(tx, subscription, at)


def start_billing(tx: Tx, subscription: Subscription, at: datetime) -> list[PendingCharge]:
    """Open the first regular period at ``at`` (after a trial or a pause) and charge it. The
    anchor moves to ``at`` unless the caller chose one."""
    phase = state.current_phase(tx, subscription)
    terms = state.terms_of(tx, phase.plan_version_id)
    if not subscription.anchor_is_explicit:
        # Only trials and pauses lead here, and no regular period has used this phase's
        # anchor yet, so moving it is safe.
        phase.billing_anchor_at = at
        subscription.billing_anchor_at = at
    period = state.open_period(tx, subscription, terms, at, anchor=phase.billing_anchor_at or at)
    tx.session.flush()
    charges = charge_period_fees(tx, subscription, period, terms, phase)
    state.refresh_next_action(subscription)
    return charges


def finish_cancel(
    tx: Tx,
    subscription: Subscription,
    at: datetime,
    *,
    reason: str,
    change: SubscriptionChange | None,
) -> None:
    """End the subscription at ``at``: close its phase and its current period there."""
    check_transition(Status(subscription.status), Status.CANCELED)
    period = state.current_period(tx, subscription)
    if period is not None and period.status == state.CURRENT:
        state.end_period(period, at, "canceled")
    phase = state.current_phase(tx, subscription)
    if phase.end_at is None:
        state.close_phase(phase, at)
    if change is not None and change.status == ChangeStatus.SCHEDULED:
        change.status = ChangeStatus.APPLIED
        change.applied_at = tx.now()
    state.cancel_scheduled(tx, subscription)
    subscription.status = Status.CANCELED
    subscription.canceled_at = subscription.canceled_at or floor_to_second(tx.now())
    subscription.ended_at = at
    subscription.cancellation_reason = reason
    subscription.current_period_end_at = at if period is not None else None
    subscription.updated_at = tx.now()
    state.refresh_next_action(subscription)
    tx.session.flush()
    emit(tx, "subscription.canceled", subscription, reason=reason)


# Explicit lifecycle calls -----------------------------------------------------------------


def end_trial(tx: Tx, subscription_id: str, *, preview: bool = False) -> ChangeResult:
    """Convert a trialing subscription now: its first period starts and is charged."""
    subscription = state.lock(tx, subscription_id)
    state.require_not_canceled(subscription)
    with state.sandbox(tx, preview):
        now = floor_to_second(tx.now())
        advance(tx, subscription, now)
        if subscription.status != Status.TRIALING:
            raise Conflict(
                SubscriptionCode.TRANSITION_INVALID,
                f"the subscription is {subscription.status}, not trialing",
                param="status",
            )
        if subscription.cancel_at_period_end:
            raise Conflict(
                SubscriptionCode.CANCEL_SCHEDULED,
                "the trial is set to cancel at its end; resume it first",
                param="subscription",
            )
        charges = end_trial_at(tx, subscription, now, behavior=TrialEndBehavior.CONVERT)
        return state.result(tx, subscription, None, charges, preview=preview)


def resume_paused(tx: Tx, subscription: Subscription, now: datetime) -> list[PendingCharge]:
    check_transition(Status(subscription.status), Status.ACTIVE)
    subscription.status = Status.ACTIVE
    subscription.anchor_is_explicit = False
    subscription.updated_at = tx.now()
    return start_billing(tx, subscription, now)


def _set_status(
    tx: Tx, subscription_id: str, target: Status, allowed_from: frozenset[Status]
) -> SubscriptionView:
    subscription = state.lock(tx, subscription_id)
    current = Status(subscription.status)
    if current == target:
        return state.view(tx, subscription)
    state.require_not_canceled(subscription)
    if current not in allowed_from:
        raise Conflict(
            SubscriptionCode.TRANSITION_INVALID,
            f"a {current} subscription cannot become {target}",
            param="status",
        )
    check_transition(current, target)
    subscription.status = target
    subscription.updated_at = tx.now()
    state.refresh_next_action(subscription)
    emit(tx, "subscription.updated", subscription, reason="status", previous_status=str(current))
    return state.view(tx, subscription)


def mark_past_due(tx: Tx, subscription_id: str) -> SubscriptionView:
    """Payments: the latest invoice is overdue. Periods keep renewing."""
    return _set_status(tx, subscription_id, Status.PAST_DUE, frozenset({Status.ACTIVE}))


def mark_unpaid(tx: Tx, subscription_id: str) -> SubscriptionView:
    """Payments: retries are exhausted. Periods keep renewing (invoices are still drafted)."""
    return _set_status(tx, subscription_id, Status.UNPAID, frozenset({Status.PAST_DUE}))


def mark_active(tx: Tx, subscription_id: str) -> SubscriptionView:
    """Payments: the overdue invoices were paid."""
    return _set_status(
        tx, subscription_id, Status.ACTIVE, frozenset({Status.PAST_DUE, Status.UNPAID})
    )


def update_metadata(tx: Tx, subscription_id: str, metadata: dict[str, str]) -> SubscriptionView:
    """Merge ``metadata`` into the subscription's (an empty string removes a key). Allowed on a
    canceled subscription too: metadata is the caller's, and never changes billing."""
    subscription = state.lock(tx, subscription_id)
    merged = {**subscription.metadata_, **metadata}
    subscription.metadata_ = validate_metadata({k: v for k, v in merged.items() if v != ""})
    subscription.updated_at = tx.now()
    emit(tx, "subscription.updated", subscription, reason="metadata")
    return state.view(tx, subscription)


def advance_by_id(tx: Tx, subscription_id: str) -> int:
    """Lock and bring one subscription up to now (the scheduler, and invoicing before it
    closes a period, call this)."""
    subscription = state.lock(tx, subscription_id)
    if subscription.status == Status.CANCELED:
        return 0
    return advance(tx, subscription, floor_to_second(tx.now()))
