"""Set-based reads for a batch of invoices (the period-close job's fast path).

Closing a period through the per-subscription service calls costs about a dozen statements
(``subscriptions.period_rating_input``: the period, the subscription, its phases, each phase's
version and plan, the period's charges; ``pending_charges``; ``late_seq_max``; opening the
receivable account). For a batch of a few hundred periods these functions read the same rows
with one statement each, and build the same values:

- :func:`rating_inputs` builds the exact :class:`~tallybook.subscriptions.service.
  PeriodRatingInput` that ``subscriptions.period_rating_input`` builds (a test compares them),
  reading ``subscription_phases`` and ``subscription_charges`` read-only;
- :func:`pending_charges` reads the batch's pending charges as ``subscriptions.pending_charges``
  would;
- :func:`customers_with_late_events` reads ``metering_late_events`` (only those customers need
  the late-event protocol);
- :func:`known_accounts` finds the customers' receivable and balance accounts in
  ``ledger_accounts`` by their identity, so only first invoices open accounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select

from tallybook.catalog import plans
from tallybook.catalog.domain import VersionTerms
from tallybook.db import Tx
from tallybook.ledger.models import LedgerAccount
from tallybook.metering.models import LateEvent
from tallybook.rating import BillingPeriod, RatingPhase, usage_requests
from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionPeriod,
    SubscriptionPhase,
)
from tallybook.subscriptions.service import PeriodRatingInput
from tallybook.subscriptions.views import PendingChargeView, PeriodView

CHUNK = 500


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def billing_period(period: SubscriptionPeriod) -> BillingPeriod:
    return BillingPeriod(
        start=period.start_at,
        end=period.end_at,
        nominal_start=period.nominal_start_at,
        nominal_end=period.nominal_end_at,
        trial=period.kind == "trial",
    )


def rating_inputs(
    tx: Tx, periods: Sequence[SubscriptionPeriod], subscriptions: dict[str, Subscription]
) -> dict[str, PeriodRatingInput]:
    sub_ids = sorted({p.subscription_id for p in periods})
    phases: dict[str, list[SubscriptionPhase]] = {}
    for chunk in _chunks(sub_ids):
        query = (
            select(SubscriptionPhase)
            .where(SubscriptionPhase.subscription_id.in_(list(chunk)))
            .order_by(SubscriptionPhase.start_at, SubscriptionPhase.id)
        )
        for phase in tx.session.scalars(query):
            phases.setdefault(phase.subscription_id, []).append(phase)
    charged: dict[str, int] = {}
    for chunk in _chunks(sorted({p.id for p in periods})):
        rows = tx.session.execute(
            select(PendingCharge.period_id, func.sum(PendingCharge.amount_minor))
            .where(PendingCharge.period_id.in_(list(chunk)))
            .group_by(PendingCharge.period_id)
        )
        charged.update({period_id: int(total) for period_id, total in rows})
    terms: dict[str, VersionTerms] = {}
    result: dict[str, PeriodRatingInput] = {}
    for period in periods:
        subscription = subscriptions[period.subscription_id]
        overlapping = [
            phase
            for phase in phases.get(period.subscription_id, [])
            if phase.start_at < period.end_at
            and (phase.end_at is None or phase.end_at > period.start_at)
            and (phase.end_at is None or phase.end_at > phase.start_at)
        ]
        rating_phases = []
        for phase in overlapping:
            if phase.plan_version_id not in terms:
                terms[phase.plan_version_id] = plans.version_terms(tx, phase.plan_version_id)
            rating_phases.append(
                RatingPhase(phase.id, phase.start_at, phase.end_at, terms[phase.plan_version_id])
            )
        bp = billing_period(period)
        result[period.id] = PeriodRatingInput(
            subscription_id=subscription.id,
            customer_id=subscription.customer_id,
            currency=subscription.currency,
            period=PeriodView.of(period),
            billing_period=bp,
            phases=tuple(rating_phases),
            usage_requests=tuple(usage_requests(bp, rating_phases)),
            advance_charged_minor=charged.get(period.id, 0),
        )
    return result


def pending_charges(tx: Tx, up_to: dict[str, datetime]) -> dict[str, list[PendingChargeView]]:
    """Pending charges of each subscription whose service starts at or before ``up_to[sub]``."""
    result: dict[str, list[PendingChargeView]] = {sub: [] for sub in up_to}
    if not up_to:
        return result
    latest = max(up_to.values())
    for chunk in _chunks(sorted(up_to)):
        query = (
            select(PendingCharge)
            .where(
                PendingCharge.subscription_id.in_(list(chunk)),
                PendingCharge.status == "pending",
                PendingCharge.service_start_at <= latest,
            )
            .order_by(PendingCharge.service_start_at, PendingCharge.id)
        )
        for row in tx.session.scalars(query):
            if row.service_start_at <= up_to[row.subscription_id]:
                result[row.subscription_id].append(PendingChargeView.of(row))
    return result


def customers_with_late_events(tx: Tx, customer_ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(sorted(set(customer_ids))):
        found |= set(
            tx.session.scalars(
                select(LateEvent.customer_id)
                .where(LateEvent.customer_id.in_(list(chunk)), LateEvent.billed_at.is_(None))
                .distinct()
            )
        )
    return found


def known_accounts(
    tx: Tx, codes: Sequence[str], keys: Sequence[tuple[str, str]]
) -> dict[tuple[str, str, str | None], str]:
    """{(code, currency, customer id): account id} of existing customer accounts."""
    result: dict[tuple[str, str, str | None], str] = {}
    customers = sorted({customer for customer, _ in keys})
    for chunk in _chunks(customers):
        rows = tx.session.execute(
            select(
                LedgerAccount.code,
                LedgerAccount.currency,
                LedgerAccount.owner_id,
                LedgerAccount.id,
            ).where(
                and_(
                    LedgerAccount.owner_id.in_(list(chunk)),
                    LedgerAccount.code.in_(list(codes)),
                    or_(LedgerAccount.reference == "", LedgerAccount.reference.is_(None)),
                )
            )
        )
        for code, currency, owner, account_id in rows:
            result[(code, currency, owner)] = account_id
    return result
