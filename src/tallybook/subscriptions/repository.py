"""All SQL for subscriptions, phases, periods, changes and pending charges."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, or_, select

from tallybook.catalog.repository import page_rows
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest
from tallybook.subscriptions.models import (
    PendingCharge,
    Subscription,
    SubscriptionChange,
    SubscriptionPeriod,
    SubscriptionPhase,
)


def get(tx: Tx, subscription_id: str, *, for_update: bool = False) -> Subscription | None:
    if for_update and tx.is_postgres:
        # Every change to a subscription holds its row lock: two requests (or a request and
        # the renewal job) never both read the same period's charges and credit them twice.
        return tx.session.scalar(
            select(Subscription)
            .where(Subscription.id == subscription_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    return tx.session.get(Subscription, subscription_id)


def lock_many(tx: Tx, subscription_ids: Sequence[str], *, skip_locked: bool) -> list[Subscription]:
    """Lock the subscriptions' rows in id order (a fixed order, so two lockers never deadlock);
    with ``skip_locked`` the ones another transaction holds are left out (PostgreSQL; SQLite
    has one writer at a time anyway). Returned in id order."""
    ids = sorted(set(subscription_ids))
    if not ids:
        return []
    query = (
        select(Subscription)
        .where(Subscription.id.in_(ids))
        .order_by(Subscription.id)
        .execution_options(populate_existing=True)
    )
    if tx.is_postgres:
        query = query.with_for_update(skip_locked=skip_locked)
    return list(tx.session.scalars(query))


def load_current_rows(
    tx: Tx, subscriptions: Sequence[Subscription]
) -> list[SubscriptionPeriod | SubscriptionPhase]:
    """Load the current period and phase of many subscriptions in two statements, so that
    :func:`get_period` and :func:`get_phase` find them in the session afterwards (the session
    holds rows weakly: keep the returned list while they are needed)."""
    period_ids = sorted({s.current_period_id for s in subscriptions if s.current_period_id})
    phase_ids = sorted({s.current_phase_id for s in subscriptions if s.current_phase_id})
    rows: list[SubscriptionPeriod | SubscriptionPhase] = []
    if period_ids:
        rows.extend(
            tx.session.scalars(
                select(SubscriptionPeriod).where(SubscriptionPeriod.id.in_(period_ids))
            )
        )
    if phase_ids:
        rows.extend(
            tx.session.scalars(select(SubscriptionPhase).where(SubscriptionPhase.id.in_(phase_ids)))
        )
    return rows


def page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    plan_version_id: str | None = None,
) -> list[Subscription]:
    query = select(Subscription)
    if customer_id is not None:
        query = query.where(Subscription.customer_id == customer_id)
    if status is not None:
        query = query.where(Subscription.status == status)
    if plan_version_id is not None:
        query = query.where(Subscription.plan_version_id == plan_version_id)
    return page_rows(tx, query, Subscription.id, request)


def of_customer(
    tx: Tx, customer_id: str, *, include_canceled: bool, limit: int
) -> list[Subscription]:
    query = select(Subscription).where(Subscription.customer_id == customer_id)
    if not include_canceled:
        query = query.where(Subscription.status != "canceled")
    return list(tx.session.scalars(query.order_by(Subscription.id).limit(limit)))


def due(
    tx: Tx, now: datetime, *, after: tuple[datetime, str] | None, limit: int
) -> list[tuple[datetime, str]]:
    """(deadline, id) of subscriptions with a period or a trial ending by ``now``, oldest
    deadline first, after the cursor ``after``."""
    query = select(Subscription.next_action_at, Subscription.id).where(
        Subscription.next_action_at.is_not(None), Subscription.next_action_at <= now
    )
    if after is not None:
        query = query.where(
            or_(
                Subscription.next_action_at > after[0],
                and_(Subscription.next_action_at == after[0], Subscription.id > after[1]),
            )
        )
    rows = tx.session.execute(
        query.order_by(Subscription.next_action_at, Subscription.id).limit(limit)
    )
    return [(at, subscription_id) for at, subscription_id in rows if at is not None]


def on_version(tx: Tx, plan_version_id: str, *, after_id: str | None, limit: int) -> list[str]:
    query = select(Subscription.id).where(
        Subscription.plan_version_id == plan_version_id, Subscription.status != "canceled"
    )
    if after_id is not None:
        query = query.where(Subscription.id > after_id)
    return list(tx.session.scalars(query.order_by(Subscription.id).limit(limit)))


def with_period_ending_between(
    tx: Tx, start: datetime, end: datetime, *, limit: int
) -> list[Subscription]:
    return list(
        tx.session.scalars(
            select(Subscription)
            .where(
                Subscription.current_period_end_at >= start,
                Subscription.current_period_end_at < end,
                Subscription.status.in_(["active", "past_due", "unpaid", "trialing"]),
            )
            .order_by(Subscription.current_period_end_at, Subscription.id)
            .limit(limit)
        )
    )


# Phases -----------------------------------------------------------------------------------


def get_phase(tx: Tx, phase_id: str) -> SubscriptionPhase | None:
    return tx.session.get(SubscriptionPhase, phase_id)


def phases(tx: Tx, subscription_id: str) -> list[SubscriptionPhase]:
    return list(
        tx.session.scalars(
            select(SubscriptionPhase)
            .where(SubscriptionPhase.subscription_id == subscription_id)
            .order_by(SubscriptionPhase.start_at, SubscriptionPhase.id)
        )
    )


def phases_overlapping(
    tx: Tx, subscription_id: str, start: datetime, end: datetime
) -> list[SubscriptionPhase]:
    """Phases with a non-empty overlap with ``[start, end)``."""
    return list(
        tx.session.scalars(
            select(SubscriptionPhase)
            .where(
                SubscriptionPhase.subscription_id == subscription_id,
                SubscriptionPhase.start_at < end,
                or_(SubscriptionPhase.end_at.is_(None), SubscriptionPhase.end_at > start),
                or_(
                    SubscriptionPhase.end_at.is_(None),
                    SubscriptionPhase.end_at > SubscriptionPhase.start_at,
                ),
            )
            .order_by(SubscriptionPhase.start_at, SubscriptionPhase.id)
        )
    )


# Periods ----------------------------------------------------------------------------------


def get_period(tx: Tx, period_id: str) -> SubscriptionPeriod | None:
    return tx.session.get(SubscriptionPeriod, period_id)


def periods(tx: Tx, subscription_id: str) -> list[SubscriptionPeriod]:
    return list(
        tx.session.scalars(
            select(SubscriptionPeriod)
            .where(SubscriptionPeriod.subscription_id == subscription_id)
            .order_by(SubscriptionPeriod.start_at, SubscriptionPeriod.id)
        )
    )


def period_containing(tx: Tx, subscription_id: str, at: datetime) -> SubscriptionPeriod | None:
    return tx.session.scalar(
        select(SubscriptionPeriod)
        .where(
            SubscriptionPeriod.subscription_id == subscription_id,
            SubscriptionPeriod.start_at <= at,
            SubscriptionPeriod.end_at > at,
        )
        .order_by(SubscriptionPeriod.start_at.desc())
        .limit(1)
    )


def ended_periods(
    tx: Tx,
    ended_from: datetime,
    ended_before: datetime,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[SubscriptionPeriod]:
    query = select(SubscriptionPeriod).where(
        SubscriptionPeriod.status == "ended",
        SubscriptionPeriod.kind == "regular",
        SubscriptionPeriod.end_at >= ended_from,
        SubscriptionPeriod.end_at < ended_before,
    )
    if after is not None:
        query = query.where(
            or_(
                SubscriptionPeriod.end_at > after[0],
                and_(SubscriptionPeriod.end_at == after[0], SubscriptionPeriod.id > after[1]),
            )
        )
    return list(
        tx.session.scalars(
            query.order_by(SubscriptionPeriod.end_at, SubscriptionPeriod.id).limit(limit)
        )
    )


# Changes ----------------------------------------------------------------------------------


def get_change(tx: Tx, change_id: str) -> SubscriptionChange | None:
    return tx.session.get(SubscriptionChange, change_id)


def scheduled_changes(tx: Tx, subscription_id: str) -> list[SubscriptionChange]:
    return list(
        tx.session.scalars(
            select(SubscriptionChange)
            .where(
                SubscriptionChange.subscription_id == subscription_id,
                SubscriptionChange.status == "scheduled",
            )
            .order_by(SubscriptionChange.effective_at, SubscriptionChange.id)
        )
    )


def with_scheduled_change(tx: Tx, subscription_ids: Sequence[str]) -> set[str]:
    """Which of the subscriptions have a scheduled change."""
    if not subscription_ids:
        return set()
    return set(
        tx.session.scalars(
            select(SubscriptionChange.subscription_id)
            .where(
                SubscriptionChange.subscription_id.in_(list(subscription_ids)),
                SubscriptionChange.status == "scheduled",
            )
            .distinct()
        )
    )


def changes(tx: Tx, subscription_id: str, *, limit: int) -> list[SubscriptionChange]:
    return list(
        tx.session.scalars(
            select(SubscriptionChange)
            .where(SubscriptionChange.subscription_id == subscription_id)
            .order_by(SubscriptionChange.id.desc())
            .limit(limit)
        )
    )


# Pending charges --------------------------------------------------------------------------


def charges_of_period(tx: Tx, period_id: str) -> list[PendingCharge]:
    return list(
        tx.session.scalars(
            select(PendingCharge)
            .where(PendingCharge.period_id == period_id)
            .order_by(PendingCharge.created_at, PendingCharge.id)
        )
    )


def charges_of_change(tx: Tx, change_id: str) -> list[PendingCharge]:
    return list(
        tx.session.scalars(
            select(PendingCharge)
            .where(PendingCharge.change_id == change_id)
            .order_by(PendingCharge.id)
        )
    )


def charges(
    tx: Tx,
    subscription_id: str,
    *,
    status: str | None,
    service_start_up_to: datetime | None,
    limit: int,
) -> list[PendingCharge]:
    query = select(PendingCharge).where(PendingCharge.subscription_id == subscription_id)
    if status is not None:
        query = query.where(PendingCharge.status == status)
    if service_start_up_to is not None:
        query = query.where(PendingCharge.service_start_at <= service_start_up_to)
    return list(
        tx.session.scalars(
            query.order_by(PendingCharge.service_start_at, PendingCharge.id).limit(limit)
        )
    )


def charges_by_id(tx: Tx, charge_ids: Sequence[str], *, for_update: bool) -> list[PendingCharge]:
    query = select(PendingCharge).where(PendingCharge.id.in_(list(charge_ids)))
    if for_update and tx.is_postgres:
        query = query.order_by(PendingCharge.id).with_for_update()
    return list(tx.session.scalars(query))


def charge_by_dedup_key(tx: Tx, dedup_key: str) -> PendingCharge | None:
    return tx.session.scalar(select(PendingCharge).where(PendingCharge.dedup_key == dedup_key))
