"""Recurring grants: an instance every N days/weeks/months/years from an anchor, on their own
cadence (monthly credits on a yearly plan), with rollover ``none`` or ``capped``.

Instance ``k`` is issued at ``anchor + k × interval``. Each is idempotent per (schedule,
period): its grant id is derived from both (``domain.deterministic_id``), a unique key on
``(recurring_grant_id, period_index)`` refuses a second row, its issue runs as the job run
``grants.recurring_instance / <schedule>:<k>`` (``work.jobruns``), and its ledger transfers
have ids derived from the grant. Running the job twice, or after a crash, issues nothing twice.

Rollover (capped): when instance ``k`` is issued, up to the cap of what instance ``k − 1`` can
still give moves into it (``grant:<new>:rollover``); then, if instance ``k − 1`` expires with
the new one (``next_instance`` expiry), its rest returns to its source at once. Because of
that, the expiry job leaves such an instance to the issuing step when its successor is late.

Instances whose whole life passed while nothing ran (a schedule created with an anchor long
ago, or a worker down for weeks) are skipped, not issued dead: only instances still alive
``now`` are issued.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.grants import issuance, repository
from tallybook.grants.domain import (
    PRIORITY_DEFAULT,
    GrantKind,
    GrantSource,
    GrantStatus,
    InstanceExpiry,
    Rollover,
    Schedule,
    deterministic_id,
    interval_of,
    rollover_minor,
)
from tallybook.grants.errors import GrantCode
from tallybook.grants.issuance import GrantInput
from tallybook.grants.models import Grant, RecurringGrant
from tallybook.kit.assets import minor_to_quantity, quantity_to_minor, unit_asset_for_meter_key
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import check_amount_minor
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import to_decimal
from tallybook.ledger import service as ledger
from tallybook.subscriptions import service as subscriptions
from tallybook.work import events, jobruns

INSTANCE_JOB = "grants.recurring_instance"
#: ``after_days`` expiry: 1 day to 10 years.
EXPIRES_AFTER_DAYS_MAX = 3660
INTERVAL_COUNT_MAX = {"day": 1095, "week": 156, "month": 36, "year": 3}

ACTIVE = "active"
CANCELED = "canceled"
ENDED = "ended"


@dataclass(frozen=True, slots=True)
class RecurringInput:
    """A schedule of grants. Amounts as for :class:`~tallybook.grants.issuance.GrantInput`;
    ``rollover_cap_minor`` (monetary) or ``rollover_cap_quantity`` (usage) with ``capped``."""

    customer: str
    kind: str = GrantKind.MONETARY
    amount_minor: int | None = None
    currency: str | None = None
    meter: str | None = None
    quantity: Decimal | int | str | None = None
    source: str = GrantSource.PROMOTION
    priority: int = PRIORITY_DEFAULT
    interval: str = "month"
    interval_count: int = 1
    anchor_at: datetime | None = None
    ends_at: datetime | None = None
    expiry: str = InstanceExpiry.NEXT_INSTANCE
    expires_after_days: int | None = None
    rollover: str = Rollover.NONE
    rollover_cap_minor: int | None = None
    rollover_cap_quantity: Decimal | int | str | None = None
    reason: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class ScheduleTerms:
    interval_unit: str
    interval_count: int
    expiry: InstanceExpiry
    expires_after_days: int | None
    rollover: Rollover
    rollover_cap_minor: int | None


def check_schedule_terms(
    *,
    interval: object,
    interval_count: object,
    expiry: object,
    expires_after_days: object,
    rollover: object,
    cap_minor: int | None,
) -> ScheduleTerms:
    if interval not in INTERVAL_COUNT_MAX:
        raise InvalidRequest(
            GrantCode.SCHEDULE_INVALID,
            "interval must be day, week, month or year",
            param="interval",
        )
    count_max = INTERVAL_COUNT_MAX[str(interval)]
    if (
        isinstance(interval_count, bool)
        or not isinstance(interval_count, int)
        or not 1 <= interval_count <= count_max
    ):
        raise InvalidRequest(
            GrantCode.SCHEDULE_INVALID,
            f"interval_count must be 1 to {count_max} for {interval}s",
            param="interval_count",
        )
    try:
        expiry_rule = InstanceExpiry(str(expiry))
    except ValueError:
        raise InvalidRequest(
            GrantCode.EXPIRY_INVALID,
            "expiry must be next_instance, after_days or never",
            param="expiry",
        ) from None
    days: int | None = None
    if expiry_rule is InstanceExpiry.AFTER_DAYS:
        if (
            isinstance(expires_after_days, bool)
            or not isinstance(expires_after_days, int)
            or not 1 <= expires_after_days <= EXPIRES_AFTER_DAYS_MAX
        ):
            raise InvalidRequest(
                GrantCode.EXPIRY_INVALID,
                f"expires_after_days must be 1 to {EXPIRES_AFTER_DAYS_MAX}",
                param="expires_after_days",
            )
        days = expires_after_days
    elif expires_after_days is not None:
        raise InvalidRequest(
            GrantCode.EXPIRY_INVALID,
            "expires_after_days goes with expiry after_days",
            param="expires_after_days",
        )
    try:
        rule = Rollover(str(rollover))
    except ValueError:
        raise InvalidRequest(
            GrantCode.ROLLOVER_INVALID, "rollover must be none or capped", param="rollover"
        ) from None
    if rule is Rollover.CAPPED and cap_minor is None:
        raise InvalidRequest(
            GrantCode.ROLLOVER_INVALID,
            "a capped rollover needs its cap",
            param="rollover_cap",
        )
    if rule is Rollover.NONE and cap_minor is not None:
        raise InvalidRequest(
            GrantCode.ROLLOVER_INVALID,
            "a rollover cap goes with rollover capped",
            param="rollover_cap",
        )
    if rule is Rollover.CAPPED and expiry_rule is InstanceExpiry.NEVER:
        raise InvalidRequest(
            GrantCode.ROLLOVER_INVALID,
            "instances that never expire keep their balance: rollover needs an expiry",
            param="rollover",
        )
    return ScheduleTerms(
        interval_unit=str(interval),
        interval_count=int(interval_count),
        expiry=expiry_rule,
        expires_after_days=days,
        rollover=rule,
        rollover_cap_minor=cap_minor,
    )


def rollover_cap(kind: GrantKind, minor: object, quantity: object) -> int | None:
    if kind is GrantKind.MONETARY:
        if quantity is not None:
            raise InvalidRequest(
                GrantCode.ROLLOVER_INVALID,
                "a monetary schedule caps rollover with rollover_cap_minor",
                param="rollover_cap_quantity",
            )
        if minor is None:
            return None
        cap = check_amount_minor(minor, param="rollover_cap_minor")
    else:
        if minor is not None:
            raise InvalidRequest(
                GrantCode.ROLLOVER_INVALID,
                "a usage schedule caps rollover with rollover_cap_quantity",
                param="rollover_cap_minor",
            )
        if quantity is None:
            return None
        cap = quantity_to_minor(
            to_decimal(quantity, param="rollover_cap_quantity"), param="rollover_cap_quantity"
        )
    if cap < 0:
        raise InvalidRequest(
            GrantCode.ROLLOVER_INVALID, "a rollover cap is not negative", param="rollover_cap"
        )
    return cap


def schedule_of(recurring: RecurringGrant) -> Schedule:
    return Schedule(
        anchor=recurring.anchor_at,
        interval=interval_of(recurring.interval_unit, recurring.interval_count),
        expiry=InstanceExpiry(recurring.expiry),
        expires_after_days=recurring.expires_after_days,
        ends_at=recurring.ends_at,
    )


def create_recurring(
    tx: Tx,
    data: RecurringInput,
    *,
    issued_by: str | None = None,
    subscription_id: str | None = None,
    plan_credit_rule_id: str | None = None,
) -> RecurringGrant:
    """Create a schedule and issue every instance already due (instance 0 when the anchor is
    now or past)."""
    customer = customers.resolve(tx, data.customer)
    kind = issuance._enum(GrantKind, data.kind, GrantCode.KIND_INVALID, "kind")
    source = issuance._enum(GrantSource, data.source, GrantCode.SOURCE_INVALID, "source")
    if kind is GrantKind.MONETARY:
        amount = issuance.positive_amount(data.amount_minor)
        currency: str | None = issuance.grant_currency(tx, customer, data.currency)
        assert currency is not None
        asset, meter_id = currency, None
    else:
        if source is GrantSource.PURCHASE:
            raise InvalidRequest(
                GrantCode.SOURCE_INVALID, "purchased credits are monetary", param="source"
            )
        meter = issuance.countable_meter(tx, data.meter)
        amount = issuance.positive_units(data.quantity)
        asset, currency, meter_id = unit_asset_for_meter_key(meter.key), None, meter.id
    priority = issuance.check_priority(data.priority)
    terms = check_schedule_terms(
        interval=data.interval,
        interval_count=data.interval_count,
        expiry=data.expiry,
        expires_after_days=data.expires_after_days,
        rollover=data.rollover,
        cap_minor=rollover_cap(kind, data.rollover_cap_minor, data.rollover_cap_quantity),
    )
    now = tx.now()
    anchor = ensure_utc(data.anchor_at, param="anchor_at") if data.anchor_at else now
    ends_at = ensure_utc(data.ends_at, param="ends_at") if data.ends_at else None
    if ends_at is not None and ends_at <= max(anchor, now):
        raise InvalidRequest(
            GrantCode.SCHEDULE_INVALID,
            "ends_at must be after the anchor and in the future",
            param="ends_at",
        )
    recurring = RecurringGrant(
        id=new_id("rgr"),
        customer_id=customer.id,
        kind=str(kind),
        asset=asset,
        currency=currency,
        meter_id=meter_id,
        amount_minor=amount,
        source=str(source),
        priority=priority,
        interval_unit=terms.interval_unit,
        interval_count=terms.interval_count,
        anchor_at=anchor,
        ends_at=ends_at,
        expiry=str(terms.expiry),
        expires_after_days=terms.expires_after_days,
        rollover=str(terms.rollover),
        rollover_cap_minor=terms.rollover_cap_minor,
        status=ACTIVE,
        next_index=0,
        next_issue_at=anchor,
        subscription_id=subscription_id,
        plan_credit_rule_id=plan_credit_rule_id,
        issued_by=issued_by or tx.actor,
        reason=issuance.check_reason(data.reason),
        metadata_=validate_metadata(data.metadata),
        created_at=now,
        updated_at=now,
    )
    tx.session.add(recurring)
    tx.session.flush()
    events.emit(
        tx,
        "recurring_grant.created",
        customer_id=customer.id,
        object_id=recurring.id,
        data={"recurring_grant": recurring_event_data(recurring)},
    )
    issue_due(tx, recurring.id)
    return recurring


def recurring_event_data(recurring: RecurringGrant) -> dict[str, Any]:
    return {
        "id": recurring.id,
        "kind": recurring.kind,
        "asset": recurring.asset,
        "amount_minor": recurring.amount_minor,
        "interval": recurring.interval_unit,
        "interval_count": recurring.interval_count,
        "anchor_at": recurring.anchor_at,
        "rollover": recurring.rollover,
        "status": recurring.status,
        "subscription_id": recurring.subscription_id,
    }


def get_recurring(tx: Tx, recurring_id: str) -> RecurringGrant:
    recurring = repository.get_recurring(tx, recurring_id)
    if recurring is None:
        raise NotFound("recurring grant", recurring_id)
    return recurring


def list_recurring(
    tx: Tx, request: PageRequest, *, customer: str | None = None, status: str | None = None
) -> Page[RecurringGrant]:
    customer_id = customers.resolve(tx, customer).id if customer else None
    rows = repository.recurring_page(tx, request, customer_id=customer_id, status=status)
    return page_from_rows(rows, request)


def cancel_recurring(tx: Tx, recurring_id: str, *, reason: object) -> RecurringGrant:
    """Stop issuing (instances already issued stay; void them one by one if needed).
    Idempotent."""
    text = issuance.check_reason(reason)
    recurring = repository.get_recurring(tx, recurring_id, for_update=True)
    if recurring is None:
        raise NotFound("recurring grant", recurring_id)
    if recurring.status == CANCELED:
        return recurring
    now = tx.now()
    recurring.status = CANCELED
    recurring.canceled_at = now
    recurring.next_issue_at = None
    recurring.updated_at = now
    events.emit(
        tx,
        "recurring_grant.canceled",
        customer_id=recurring.customer_id,
        object_id=recurring.id,
        data={"recurring_grant": recurring_event_data(recurring), "reason": text},
    )
    return recurring


def _end(recurring: RecurringGrant, now: datetime) -> None:
    recurring.status = ENDED
    recurring.next_issue_at = None
    recurring.updated_at = now


def _instance_input(recurring: RecurringGrant, schedule: Schedule, index: int) -> GrantInput:
    usage = recurring.kind == GrantKind.USAGE
    return GrantInput(
        customer=recurring.customer_id,
        kind=recurring.kind,
        amount_minor=None if usage else recurring.amount_minor,
        currency=recurring.currency,
        meter=recurring.meter_id,
        quantity=minor_to_quantity(recurring.amount_minor) if usage else None,
        source=recurring.source,
        priority=recurring.priority,
        effective_at=schedule.issue_at(index),
        expires_at=schedule.expires_at(index),
        reason=recurring.reason,
        metadata={"recurring_grant_id": recurring.id, "period_index": str(index)},
    )


def issue_instance(tx: Tx, recurring: RecurringGrant, index: int, *, owner: str) -> Grant | None:
    """Issue instance ``index`` of a locked, active schedule (idempotent). Returns the new
    grant, or None if it was issued before (or is held by another worker right now)."""
    schedule = schedule_of(recurring)
    issue_at = schedule.issue_at(index)
    claim = jobruns.claim_in(tx, job=INSTANCE_JOB, run_key=f"{recurring.id}:{index}", owner=owner)
    if claim is None or repository.instance(tx, recurring.id, index) is not None:
        return None
    previous = repository.instance(tx, recurring.id, index - 1) if index > 0 else None
    rolled = 0
    if previous is not None and previous.status == GrantStatus.ACTIVE:
        available = ledger.balance(tx, previous.account_id).available.amount_minor
        rolled = rollover_minor(
            available, recurring.rollover_cap_minor, Rollover(recurring.rollover)
        )
    grant = issuance.issue_grant(
        tx,
        _instance_input(recurring, schedule, index),
        issued_by=recurring.issued_by,
        grant_id=deterministic_id("grt", f"{recurring.id}:{index}", issue_at),
        recurring_grant_id=recurring.id,
        period_index=index,
        rollover_from=previous if rolled else None,
        rollover_minor=rolled,
    )
    if previous is not None:
        # The predecessor may have been waiting for this issue (its rollover): expire it now
        # if its time has come (a no-op when it is not due or already ended).
        issuance.expire_grant(tx, previous.id)
    jobruns.complete(tx, claim, {"grant_id": grant.id, "rollover_minor": rolled})
    return grant


def issue_due(tx: Tx, recurring_id: str, *, owner: str = "inline") -> list[Grant]:
    """Issue every instance of one schedule that is due now (bounded), under its row lock."""
    recurring = repository.get_recurring(tx, recurring_id, for_update=True)
    if recurring is None or recurring.status != ACTIVE:
        return []
    now = tx.now()
    schedule = schedule_of(recurring)
    if not _still_qualifies(tx, recurring):
        _end(recurring, now)
        return []
    issued: list[Grant] = []
    for index in schedule.due_indexes(recurring.next_index, now):
        expires_at = schedule.expires_at(index)
        if expires_at is None or expires_at > now:
            grant = issue_instance(tx, recurring, index, owner=owner)
            if grant is not None:
                issued.append(grant)
        recurring.next_index = index + 1
    if schedule.is_over(recurring.next_index):
        _end(recurring, now)
    else:
        recurring.next_issue_at = schedule.issue_at(recurring.next_index)
        recurring.updated_at = now
    tx.session.flush()
    return issued


def waits_for_successor(tx: Tx, grant: Grant) -> bool:
    """Whether an expiring instance must wait for its successor's issue (which moves its
    rollover first). Only while the schedule is active and the successor is still due."""
    if grant.recurring_grant_id is None or grant.period_index is None:
        return False
    recurring = repository.get_recurring(tx, grant.recurring_grant_id)
    if recurring is None or recurring.status != ACTIVE or recurring.rollover != Rollover.CAPPED:
        return False
    successor = grant.period_index + 1
    return recurring.next_index <= successor and not schedule_of(recurring).is_over(successor)


#: Subscription statuses whose included-in-plan credits keep coming.
QUALIFYING_STATUSES = frozenset({"trialing", "active", "past_due"})


def _still_qualifies(tx: Tx, recurring: RecurringGrant) -> bool:
    """Included-in-plan schedules follow their subscription and rule: they end when the rule
    is archived, or the subscription leaves the rule's plan version or stops being trialing,
    active or past due (``plan_credits.sync`` starts them again if it comes back)."""
    if recurring.plan_credit_rule_id is None or recurring.subscription_id is None:
        return True
    rule = repository.get_rule(tx, recurring.plan_credit_rule_id)
    if rule is None or rule.status != "active":
        return False
    subscription = subscriptions.get(tx, recurring.subscription_id)
    return (
        subscription.status in QUALIFYING_STATUSES
        and subscription.plan_version_id == rule.plan_version_id
    )
