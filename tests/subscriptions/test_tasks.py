"""The scheduled job that renews subscriptions, and concurrency on one subscription."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import pytest
import sqlalchemy as sa

from tallybook.catalog.domain import ChangePolicy
from tallybook.db import Database
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import TallybookError
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import ChangeRequest
from tallybook.subscriptions.tasks import JOB_ADVANCE, advance_due
from tallybook.work.models import JobRun
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price

At = Callable[[datetime], tuple[Database, TestClock]]


def test_the_job_renews_ends_trials_and_runs_once_per_boundary(at: At) -> None:
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        renewing = [create_subscription(tx).subscription.id for _ in range(3)]
        trialing = create_subscription(tx, trial_period_days=10).subscription.id
    clock.set(utc(2027, 2, 1, 0, 1))
    report = advance_due(db, JobContext(owner="test"))
    assert report == {"advanced": 4, "boundaries": 4, "skipped": 0, "failed": 0}
    assert advance_due(db, JobContext(owner="test"))["advanced"] == 0
    with db.read() as tx:
        runs = list(tx.session.scalars(sa.select(JobRun).where(JobRun.job == JOB_ADVANCE)))
        assert len(runs) == 4 and all(run.status == "succeeded" for run in runs)
        for sub_id in renewing:
            assert [c.service_start_at for c in service.charges(tx, sub_id)] == [
                utc(2027, 1, 1),
                utc(2027, 2, 1),
            ]
        trial = service.view(tx, trialing)
        assert (trial.status, trial.current_period_start_at) == ("active", utc(2027, 1, 11))
    clock.set(utc(2027, 2, 11, 0, 1))
    assert advance_due(db, JobContext(owner="test"))["advanced"] == 1


@pytest.mark.pg_only
def test_concurrent_changes_on_one_subscription_never_credit_twice(pg_db: Database) -> None:
    """Eight requests change the same subscription at the same instant, half to each plan:
    the row lock serializes them, every prepaid charge is credited at most once, and the
    period's net charges are what one plan for the first half and the last plan for the
    second half cost."""
    clock = TestClock(utc(2027, 1, 31))
    db = pg_db.with_clock(clock)
    with db.transaction() as tx:
        basic = create_version(tx, plan_key="basic", prices=[flat_price(1000)])
        pro = create_version(tx, plan_key="pro", prices=[flat_price(3000)])
        sub_id = create_subscription(tx, version=basic).subscription.id
    clock.set(utc(2027, 2, 14))  # half of the period
    barrier = threading.Barrier(8)

    def change(index: int) -> str:
        target = pro.id if index % 2 == 0 else basic.id
        barrier.wait()
        try:
            with db.transaction() as tx:
                service.change_plan(
                    tx,
                    sub_id,
                    ChangeRequest(plan_version_id=target, policy=ChangePolicy.PRORATE_NOW),
                )
            return "ok"
        except TallybookError as error:
            return error.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(change, range(8)))
    assert set(outcomes) <= {"ok", "subscription_change_noop"}
    with db.read() as tx:
        final = service.view(tx, sub_id).plan_version_id
        charges = service.charges(tx, sub_id)
    for charge in charges:
        assert 0 <= charge.credited_minor <= max(charge.amount_minor, 0)
    second_half = 1500 if final == pro.id else 500
    assert abs(sum(c.amount_minor for c in charges) - (500 + second_half)) <= 1
