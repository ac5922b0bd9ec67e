"""Credits included in a plan: a **plan credit rule** on a plan version says "every
subscription on this version gets N credits every interval". The rule lives here (grants),
keyed by plan version, so the catalog's published versions stay untouched.

``sync`` (run by the grants job, and callable any time) gives each qualifying subscription on
the rule's version its own recurring grant (source ``plan``), anchored where the subscription
joined the version; the schedule ends when the subscription leaves the version or stops
being trialing, active or past due, and starts again (from the next instance) if it returns.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final

from tallybook.catalog import repository as catalog_repository
from tallybook.db import Tx
from tallybook.grants import issuance, recurring, repository
from tallybook.grants.domain import PRIORITY_DEFAULT, GrantKind, GrantSource, InstanceExpiry
from tallybook.grants.errors import GrantCode
from tallybook.grants.models import PlanCreditRule, RecurringGrant
from tallybook.kit.assets import minor_to_quantity, unit_asset_for_meter_key
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.views import SubscriptionView
from tallybook.work import events

#: Subscriptions examined per sync call (the job pages through the version's subscriptions).
SYNC_PAGE_SIZE: Final = 100


@dataclass(frozen=True, slots=True)
class PlanCreditRuleInput:
    plan_version_id: str
    kind: str = GrantKind.MONETARY
    amount_minor: int | None = None
    meter: str | None = None
    quantity: Decimal | int | str | None = None
    priority: int = PRIORITY_DEFAULT
    interval: str = "month"
    interval_count: int = 1
    expiry: str = InstanceExpiry.NEXT_INSTANCE
    expires_after_days: int | None = None
    rollover: str = "none"
    rollover_cap_minor: int | None = None
    rollover_cap_quantity: Decimal | int | str | None = None
    reason: str | None = None


def create_rule(tx: Tx, data: PlanCreditRuleInput) -> PlanCreditRule:
    version = catalog_repository.get_version(tx, data.plan_version_id)
    if version is None:
        raise InvalidRequest(
            GrantCode.PLAN_VERSION_NOT_FOUND,
            f"no plan version '{data.plan_version_id}'",
            param="plan_version",
        )
    kind = issuance._enum(GrantKind, data.kind, GrantCode.KIND_INVALID, "kind")
    if kind is GrantKind.MONETARY:
        amount = issuance.positive_amount(data.amount_minor)
        asset, currency, meter_id = version.currency, version.currency, None
    else:
        meter = issuance.countable_meter(tx, data.meter)
        amount = issuance.positive_units(data.quantity)
        asset, currency, meter_id = unit_asset_for_meter_key(meter.key), None, meter.id
    terms = recurring.check_schedule_terms(
        interval=data.interval,
        interval_count=data.interval_count,
        expiry=data.expiry,
        expires_after_days=data.expires_after_days,
        rollover=data.rollover,
        cap_minor=recurring.rollover_cap(kind, data.rollover_cap_minor, data.rollover_cap_quantity),
    )
    now = tx.now()
    rule = PlanCreditRule(
        id=new_id("pcr"),
        plan_version_id=version.id,
        kind=str(kind),
        asset=asset,
        currency=currency,
        meter_id=meter_id,
        amount_minor=amount,
        priority=issuance.check_priority(data.priority),
        interval_unit=terms.interval_unit,
        interval_count=terms.interval_count,
        expiry=str(terms.expiry),
        expires_after_days=terms.expires_after_days,
        rollover=str(terms.rollover),
        rollover_cap_minor=terms.rollover_cap_minor,
        status="active",
        created_by=tx.actor,
        reason=issuance.check_reason(data.reason),
        created_at=now,
    )
    tx.session.add(rule)
    tx.session.flush()
    events.emit(
        tx,
        "plan_credit_rule.created",
        object_id=rule.id,
        data={"id": rule.id, "plan_version_id": rule.plan_version_id, "asset": rule.asset},
    )
    return rule


def get_rule(tx: Tx, rule_id: str) -> PlanCreditRule:
    rule = repository.get_rule(tx, rule_id)
    if rule is None:
        raise NotFound("plan credit rule", rule_id)
    return rule


def list_rules(
    tx: Tx, request: PageRequest, *, plan_version_id: str | None = None
) -> Page[PlanCreditRule]:
    return page_from_rows(
        repository.rules_page(tx, request, plan_version_id=plan_version_id), request
    )


def archive_rule(tx: Tx, rule_id: str) -> PlanCreditRule:
    """No new schedules; existing ones end at their next instance. Idempotent."""
    rule = get_rule(tx, rule_id)
    if rule.status != "archived":
        rule.status = "archived"
        rule.archived_at = tx.now()
    return rule


def _schedule_input(
    rule: PlanCreditRule, subscription: SubscriptionView, anchor: datetime
) -> recurring.RecurringInput:
    usage = rule.kind == GrantKind.USAGE
    capped = rule.rollover == "capped"
    return recurring.RecurringInput(
        customer=subscription.customer_id,
        kind=rule.kind,
        amount_minor=None if usage else rule.amount_minor,
        currency=rule.currency,
        meter=rule.meter_id,
        quantity=minor_to_quantity(rule.amount_minor) if usage else None,
        source=GrantSource.PLAN,
        priority=rule.priority,
        interval=rule.interval_unit,
        interval_count=rule.interval_count,
        anchor_at=anchor,
        expiry=rule.expiry,
        expires_after_days=rule.expires_after_days,
        rollover=rule.rollover,
        rollover_cap_minor=rule.rollover_cap_minor if capped and not usage else None,
        rollover_cap_quantity=(
            minor_to_quantity(rule.rollover_cap_minor)
            if capped and usage and rule.rollover_cap_minor is not None
            else None
        ),
        reason=f"included in plan (rule {rule.id}): {rule.reason}",
        metadata={"plan_credit_rule_id": rule.id, "subscription_id": subscription.id},
    )


def _joined_at(tx: Tx, subscription: SubscriptionView) -> datetime:
    """Where the subscription's current phase (on the rule's version) began."""
    phases = subscriptions.phases(tx, subscription.id)
    open_phase = next((p for p in reversed(phases) if p.end_at is None), None)
    return open_phase.start_at if open_phase is not None else subscription.started_at


def _reactivate(tx: Tx, schedule: RecurringGrant) -> None:
    """A subscription that qualifies again: continue from the next instance after now."""
    locked = repository.get_recurring(tx, schedule.id, for_update=True)
    if locked is None or locked.status != recurring.ENDED:
        return
    now = tx.now()
    plan = recurring.schedule_of(locked)
    next_index = max(locked.next_index, 0)
    while plan.issue_at(next_index) <= now and not plan.is_over(next_index):
        next_index += 1
    locked.status = recurring.ACTIVE
    locked.next_index = next_index
    locked.next_issue_at = plan.issue_at(next_index)
    locked.updated_at = now


def sync(
    tx: Tx, rule_id: str, *, after_subscription_id: str | None = None
) -> tuple[int, str | None]:
    """Give every qualifying subscription on the rule's version its schedule (bounded).
    Returns (schedules created or resumed, the last subscription id examined or None when the
    version's subscriptions were all examined)."""
    rule = get_rule(tx, rule_id)
    if rule.status != "active":
        return 0, None
    page = subscriptions.list_page(
        tx,
        PageRequest(limit=SYNC_PAGE_SIZE, starting_after=after_subscription_id),
        plan_version_id=rule.plan_version_id,
    )
    changed = 0
    examined = list(page.data)
    existing = {
        schedule.subscription_id: schedule
        for schedule in repository.schedules_of_rule(tx, rule.id, [s.id for s in examined])
    }
    for subscription in examined:
        if subscription.status not in recurring.QUALIFYING_STATUSES:
            continue
        schedule = existing.get(subscription.id)
        if schedule is None:
            recurring.create_recurring(
                tx,
                _schedule_input(rule, subscription, _joined_at(tx, subscription)),
                issued_by=f"system:plan_credit_rule:{rule.id}",
                subscription_id=subscription.id,
                plan_credit_rule_id=rule.id,
            )
            changed += 1
        elif schedule.status == recurring.ENDED:
            _reactivate(tx, schedule)
            recurring.issue_due(tx, schedule.id)
            changed += 1
    last = examined[-1].id if page.has_more and examined else None
    return changed, last
