"""Recurring grants: instances on their own cadence, rollover through the ledger, included-in-plan
credits, and the job that issues and expires them (idempotent, resumable)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from tallybook.db import Database
from tallybook.grants import service as grants
from tallybook.grants import tasks
from tallybook.grants.models import Grant
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import TallybookError
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CancelAt, CancelRequest
from tallybook.work import jobruns
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer, create_meter


def instances(db: Database, recurring_id: str) -> list[tuple[int, int, str, int]]:
    """(period index, amount issued, status, ledger balance) of each instance, in order."""
    with db.read() as tx:
        rows = tx.session.scalars(
            select(Grant)
            .where(Grant.recurring_grant_id == recurring_id)
            .order_by(Grant.period_index)
        )
        return [
            (
                g.period_index or 0,
                g.amount_minor,
                g.status,
                ledger.balance(tx, g.account_id).posted.amount_minor,
            )
            for g in rows
        ]


def spend(db: Database, customer_id: str, amount: int) -> None:
    with db.transaction() as tx:
        sources = grants.credit_sources(tx, customer_id, at=tx.now(), currency="USD")
        applications = grants.burn_down(sources, [grants.Demand.money(Money(amount, "USD"))])
        grants.apply_credits(tx, applications, invoice_id=new_id("in"))


def run_job(db: Database, owner: str = "worker") -> dict[str, object]:
    return tasks.run_maintenance(db, JobContext(owner=owner))


def test_monthly_instances_from_the_anchor_each_expiring_with_the_next(
    db: Database, clock: TestClock
) -> None:
    with db.transaction(actor="key_growth") as tx:
        customer = create_customer(tx)
        schedule = grants.create_recurring(
            tx,
            grants.RecurringInput(
                customer=customer.id,
                amount_minor=1000,
                anchor_at=utc(2026, 1, 31, 9),
                reason="monthly loyalty credit",
            ),
        )
    # Anchored in January: every instance before November was over before it could be used.
    assert instances(db, schedule.id) == [(9, 1000, "active", 1000)]
    clock.set(utc(2026, 11, 30, 9))
    run_job(db)
    assert instances(db, schedule.id) == [(9, 1000, "expired", 0), (10, 1000, "active", 1000)]
    with db.read() as tx:
        row = grants.get_recurring(tx, schedule.id)
        grant = tx.session.scalars(select(Grant).where(Grant.period_index == 10)).one()
        assert row.next_issue_at == utc(2026, 12, 31, 9)  # month ends follow the anchor
        assert grant.issued_by == "key_growth" and grant.reason == "monthly loyalty credit"
        assert (grant.effective_at, grant.expires_at) == (
            utc(2026, 11, 30, 9),
            utc(2026, 12, 31, 9),
        )


def test_capped_rollover_moves_through_the_ledger(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        schedule = grants.create_recurring(
            tx,
            grants.RecurringInput(
                customer=customer.id,
                amount_minor=1000,
                interval="week",
                rollover="capped",
                rollover_cap_minor=500,
                reason="weekly credits, half rolls over",
            ),
        )
    spend(db, customer.id, 300)  # 700 left in week 0
    clock.advance(days=7)
    run_job(db)
    assert instances(db, schedule.id) == [(0, 1000, "expired", 0), (1, 1500, "active", 1500)]
    week1 = instances_ids(db, schedule.id)[1]
    with db.read() as tx:
        moved = ledger.get_transfer(tx, f"grant:{week1}:rollover")
        assert sum(e.amount_minor for e in moved.entries) == 1000  # 500 each side
    spend(db, customer.id, 1400)  # 100 left: all of it rolls over
    clock.advance(days=7)
    run_job(db)
    assert [i[1:] for i in instances(db, schedule.id)] == [
        (1000, "expired", 0),
        (1500, "expired", 0),
        (1100, "active", 1100),
    ]
    with db.read() as tx:
        assert ledger.check_invariants(tx).ok


def instances_ids(db: Database, recurring_id: str) -> list[str]:
    with db.read() as tx:
        return list(
            tx.session.scalars(
                select(Grant.id)
                .where(Grant.recurring_grant_id == recurring_id)
                .order_by(Grant.period_index)
            )
        )


def test_usage_schedule_with_days_of_expiry_and_an_end(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        create_meter(tx)
        schedule = grants.create_recurring(
            tx,
            grants.RecurringInput(
                customer=customer.id,
                kind="usage",
                meter="tokens",
                quantity=Decimal("2500.5"),
                interval="day",
                interval_count=10,
                expiry="after_days",
                expires_after_days=15,
                ends_at=clock.now() + timedelta(days=25),
                reason="trial tokens",
            ),
        )
    clock.advance(days=30)
    run_job(db)
    got = instances(db, schedule.id)
    # Day 0 was issued at once (and expired at day 15); day 10's whole life (to day 25) passed
    # while nothing ran, so it is skipped, not issued dead; day 20 lives to 35; none at 30.
    assert [(i, status) for i, _, status, _ in got] == [(0, "expired"), (2, "active")]
    assert got[1][1] == 2_500_500_000
    with db.read() as tx:
        assert grants.get_recurring(tx, schedule.id).status == "ended"


def test_running_the_job_twice_issues_nothing_twice(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        schedule = grants.create_recurring(
            tx,
            grants.RecurringInput(
                customer=customer.id, amount_minor=100, interval="day", reason="r"
            ),
        )
    clock.advance(days=1)
    first = run_job(db, "a")
    second = run_job(db, "b")
    assert first["recurring"] == 1 and second == {"skipped": 1}
    clock.advance(minutes=5)
    assert run_job(db, "b")["recurring"] == 0
    assert [i[0] for i in instances(db, schedule.id)] == [0, 1]
    with db.read() as tx:
        run = jobruns.get_run(tx, "grants.recurring_instance", f"{schedule.id}:1")
        assert run is not None and run.status == "succeeded"


def test_a_crashed_run_resumes_from_its_checkpoint(
    db: Database, clock: TestClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        ids = [
            grants.create_recurring(
                tx,
                grants.RecurringInput(
                    customer=customer.id, amount_minor=100, interval="day", reason="r"
                ),
            ).id
            for _ in range(4)
        ]
    clock.advance(days=1)
    real = tasks._WORK["recurring"]
    calls = []

    def crashing(tx: object, item: str, owner: str) -> int:
        calls.append(item)
        if len(calls) == 3:
            raise SystemExit("worker killed")
        return real(tx, item, owner)  # type: ignore[arg-type]

    monkeypatch.setitem(tasks._WORK, "recurring", crashing)
    with pytest.raises(SystemExit):
        run_job(db, "w1")
    monkeypatch.setitem(tasks._WORK, "recurring", real)
    result = run_job(db, "w1")
    assert result["recurring"] == 4  # two before the crash (checkpointed) and two after
    for recurring_id in ids:
        assert [i[0] for i in instances(db, recurring_id)] == [0, 1]


def test_monthly_credits_on_a_yearly_plan(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        create_meter(tx)
        yearly = create_version(tx, interval="year", prices=[flat_price(120_00)])
        rule = grants.create_rule(
            tx,
            grants.PlanCreditRuleInput(
                plan_version_id=yearly.id,
                kind="usage",
                meter="tokens",
                quantity=Decimal(1000),
                reason="1,000 tokens a month included",
            ),
        )
        subscription = create_subscription(tx, customer=customer, version=yearly).subscription
    run_job(db)
    with db.read() as tx:
        schedules = grants.list_recurring(tx, PageRequest(limit=10), customer=customer.id).data
        assert len(schedules) == 1
        schedule = schedules[0]
        assert (schedule.source, schedule.subscription_id, schedule.plan_credit_rule_id) == (
            "plan",
            subscription.id,
            rule.id,
        )
        schedule_id = schedule.id
    clock.advance(days=31)
    run_job(db)
    assert [(i, s) for i, _, s, _ in instances(db, schedule_id)] == [(0, "expired"), (1, "active")]
    with db.transaction() as tx:
        subscriptions.cancel(tx, subscription.id, CancelRequest(at=CancelAt.NOW))
    clock.advance(days=31)
    run_job(db)
    with db.read() as tx:
        assert grants.get_recurring(tx, schedule_id).status == "ended"
    assert len(instances(db, schedule_id)) == 2


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"interval": "hour"}, "recurring_grant_schedule_invalid"),
        ({"interval_count": 0}, "recurring_grant_schedule_invalid"),
        ({"rollover": "capped"}, "recurring_grant_rollover_invalid"),
        ({"rollover_cap_minor": 5}, "recurring_grant_rollover_invalid"),
        ({"expiry": "after_days"}, "recurring_grant_expiry_invalid"),
        ({"expiry": "sometimes"}, "recurring_grant_expiry_invalid"),
        ({"reason": ""}, "grant_reason_required"),
        ({"amount_minor": 0}, "grant_amount_invalid"),
    ],
)
def test_bad_schedules_are_named(db: Database, fields: dict[str, object], code: str) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
    data = {"customer": customer.id, "amount_minor": 100, "reason": "r", **fields}
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        grants.create_recurring(tx, grants.RecurringInput(**data))  # type: ignore[arg-type]
    assert raised.value.code == code
