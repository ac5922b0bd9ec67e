"""Building blocks shared by the subscription use cases: locking, phases, periods, pending
charges and the preview sandbox. Internal to ``subscriptions.service``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Final

from tallybook.catalog import plans as catalog
from tallybook.catalog.domain import VersionTerms
from tallybook.db import Tx
from tallybook.kit.errors import Conflict, NotFound
from tallybook.kit.hashing import json_dumps, json_loads
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant
from tallybook.rating import BillingPeriod, LineKind, PrepaidCharge, RatedLine
from tallybook.subscriptions import repository
from tallybook.subscriptions.domain import RENEWING, ChangeStatus, Status
from tallybook.subscriptions.errors import SubscriptionCode
from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
    SubscriptionPhase,
)
from tallybook.subscriptions.periods import period_containing
from tallybook.subscriptions.views import (
    ChangeResult,
    ChangeView,
    PendingChargeView,
    SubscriptionView,
)

TRIAL: Final = "trial"
REGULAR: Final = "regular"
CURRENT: Final = "current"
ENDED: Final = "ended"
PENDING: Final = "pending"
INVOICED: Final = "invoiced"

#: Session key: ids of subscriptions :func:`preload` found without a scheduled change.
_WITHOUT_SCHEDULED_CHANGE: Final = "subscriptions.without_scheduled_change"

#: Kinds of pending charge that paid for time in advance, and so may be credited back.
PREPAID_KINDS: Final = frozenset({str(LineKind.FEE_ADVANCE), str(LineKind.PRORATION_CHARGE)})


@contextmanager
def sandbox(tx: Tx, preview: bool) -> Iterator[None]:
    """Run a use case for real, or (``preview``) inside a savepoint that is always rolled
    back: the preview runs exactly the code that would run, and keeps nothing. Build the
    result inside the block (rows created in it are gone afterwards)."""
    if not preview:
        yield
        return
    savepoint = tx.session.begin_nested()
    try:
        yield
    finally:
        savepoint.rollback()


def lock(tx: Tx, subscription_id: str) -> Subscription:
    subscription = repository.get(tx, subscription_id, for_update=True)
    if subscription is None:
        raise NotFound("subscription", subscription_id)
    return subscription


def preload(tx: Tx, subscriptions: Sequence[Subscription]) -> list[object]:
    """Load what advancing many subscriptions reads, a few statements for all of them: their
    current periods and phases, their plan versions and plans (so each ``terms_of`` reads
    them from the session), and which have no scheduled change (so :func:`scheduled_change`
    need not ask; :func:`change_recorded` forgets it when a change is recorded). The session holds rows weakly: keep the returned list alive while
    the subscriptions are worked on."""
    rows: list[object] = list(repository.load_current_rows(tx, subscriptions))
    ids = {s.id for s in subscriptions}
    known = tx.session.info.setdefault(_WITHOUT_SCHEDULED_CHANGE, set())
    known |= ids - repository.with_scheduled_change(tx, sorted(ids))
    for version_id in sorted({s.plan_version_id for s in subscriptions}):
        version = catalog.get_version(tx, version_id)
        rows.extend((version, catalog.get_plan(tx, version.plan_id)))
    return rows


def change_recorded(tx: Tx, subscription_id: str) -> None:
    """A change was recorded for the subscription: forget that :func:`preload` saw none."""
    tx.session.info.get(_WITHOUT_SCHEDULED_CHANGE, set()).discard(subscription_id)


def require_not_canceled(subscription: Subscription) -> None:
    if subscription.status == Status.CANCELED:
        raise Conflict(
            SubscriptionCode.CANCELED,
            f"subscription {subscription.id} is canceled",
            param="subscription",
        )


def terms_of(tx: Tx, version_id: str) -> VersionTerms:
    return catalog.version_terms(tx, version_id)


def current_phase(tx: Tx, subscription: Subscription) -> SubscriptionPhase:
    invariant(subscription.current_phase_id is not None, "subscription without a phase")
    phase = repository.get_phase(tx, subscription.current_phase_id)  # type: ignore[arg-type]
    invariant(phase is not None, "current phase row missing")
    return phase  # type: ignore[return-value]


def current_period(tx: Tx, subscription: Subscription) -> SubscriptionPeriod | None:
    if subscription.current_period_id is None:
        return None
    return repository.get_period(tx, subscription.current_period_id)


def scheduled_change(tx: Tx, subscription_id: str) -> SubscriptionChange | None:
    if subscription_id in tx.session.info.get(_WITHOUT_SCHEDULED_CHANGE, ()):
        return None  # known from preload(), and no change was recorded since
    scheduled = repository.scheduled_changes(tx, subscription_id)
    invariant(len(scheduled) <= 1, "at most one scheduled change per subscription")
    return scheduled[0] if scheduled else None


def view(tx: Tx, subscription: Subscription) -> SubscriptionView:
    tx.session.flush()
    return SubscriptionView.of(subscription, scheduled_change(tx, subscription.id))


def result(
    tx: Tx,
    subscription: Subscription,
    change: SubscriptionChange | None,
    lines: Sequence[PendingCharge],
    *,
    preview: bool,
) -> ChangeResult:
    tx.session.flush()
    return ChangeResult(
        preview=preview,
        subscription=view(tx, subscription),
        change=ChangeView.of(change) if change is not None else None,
        lines=tuple(PendingChargeView.of(line) for line in lines),
    )


def refresh_next_action(subscription: Subscription) -> None:
    """When the scheduler must next look at the subscription."""
    status = Status(subscription.status)
    if status == Status.TRIALING:
        subscription.next_action_at = subscription.trial_end_at
    elif status in RENEWING:
        subscription.next_action_at = subscription.current_period_end_at
    else:
        subscription.next_action_at = None


# Phases -----------------------------------------------------------------------------------


def open_phase(
    tx: Tx,
    subscription: Subscription,
    terms: VersionTerms,
    start: datetime,
    anchor: datetime,
    *,
    change_id: str | None,
) -> SubscriptionPhase:
    phase = SubscriptionPhase(
        id=new_id("sph"),
        subscription_id=subscription.id,
        plan_version_id=terms.plan_version_id,
        start_at=start,
        end_at=None,
        billing_anchor_at=anchor,
        change_id=change_id,
        created_at=tx.now(),
    )
    tx.session.add(phase)
    subscription.current_phase_id = phase.id
    subscription.plan_version_id = terms.plan_version_id
    subscription.plan_id = terms.plan_id
    subscription.billing_anchor_at = anchor
    return phase


def close_phase(phase: SubscriptionPhase, at: datetime) -> None:
    invariant(phase.end_at is None, "closing a closed phase")
    invariant(at >= phase.start_at, "a phase cannot end before it starts")
    phase.end_at = at


# Periods ----------------------------------------------------------------------------------


def open_period(
    tx: Tx,
    subscription: Subscription,
    terms: VersionTerms,
    start: datetime,
    *,
    anchor: datetime | None = None,
    trial_end: datetime | None = None,
) -> SubscriptionPeriod:
    """Open the period that starts at ``start``: a trial period up to ``trial_end``, or the
    regular period from ``start`` to the next anchor-aligned boundary (its nominal bounds are
    the whole aligned period, so a first period after the anchor day is billed in part)."""
    if trial_end is not None:
        kind, end, nominal_start, nominal_end = TRIAL, trial_end, start, trial_end
    else:
        invariant(anchor is not None, "a regular period needs an anchor")
        nominal = period_containing(anchor, terms.interval, start)  # type: ignore[arg-type]
        kind, end, nominal_start, nominal_end = REGULAR, nominal.end, nominal.start, nominal.end
    period = SubscriptionPeriod(
        id=new_id("sper"),
        subscription_id=subscription.id,
        kind=kind,
        status=CURRENT,
        start_at=start,
        end_at=end,
        nominal_start_at=nominal_start,
        nominal_end_at=nominal_end,
        created_at=tx.now(),
    )
    tx.session.add(period)
    subscription.current_period_id = period.id
    subscription.current_period_start_at = start
    subscription.current_period_end_at = end
    return period


def end_period(period: SubscriptionPeriod, at: datetime, reason: str) -> None:
    """Close the period at ``at`` (its planned end, or earlier when cut short)."""
    invariant(period.status == CURRENT, "ending a period that already ended")
    invariant(period.start_at <= at <= period.end_at, "a period cannot end outside itself")
    period.end_at = at
    period.status = ENDED
    period.end_reason = reason


def billing_period(period: SubscriptionPeriod) -> BillingPeriod:
    return BillingPeriod(
        start=period.start_at,
        end=period.end_at,
        nominal_start=period.nominal_start_at,
        nominal_end=period.nominal_end_at,
        trial=period.kind == TRIAL,
    )


# Pending charges --------------------------------------------------------------------------


def record_line(
    tx: Tx,
    subscription: Subscription,
    period: SubscriptionPeriod,
    line: RatedLine,
    *,
    dedup_key: str,
    change_id: str | None = None,
    invoice_now: bool = False,
    credits: PendingCharge | None = None,
) -> PendingCharge:
    """Store a rated line as a pending charge (a credit also marks the charge it credits)."""
    invariant(line.currency == subscription.currency, "charge currency differs from subscription")
    charge = PendingCharge(
        id=new_id("pch"),
        subscription_id=subscription.id,
        customer_id=subscription.customer_id,
        period_id=period.id,
        change_id=change_id,
        kind=str(line.kind),
        description=line.description[:500],
        currency=line.currency,
        amount_minor=line.amount_minor,
        credited_minor=0,
        credits_charge_id=credits.id if credits is not None else None,
        price_id=line.price_id,
        price_key=line.price_key,
        plan_version_id=line.plan_version_id,
        service_start_at=line.service_start,
        service_end_at=line.service_end,
        # Stored exactly as it will read back (Decimals as strings).
        breakdown=json_loads(json_dumps(dict(line.breakdown))),
        status=PENDING,
        invoice_now=invoice_now,
        dedup_key=dedup_key,
        created_at=tx.now(),
    )
    if credits is not None:
        invariant(line.amount_minor < 0, "a credit is negative")
        credits.credited_minor += -line.amount_minor
        credits.credited_from_at = line.service_start
        invariant(
            credits.credited_minor <= credits.amount_minor,
            f"charge {credits.id} would be credited more than it charged",
        )
    tx.session.add(charge)
    return charge


def prepaid_charges(tx: Tx, period: SubscriptionPeriod) -> list[PendingCharge]:
    """The period's charges for time paid in advance that still have something to credit."""
    return [
        charge
        for charge in repository.charges_of_period(tx, period.id)
        if charge.kind in PREPAID_KINDS
        and charge.amount_minor - charge.credited_minor > 0
        and charge.credited_from_at is None
    ]


def as_prepaid(charge: PendingCharge) -> PrepaidCharge:
    label = charge.breakdown.get("label")
    description = label if isinstance(label, str) else charge.description
    return PrepaidCharge(
        charge_id=charge.id,
        amount_minor=charge.amount_minor,
        credited_minor=charge.credited_minor,
        currency=charge.currency,
        service_start=charge.service_start_at,
        service_end=charge.service_end_at,
        description=description,
        price_id=charge.price_id,
        price_key=charge.price_key,
        plan_version_id=charge.plan_version_id,
        credited_from=charge.credited_from_at,
    )


def cancel_scheduled(tx: Tx, subscription: Subscription, *, kind: str | None = None) -> None:
    """Cancel the scheduled change (of ``kind``, or any), e.g. when a newer request
    supersedes it."""
    for change in repository.scheduled_changes(tx, subscription.id):
        if kind is None or change.kind == kind:
            change.status = ChangeStatus.CANCELED
            change.canceled_at = tx.now()
            if change.kind == "cancel":
                subscription.cancel_at_period_end = False
