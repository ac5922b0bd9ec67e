"""The entitlements domain's SQL through SQLAlchemy (both backends). The PostgreSQL hot path
of the check has its own statements in ``fast_pg.py``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Select, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.entitlements.models import (
    EntitlementOverride,
    LimitAlert,
    Reservation,
    ReservationLock,
    SpendLimit,
)
from tallybook.kit.pagination import PageRequest

SelectT = TypeVar("SelectT", bound=Select[Any])


def _locked(tx: Tx, query: SelectT) -> SelectT:
    # SQLite serializes writers (BEGIN IMMEDIATE); FOR UPDATE is PostgreSQL's.
    return query.with_for_update() if tx.is_postgres else query


def _page(tx: Tx, query: Select[Any], key: Any, request: PageRequest) -> list[Any]:
    if request.ending_before is not None:
        rows = list(
            tx.session.scalars(
                query.where(key > request.ending_before)
                .order_by(key.asc())
                .limit(request.limit + 1)
            )
        )
        rows.reverse()
        return rows
    if request.starting_after is not None:
        query = query.where(key < request.starting_after)
    return list(tx.session.scalars(query.order_by(key.desc()).limit(request.limit + 1)))


# Overrides ------------------------------------------------------------------------------------


def live_override(
    tx: Tx, customer_id: str, feature_id: str, now: datetime
) -> EntitlementOverride | None:
    return tx.session.scalar(
        select(EntitlementOverride)
        .where(
            EntitlementOverride.customer_id == customer_id,
            EntitlementOverride.feature_id == feature_id,
            EntitlementOverride.status == "active",
            EntitlementOverride.starts_at <= now,
            or_(EntitlementOverride.expires_at.is_(None), EntitlementOverride.expires_at > now),
        )
        .order_by(EntitlementOverride.created_at.desc(), EntitlementOverride.id.desc())
        .limit(1)
    )


def live_overrides(tx: Tx, customer_id: str, now: datetime) -> list[EntitlementOverride]:
    return list(
        tx.session.scalars(
            select(EntitlementOverride)
            .where(
                EntitlementOverride.customer_id == customer_id,
                EntitlementOverride.status == "active",
                EntitlementOverride.starts_at <= now,
                or_(
                    EntitlementOverride.expires_at.is_(None),
                    EntitlementOverride.expires_at > now,
                ),
            )
            .order_by(EntitlementOverride.created_at, EntitlementOverride.id)
        )
    )


def active_overrides_for_update(
    tx: Tx, customer_id: str, feature_id: str
) -> list[EntitlementOverride]:
    """Every active override of the pair (including ones that start later), locked."""
    return list(
        tx.session.scalars(
            _locked(
                tx,
                select(EntitlementOverride).where(
                    EntitlementOverride.customer_id == customer_id,
                    EntitlementOverride.feature_id == feature_id,
                    EntitlementOverride.status == "active",
                ),
            )
        )
    )


def get_override(tx: Tx, override_id: str) -> EntitlementOverride | None:
    return tx.session.get(EntitlementOverride, override_id)


def overrides_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None,
    feature_id: str | None,
    status: str | None,
) -> list[EntitlementOverride]:
    query = select(EntitlementOverride)
    if customer_id is not None:
        query = query.where(EntitlementOverride.customer_id == customer_id)
    if feature_id is not None:
        query = query.where(EntitlementOverride.feature_id == feature_id)
    if status is not None:
        query = query.where(EntitlementOverride.status == status)
    return _page(tx, query, EntitlementOverride.id, request)


# Reservations ---------------------------------------------------------------------------------


def reserved_quantity(tx: Tx, customer_id: str, feature_id: str, now: datetime) -> Decimal:
    """Units held by open, unexpired reservations (summed in Python: SQLite keeps decimals as
    text)."""
    rows = tx.session.execute(
        select(Reservation.quantity).where(
            Reservation.customer_id == customer_id,
            Reservation.feature_id == feature_id,
            Reservation.status == "open",
            Reservation.expires_at > now,
            Reservation.quantity.is_not(None),
        )
    )
    return sum((row[0] for row in rows if row[0] is not None), start=Decimal(0))


def lock_reservations(tx: Tx, customer_id: str, feature_id: str, period_start: datetime) -> None:
    """Take the (customer, feature, period) lock row, creating it on first use."""
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    tx.session.execute(
        insert(ReservationLock)
        .values(
            customer_id=customer_id,
            feature_id=feature_id,
            period_start=period_start,
            created_at=tx.now(),
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "feature_id", "period_start"])
    )
    if tx.is_postgres:
        tx.session.execute(
            select(ReservationLock.customer_id)
            .where(
                ReservationLock.customer_id == customer_id,
                ReservationLock.feature_id == feature_id,
                ReservationLock.period_start == period_start,
            )
            .with_for_update()
        )


def get_reservation(tx: Tx, reservation_id: str, *, for_update: bool = False) -> Reservation | None:
    if for_update:
        return tx.session.scalar(
            _locked(
                tx, select(Reservation).where(Reservation.id == reservation_id)
            ).execution_options(populate_existing=True)
        )
    return tx.session.get(Reservation, reservation_id)


def reservations_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None,
    status: str | None,
) -> list[Reservation]:
    query = select(Reservation)
    if customer_id is not None:
        query = query.where(Reservation.customer_id == customer_id)
    if status is not None:
        query = query.where(Reservation.status == status)
    return _page(tx, query, Reservation.id, request)


def due_reservations(tx: Tx, now: datetime, *, limit: int) -> list[str]:
    rows = tx.session.execute(
        select(Reservation.id)
        .where(Reservation.status == "open", Reservation.expires_at <= now)
        .order_by(Reservation.expires_at, Reservation.id)
        .limit(limit)
    )
    return [row[0] for row in rows]


# Spend limits and alerts -----------------------------------------------------------------------


def spend_limit(tx: Tx, customer_id: str) -> SpendLimit | None:
    return tx.session.get(SpendLimit, customer_id)


def spend_limit_customers(tx: Tx, *, after: str | None, limit: int) -> list[str]:
    query = select(SpendLimit.customer_id).order_by(SpendLimit.customer_id).limit(limit)
    if after is not None:
        query = query.where(SpendLimit.customer_id > after)
    return [row[0] for row in tx.session.execute(query)]


def fired_alerts(
    tx: Tx, customer_id: str, subject: str, period_start: datetime
) -> set[tuple[str, int]]:
    rows = tx.session.execute(
        select(LimitAlert.kind, LimitAlert.threshold_percent).where(
            LimitAlert.customer_id == customer_id,
            LimitAlert.subject == subject,
            LimitAlert.period_start == period_start,
        )
    )
    return {(row[0], row[1]) for row in rows}


def insert_alert(tx: Tx, values: dict[str, Any]) -> bool:
    """Insert unless (customer, subject, period, kind, threshold) fired already."""
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    inserted = tx.session.execute(
        insert(LimitAlert)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["customer_id", "subject", "period_start", "kind", "threshold_percent"]
        )
        .returning(LimitAlert.id)
    ).first()
    return inserted is not None


def alerts_page(tx: Tx, request: PageRequest, *, customer_id: str | None) -> list[LimitAlert]:
    query = select(LimitAlert)
    if customer_id is not None:
        query = query.where(LimitAlert.customer_id == customer_id)
    return _page(tx, query, LimitAlert.id, request)


def mark_reservations(tx: Tx, ids: Sequence[str], *, status: str, now: datetime) -> None:
    if ids:
        tx.session.execute(
            update(Reservation)
            .where(Reservation.id.in_(list(ids)), Reservation.status == "open")
            .values(status=status, resolved_at=now)
            .execution_options(synchronize_session=False)
        )
