"""All of the grants domain's SQL (grants, recurring grants, plan credit rules, promotion
codes and redemptions)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, func, or_, select, update

from tallybook.db import Tx
from tallybook.grants.models import (
    Grant,
    PlanCreditRule,
    PromotionCode,
    PromotionDiscountUse,
    PromotionRedemption,
    RecurringGrant,
)
from tallybook.kit.pagination import PageRequest

SelectT = TypeVar("SelectT", bound=Select[Any])


def _locked(tx: Tx, query: SelectT, for_update: bool) -> SelectT:
    # SQLite serializes writers with BEGIN IMMEDIATE; FOR UPDATE is PostgreSQL's.
    return query.with_for_update() if for_update and tx.is_postgres else query


def _page(tx: Tx, query: Select[Any], key: Any, request: PageRequest) -> list[Any]:
    """Newest first by id; cursors are ids."""
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


# Grants -------------------------------------------------------------------------------------


def get_grant(tx: Tx, grant_id: str, *, for_update: bool = False) -> Grant | None:
    if for_update:
        return tx.session.scalar(
            _locked(tx, select(Grant).where(Grant.id == grant_id), True).execution_options(
                populate_existing=True
            )
        )
    return tx.session.get(Grant, grant_id)


def grants_by_id(tx: Tx, grant_ids: Sequence[str]) -> dict[str, Grant]:
    if not grant_ids:
        return {}
    rows = tx.session.scalars(select(Grant).where(Grant.id.in_(list(grant_ids))))
    return {row.id: row for row in rows}


def live_grants(
    tx: Tx,
    customer_id: str,
    *,
    at: datetime,
    asset: str | None = None,
    kind: str | None = None,
) -> list[Grant]:
    """Active grants usable at ``at`` (effective, not expired), oldest first."""
    query = select(Grant).where(
        Grant.customer_id == customer_id,
        Grant.status == "active",
        Grant.effective_at <= at,
        or_(Grant.expires_at.is_(None), Grant.expires_at > at),
    )
    if asset is not None:
        query = query.where(Grant.asset == asset)
    if kind is not None:
        query = query.where(Grant.kind == kind)
    return list(tx.session.scalars(query.order_by(Grant.effective_at, Grant.id)))


def grants_page(
    tx: Tx,
    request: PageRequest,
    *,
    customer_id: str | None = None,
    status: str | None = None,
    recurring_grant_id: str | None = None,
) -> list[Grant]:
    query = select(Grant)
    if customer_id is not None:
        query = query.where(Grant.customer_id == customer_id)
    if status is not None:
        query = query.where(Grant.status == status)
    if recurring_grant_id is not None:
        query = query.where(Grant.recurring_grant_id == recurring_grant_id)
    return _page(tx, query, Grant.id, request)


def due_expiries(tx: Tx, now: datetime, *, limit: int, after_id: str | None = None) -> list[str]:
    """Active grants whose expiry has come, by id (a cursor, so one that must wait is passed
    over, not read again)."""
    query = select(Grant.id).where(
        Grant.status == "active", Grant.expires_at.is_not(None), Grant.expires_at <= now
    )
    if after_id is not None:
        query = query.where(Grant.id > after_id)
    return [row[0] for row in tx.session.execute(query.order_by(Grant.id).limit(limit))]


def instance(tx: Tx, recurring_grant_id: str, period_index: int) -> Grant | None:
    return tx.session.scalar(
        select(Grant).where(
            Grant.recurring_grant_id == recurring_grant_id, Grant.period_index == period_index
        )
    )


# Recurring grants and plan credit rules -------------------------------------------------------


def get_recurring(tx: Tx, recurring_id: str, *, for_update: bool = False) -> RecurringGrant | None:
    if for_update:
        return tx.session.scalar(
            _locked(
                tx, select(RecurringGrant).where(RecurringGrant.id == recurring_id), True
            ).execution_options(populate_existing=True)
        )
    return tx.session.get(RecurringGrant, recurring_id)


def recurring_page(
    tx: Tx, request: PageRequest, *, customer_id: str | None = None, status: str | None = None
) -> list[RecurringGrant]:
    query = select(RecurringGrant)
    if customer_id is not None:
        query = query.where(RecurringGrant.customer_id == customer_id)
    if status is not None:
        query = query.where(RecurringGrant.status == status)
    return _page(tx, query, RecurringGrant.id, request)


def due_recurring(tx: Tx, now: datetime, *, limit: int, after_id: str | None = None) -> list[str]:
    query = select(RecurringGrant.id).where(
        RecurringGrant.status == "active",
        RecurringGrant.next_issue_at.is_not(None),
        RecurringGrant.next_issue_at <= now,
    )
    if after_id is not None:
        query = query.where(RecurringGrant.id > after_id)
    return [row[0] for row in tx.session.execute(query.order_by(RecurringGrant.id).limit(limit))]


def schedules_of_rule(
    tx: Tx, rule_id: str, subscription_ids: Sequence[str]
) -> list[RecurringGrant]:
    """The included-in-plan schedules of these subscriptions under one rule."""
    if not subscription_ids:
        return []
    return list(
        tx.session.scalars(
            select(RecurringGrant).where(
                RecurringGrant.plan_credit_rule_id == rule_id,
                RecurringGrant.subscription_id.in_(list(subscription_ids)),
            )
        )
    )


def get_rule(tx: Tx, rule_id: str) -> PlanCreditRule | None:
    return tx.session.get(PlanCreditRule, rule_id)


def active_rules(tx: Tx, *, plan_version_id: str | None = None) -> list[PlanCreditRule]:
    query = select(PlanCreditRule).where(PlanCreditRule.status == "active")
    if plan_version_id is not None:
        query = query.where(PlanCreditRule.plan_version_id == plan_version_id)
    return list(tx.session.scalars(query.order_by(PlanCreditRule.id)))


def rules_page(
    tx: Tx, request: PageRequest, *, plan_version_id: str | None = None
) -> list[PlanCreditRule]:
    query = select(PlanCreditRule)
    if plan_version_id is not None:
        query = query.where(PlanCreditRule.plan_version_id == plan_version_id)
    return _page(tx, query, PlanCreditRule.id, request)


# Promotion codes ------------------------------------------------------------------------------


def get_code(tx: Tx, code_id: str, *, for_update: bool = False) -> PromotionCode | None:
    if for_update:
        return tx.session.scalar(
            _locked(
                tx, select(PromotionCode).where(PromotionCode.id == code_id), True
            ).execution_options(populate_existing=True)
        )
    return tx.session.get(PromotionCode, code_id)


def code_by_text(tx: Tx, code: str) -> PromotionCode | None:
    return tx.session.scalar(select(PromotionCode).where(PromotionCode.code == code))


def codes_page(tx: Tx, request: PageRequest, *, status: str | None = None) -> list[PromotionCode]:
    query = select(PromotionCode)
    if status is not None:
        query = query.where(PromotionCode.status == status)
    return _page(tx, query, PromotionCode.id, request)


def count_redemptions(tx: Tx, code_id: str, customer_id: str) -> int:
    return int(
        tx.session.scalar(
            select(func.count())
            .select_from(PromotionRedemption)
            .where(
                PromotionRedemption.promotion_code_id == code_id,
                PromotionRedemption.customer_id == customer_id,
            )
        )
        or 0
    )


def increment_redemptions(tx: Tx, code_id: str, now: datetime) -> bool:
    """``times_redeemed += 1`` unless that would pass ``max_redemptions`` (a conditional
    update: the second guard behind the row lock)."""
    result = tx.session.execute(
        update(PromotionCode)
        .where(
            PromotionCode.id == code_id,
            or_(
                PromotionCode.max_redemptions.is_(None),
                PromotionCode.times_redeemed < PromotionCode.max_redemptions,
            ),
        )
        .values(times_redeemed=PromotionCode.times_redeemed + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def get_redemption(
    tx: Tx, redemption_id: str, *, for_update: bool = False
) -> PromotionRedemption | None:
    if for_update:
        return tx.session.scalar(
            _locked(
                tx,
                select(PromotionRedemption).where(PromotionRedemption.id == redemption_id),
                True,
            ).execution_options(populate_existing=True)
        )
    return tx.session.get(PromotionRedemption, redemption_id)


def redemptions_of_subscription(tx: Tx, subscription_id: str) -> list[PromotionRedemption]:
    return list(
        tx.session.scalars(
            select(PromotionRedemption)
            .where(PromotionRedemption.subscription_id == subscription_id)
            .order_by(PromotionRedemption.redeemed_at, PromotionRedemption.id)
        )
    )


def redemptions_page(
    tx: Tx,
    request: PageRequest,
    *,
    code_id: str | None = None,
    customer_id: str | None = None,
) -> list[PromotionRedemption]:
    query = select(PromotionRedemption)
    if code_id is not None:
        query = query.where(PromotionRedemption.promotion_code_id == code_id)
    if customer_id is not None:
        query = query.where(PromotionRedemption.customer_id == customer_id)
    return _page(tx, query, PromotionRedemption.id, request)


def discount_uses(tx: Tx, redemption_ids: Sequence[str]) -> dict[str, set[datetime]]:
    """The period starts each redemption's discount was billed for."""
    if not redemption_ids:
        return {}
    rows = tx.session.execute(
        select(PromotionDiscountUse.redemption_id, PromotionDiscountUse.period_start).where(
            PromotionDiscountUse.redemption_id.in_(list(redemption_ids))
        )
    )
    uses: dict[str, set[datetime]] = {}
    for redemption_id, period_start in rows:
        uses.setdefault(redemption_id, set()).add(period_start)
    return uses


def discount_use(tx: Tx, redemption_id: str, period_start: datetime) -> PromotionDiscountUse | None:
    return tx.session.scalar(
        select(PromotionDiscountUse).where(
            and_(
                PromotionDiscountUse.redemption_id == redemption_id,
                PromotionDiscountUse.period_start == period_start,
            )
        )
    )
