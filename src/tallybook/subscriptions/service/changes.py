"""Plan changes, cancellations, resumption and migrations. Never commits.

A plan change is classified (upgrade, downgrade, same price) by comparing recurring fees,
then takes the policy the current version sets for that direction unless the call overrides
it:

- ``prorate_now``: the current phase ends now and a new one starts on the target version;
  every fee paid in advance for the current period is credited for its unused part (capped
  at what is left uncredited on it), and the target's in-advance fees are charged for the
  rest of the period;
- ``now_without_proration``: the same phase switch, no credit and no charge;
- ``period_end``: a scheduled change, applied when the period renews (cancellable).

A change of billing interval that takes effect now always starts a new period now (charged
in full); the old period ends there.

Every call takes ``preview``: the same code runs inside a savepoint that is rolled back, and
the result lists the exact pending charges it would record.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tallybook.catalog import plans as catalog
from tallybook.catalog.domain import (
    CancellationCredit,
    ChangeDirection,
    ChangePolicy,
    VersionTerms,
    classify_change,
)
from tallybook.db import Tx
from tallybook.kit.errors import Conflict, InvalidRequest, TallybookError
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.rating import proration_charge_lines, proration_credit_line
from tallybook.subscriptions import repository
from tallybook.subscriptions.domain import (
    CancelAt,
    CancelRequest,
    ChangeKind,
    ChangeRequest,
    ChangeSource,
    ChangeStatus,
    Status,
)
from tallybook.subscriptions.errors import SubscriptionCode
from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
)
from tallybook.subscriptions.periods import floor_to_second
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.service import lifecycle
from tallybook.subscriptions.views import ChangeResult, SubscriptionView

MIGRATION_BATCH_MAX: Final = 500


def _new_change(
    tx: Tx,
    subscription: Subscription,
    *,
    kind: ChangeKind,
    status: ChangeStatus,
    effective_at: datetime,
    source: ChangeSource,
    invoice_now: bool,
    to_version: str | None = None,
    direction: ChangeDirection | None = None,
    policy: ChangePolicy | None = None,
    credit_unused: bool | None = None,
) -> SubscriptionChange:
    change = SubscriptionChange(
        id=new_id("schg"),
        subscription_id=subscription.id,
        kind=str(kind),
        status=str(status),
        from_plan_version_id=subscription.plan_version_id,
        to_plan_version_id=to_version,
        direction=str(direction) if direction else None,
        policy=str(policy) if policy else None,
        credit_unused=credit_unused,
        invoice_now=invoice_now,
        source=str(source),
        effective_at=effective_at,
        requested_at=tx.now(),
        applied_at=tx.now() if status == ChangeStatus.APPLIED else None,
    )
    tx.session.add(change)
    state.change_recorded(tx, subscription.id)
    tx.session.flush()
    return change


def credit_unused(
    tx: Tx,
    subscription: Subscription,
    period: SubscriptionPeriod,
    at: datetime,
    change: SubscriptionChange,
) -> list[PendingCharge]:
    """Credit the unused part (from ``at``) of every fee paid in advance for ``period``."""
    credits = []
    for charge in state.prepaid_charges(tx, period):
        line = proration_credit_line(state.as_prepaid(charge), at)
        if line is None:
            continue
        credits.append(
            state.record_line(
                tx,
                subscription,
                period,
                line,
                dedup_key=f"credit:{change.id}:{charge.id}",
                change_id=change.id,
                invoice_now=change.invoice_now,
                credits=charge,
            )
        )
    return credits


# Plan changes -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    terms: VersionTerms
    direction: ChangeDirection
    policy: ChangePolicy


def _target(tx: Tx, subscription: Subscription, request: ChangeRequest) -> _Target:
    param = "plan_version" if request.plan_version_id is not None else "plan"
    version = catalog.version_for_subscription(
        tx, plan_version_id=request.plan_version_id, plan=request.plan, param=param
    )
    if version.id == subscription.plan_version_id:
        raise InvalidRequest(
            SubscriptionCode.CHANGE_NOOP,
            f"the subscription is already on plan version {version.id}",
            param=param,
        )
    terms = state.terms_of(tx, version.id)
    if terms.currency != subscription.currency:
        raise InvalidRequest(
            SubscriptionCode.CURRENCY_MISMATCH,
            f"the plan bills in {terms.currency} but the subscription in {subscription.currency}",
            param=param,
        )
    current = state.terms_of(tx, subscription.plan_version_id)
    direction = classify_change(current, terms)
    policy = request.policy or current.change_policies.for_direction(direction)
    return _Target(terms, direction, policy)


def change_plan(
    tx: Tx, subscription_id: str, request: ChangeRequest, *, preview: bool = False
) -> ChangeResult:
    """Move a subscription to another published plan version (see the module docstring)."""
    subscription = state.lock(tx, subscription_id)
    state.require_not_canceled(subscription)
    with state.sandbox(tx, preview):
        now = floor_to_second(tx.now())
        lifecycle.advance(tx, subscription, now)
        state.require_not_canceled(subscription)
        if subscription.cancel_at_period_end:
            raise Conflict(
                SubscriptionCode.CANCEL_SCHEDULED,
                "the subscription cancels at period end; resume it before changing plans",
                param="subscription",
            )
        target = _target(tx, subscription, request)
        status = Status(subscription.status)
        if status in (Status.TRIALING, Status.PAUSED):
            # Nothing is billed in a trial or a pause: the change applies at once, no charges.
            change, lines = _switch_unbilled(tx, subscription, target, now, request)
        elif target.policy == ChangePolicy.PERIOD_END:
            change, lines = _schedule(tx, subscription, target, request)
        else:
            state.cancel_scheduled(tx, subscription, kind=ChangeKind.PLAN_CHANGE)
            change, lines = _apply_now(tx, subscription, target, now, request)
        subscription.updated_at = tx.now()
        tx.session.flush()
        return state.result(tx, subscription, change, lines, preview=preview)


def _schedule(
    tx: Tx, subscription: Subscription, target: _Target, request: ChangeRequest
) -> tuple[SubscriptionChange, list[PendingCharge]]:
    if state.scheduled_change(tx, subscription.id) is not None:
        raise Conflict(
            SubscriptionCode.CHANGE_ALREADY_SCHEDULED,
            "a change is already scheduled at period end; cancel it first",
            param="subscription",
        )
    invariant(
        subscription.current_period_end_at is not None, "a renewing subscription has a period"
    )
    change = _new_change(
        tx,
        subscription,
        kind=ChangeKind.PLAN_CHANGE,
        status=ChangeStatus.SCHEDULED,
        effective_at=subscription.current_period_end_at,  # type: ignore[arg-type]
        source=request.source,
        invoice_now=request.invoice_now,
        to_version=target.terms.plan_version_id,
        direction=target.direction,
        policy=target.policy,
    )
    lifecycle.emit(tx, "subscription.updated", subscription, reason="change_scheduled")
    return change, []


def _switch_unbilled(
    tx: Tx, subscription: Subscription, target: _Target, now: datetime, request: ChangeRequest
) -> tuple[SubscriptionChange, list[PendingCharge]]:
    state.cancel_scheduled(tx, subscription, kind=ChangeKind.PLAN_CHANGE)
    change = _new_change(
        tx,
        subscription,
        kind=ChangeKind.PLAN_CHANGE,
        status=ChangeStatus.APPLIED,
        effective_at=now,
        source=request.source,
        invoice_now=request.invoice_now,
        to_version=target.terms.plan_version_id,
        direction=target.direction,
        policy=ChangePolicy.NOW_WITHOUT_PRORATION,
    )
    phase = state.current_phase(tx, subscription)
    state.close_phase(phase, now)
    anchor = phase.billing_anchor_at or now
    state.open_phase(tx, subscription, target.terms, now, anchor, change_id=change.id)
    _emit_changed(tx, subscription, change)
    return change, []


def _apply_now(
    tx: Tx, subscription: Subscription, target: _Target, now: datetime, request: ChangeRequest
) -> tuple[SubscriptionChange, list[PendingCharge]]:
    period = state.current_period(tx, subscription)
    invariant(
        period is not None and period.start_at <= now < period.end_at,
        "an immediate change happens inside the current period",
    )
    assert period is not None
    old_phase = state.current_phase(tx, subscription)
    old_terms = state.terms_of(tx, old_phase.plan_version_id)
    change = _new_change(
        tx,
        subscription,
        kind=ChangeKind.PLAN_CHANGE,
        status=ChangeStatus.APPLIED,
        effective_at=now,
        source=request.source,
        invoice_now=request.invoice_now,
        to_version=target.terms.plan_version_id,
        direction=target.direction,
        policy=target.policy,
    )
    lines: list[PendingCharge] = []
    if target.policy == ChangePolicy.PRORATE_NOW:
        lines += credit_unused(tx, subscription, period, now, change)
    state.close_phase(old_phase, now)
    interval_changed = old_terms.interval != target.terms.interval
    anchor = now if interval_changed else old_phase.billing_anchor_at
    invariant(anchor is not None, "a billed phase has an anchor")
    phase = state.open_phase(tx, subscription, target.terms, now, anchor, change_id=change.id)  # type: ignore[arg-type]
    tx.session.flush()
    if interval_changed:
        # A new interval starts a new period now, charged in full; the old one ends here.
        subscription.anchor_is_explicit = False
        state.end_period(period, now, "interval_changed")
        new_period = state.open_period(tx, subscription, target.terms, now, anchor=now)
        tx.session.flush()
        lines += lifecycle.charge_period_fees(
            tx,
            subscription,
            new_period,
            target.terms,
            phase,
            change_id=change.id,
            invoice_now=request.invoice_now,
        )
        state.refresh_next_action(subscription)
    elif target.policy == ChangePolicy.PRORATE_NOW:
        for line in proration_charge_lines(
            target.terms, state.billing_period(period), now, phase_id=phase.id
        ):
            lines.append(
                state.record_line(
                    tx,
                    subscription,
                    period,
                    line,
                    dedup_key=f"prorate:{change.id}:{line.price_id}",
                    change_id=change.id,
                    invoice_now=request.invoice_now,
                )
            )
    _emit_changed(tx, subscription, change)
    return change, lines


def _emit_changed(tx: Tx, subscription: Subscription, change: SubscriptionChange) -> None:
    tx.session.flush()
    lifecycle.emit(
        tx,
        "subscription.plan_changed",
        subscription,
        change_id=change.id,
        from_plan_version=change.from_plan_version_id,
        to_plan_version=change.to_plan_version_id,
        direction=change.direction,
        policy=change.policy,
        effective_at=change.effective_at,
    )


def cancel_scheduled_change(tx: Tx, subscription_id: str) -> SubscriptionView:
    """Withdraw a plan change scheduled for period end."""
    subscription = state.lock(tx, subscription_id)
    state.require_not_canceled(subscription)
    scheduled = state.scheduled_change(tx, subscription.id)
    if scheduled is None or scheduled.kind != ChangeKind.PLAN_CHANGE:
        raise Conflict(
            SubscriptionCode.NO_SCHEDULED_CHANGE,
            "no plan change is scheduled (to revoke a cancellation, resume the subscription)",
            param="subscription",
        )
    state.cancel_scheduled(tx, subscription, kind=ChangeKind.PLAN_CHANGE)
    subscription.updated_at = tx.now()
    lifecycle.emit(tx, "subscription.updated", subscription, reason="change_canceled")
    return state.view(tx, subscription)


# Cancellation and resumption --------------------------------------------------------------


def cancel(
    tx: Tx, subscription_id: str, request: CancelRequest, *, preview: bool = False
) -> ChangeResult:
    """Cancel at period end (revocable with :func:`resume` until then) or now. Cancelling
    now credits the unused part of fees paid in advance when the call says so, or else
    when the version's ``cancellation_credit`` is ``prorate``. A trial (or a pause) has
    nothing to credit."""
    subscription = state.lock(tx, subscription_id)
    state.require_not_canceled(subscription)
    with state.sandbox(tx, preview):
        now = floor_to_second(tx.now())
        lifecycle.advance(tx, subscription, now)
        state.require_not_canceled(subscription)
        status = Status(subscription.status)
        if request.at == CancelAt.PERIOD_END and status != Status.PAUSED:
            change = _schedule_cancel(tx, subscription, request)
            return state.result(tx, subscription, change, [], preview=preview)
        terms = state.terms_of(tx, subscription.plan_version_id)
        credit = (
            request.credit_unused
            if request.credit_unused is not None
            else terms.cancellation_credit == CancellationCredit.PRORATE
        )
        change = _new_change(
            tx,
            subscription,
            kind=ChangeKind.CANCEL,
            status=ChangeStatus.APPLIED,
            effective_at=now,
            source=ChangeSource.API,
            invoice_now=request.invoice_now,
            credit_unused=credit,
        )
        lines: list[PendingCharge] = []
        period = state.current_period(tx, subscription)
        if credit and period is not None and period.status == state.CURRENT:
            lines = credit_unused(tx, subscription, period, now, change)
        lifecycle.finish_cancel(
            tx, subscription, now, reason=request.reason or "requested", change=change
        )
        return state.result(tx, subscription, change, lines, preview=preview)


def _schedule_cancel(
    tx: Tx, subscription: Subscription, request: CancelRequest
) -> SubscriptionChange:
    existing = state.scheduled_change(tx, subscription.id)
    if existing is not None and existing.kind == ChangeKind.CANCEL:
        return existing  # already set to cancel at period end
    # A cancellation supersedes a scheduled plan change.
    state.cancel_scheduled(tx, subscription)
    end = subscription.current_period_end_at
    invariant(end is not None, "a subscription with a period has a period end")
    change = _new_change(
        tx,
        subscription,
        kind=ChangeKind.CANCEL,
        status=ChangeStatus.SCHEDULED,
        effective_at=end,  # type: ignore[arg-type]
        source=ChangeSource.API,
        invoice_now=request.invoice_now,
    )
    subscription.cancel_at_period_end = True
    subscription.cancellation_reason = request.reason
    subscription.updated_at = tx.now()
    lifecycle.emit(tx, "subscription.updated", subscription, reason="cancel_scheduled")
    return change


def resume(tx: Tx, subscription_id: str, *, preview: bool = False) -> ChangeResult:
    """Revoke a cancellation scheduled for period end, or resume a paused subscription (a
    new period starts now, and its fees are charged)."""
    subscription = state.lock(tx, subscription_id)
    state.require_not_canceled(subscription)
    with state.sandbox(tx, preview):
        now = floor_to_second(tx.now())
        lifecycle.advance(tx, subscription, now)
        state.require_not_canceled(subscription)
        lines: list[PendingCharge] = []
        if subscription.status == Status.PAUSED:
            lines = lifecycle.resume_paused(tx, subscription, now)
            lifecycle.emit(tx, "subscription.updated", subscription, reason="resumed")
        elif subscription.cancel_at_period_end:
            state.cancel_scheduled(tx, subscription, kind=ChangeKind.CANCEL)
            subscription.cancellation_reason = None
            subscription.updated_at = tx.now()
            lifecycle.emit(tx, "subscription.updated", subscription, reason="cancel_revoked")
        else:
            raise Conflict(
                SubscriptionCode.NOTHING_TO_RESUME,
                "the subscription is neither paused nor set to cancel at period end",
                param="subscription",
            )
        return state.result(tx, subscription, None, lines, preview=preview)


# Migrations -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigrationOutcome:
    migrated: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (subscription id, error code)
    has_more: bool
    next_after: str | None


def migrate(
    tx: Tx,
    from_version_id: str,
    to_version_id: str,
    *,
    policy: ChangePolicy = ChangePolicy.PERIOD_END,
    after_id: str | None = None,
    limit: int = MIGRATION_BATCH_MAX,
) -> MigrationOutcome:
    """Move up to ``limit`` subscriptions from one version of a plan to another (now, or at
    their period end), in id order after ``after_id``. A subscription that cannot move (set
    to cancel, a change already scheduled) is skipped with its error code; each one's change
    runs in its own savepoint, so one refusal never undoes the others. Call again with
    ``next_after`` while ``has_more``."""
    source = catalog.get_version(tx, from_version_id, param="from_version")
    target = catalog.version_for_subscription(tx, plan_version_id=to_version_id, param="to_version")
    if source.plan_id != target.plan_id:
        raise InvalidRequest(
            SubscriptionCode.MIGRATION_PLAN_MISMATCH,
            "migrations move subscriptions between versions of one plan",
            param="to_version",
        )
    if source.id == target.id:
        raise InvalidRequest(
            SubscriptionCode.CHANGE_NOOP, "from and to are the same version", param="to_version"
        )
    limit = max(1, min(limit, MIGRATION_BATCH_MAX))
    ids = repository.on_version(tx, source.id, after_id=after_id, limit=limit + 1)
    batch, has_more = ids[:limit], len(ids) > limit
    migrated, skipped = [], []
    request = ChangeRequest(plan_version_id=target.id, policy=policy, source=ChangeSource.MIGRATION)
    for subscription_id in batch:
        scheduled = state.scheduled_change(tx, subscription_id)
        if scheduled is not None and scheduled.to_plan_version_id == target.id:
            skipped.append((subscription_id, "already_scheduled"))
            continue
        savepoint = tx.session.begin_nested()
        try:
            change_plan(tx, subscription_id, request)
        except TallybookError as error:
            savepoint.rollback()
            skipped.append((subscription_id, error.code))
            continue
        savepoint.commit()
        migrated.append(subscription_id)
    return MigrationOutcome(
        migrated=tuple(migrated),
        skipped=tuple(skipped),
        has_more=has_more,
        next_after=batch[-1] if batch and has_more else None,
    )
