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
from tallybook.kit.clock import TestClock, isoformat_z, utc
from tallybook.kit.errors import TallybookError
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import CancelRequest, ChangeRequest
from tallybook.subscriptions.models import PendingCharge, Subscription, SubscriptionPeriod
from tallybook.subscriptions.service import _state as state
from tallybook.subscriptions.service import lifecycle
from tallybook.subscriptions.tasks import JOB_ADVANCE, advance_due
from tallybook.work import jobruns
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


def _counts(db: Database) -> tuple[int, int, int]:
    with db.read() as tx:
        return (
            tx.session.scalar(sa.select(sa.func.count()).select_from(SubscriptionPeriod)) or 0,
            tx.session.scalar(sa.select(sa.func.count()).select_from(PendingCharge)) or 0,
            tx.session.scalar(
                sa.select(sa.func.count()).select_from(JobRun).where(JobRun.job == JOB_ADVANCE)
            )
            or 0,
        )


def test_one_failing_subscription_rolls_back_alone_and_stays_due(
    at: At, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chunk is one transaction, each subscription in a savepoint: the one that raises
    (after writing part of its renewal) keeps nothing, is reported failed and stays due; the
    ones before and after it in the chunk commit."""
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        ids = sorted(create_subscription(tx).subscription.id for _ in range(5))
    failing = ids[2]
    real_advance = lifecycle.advance

    def advance(tx: object, subscription: Subscription, now: datetime) -> int:
        crossed = real_advance(tx, subscription, now)  # type: ignore[arg-type]
        if subscription.id == failing:
            raise RuntimeError("boom")
        return crossed

    monkeypatch.setattr(lifecycle, "advance", advance)
    clock.set(utc(2027, 2, 1, 0, 1))
    report = advance_due(db, JobContext(owner="test", options={"chunk": 10}))
    assert report == {"advanced": 4, "boundaries": 4, "skipped": 0, "failed": 1}
    with db.read() as tx:
        for sub_id in ids:
            starts = [c.service_start_at for c in service.charges(tx, sub_id)]
            view = service.view(tx, sub_id)
            if sub_id == failing:
                assert starts == [utc(2027, 1, 1)]
                assert view.current_period_start_at == utc(2027, 1, 1)
                assert tx.session.get(Subscription, sub_id).next_action_at == utc(2027, 2, 1)  # type: ignore[union-attr]
            else:
                assert starts == [utc(2027, 1, 1), utc(2027, 2, 1)]
                assert view.current_period_start_at == utc(2027, 2, 1)
        runs = set(tx.session.scalars(sa.select(JobRun.run_key).where(JobRun.job == JOB_ADVANCE)))
    assert runs == {f"{sub_id}:2027-02-01T00:00:00Z" for sub_id in ids if sub_id != failing}
    monkeypatch.setattr(lifecycle, "advance", real_advance)
    assert advance_due(db, JobContext(owner="test")) == {
        "advanced": 1,
        "boundaries": 1,
        "skipped": 0,
        "failed": 0,
    }


def test_running_the_job_twice_changes_nothing_the_second_time(at: At) -> None:
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        for _ in range(7):
            create_subscription(tx)
        create_subscription(tx, trial_period_days=10)
        canceling = create_subscription(tx).subscription.id
        service.cancel(tx, canceling, CancelRequest())
    clock.set(utc(2027, 2, 1, 0, 1))
    first = advance_due(db, JobContext(owner="test", options={"chunk": 3, "limit": 4}))
    assert first == {"advanced": 9, "boundaries": 9, "skipped": 0, "failed": 0}
    after_first = _counts(db)
    with db.read() as tx:
        assert service.view(tx, canceling).status == "canceled"
    second = advance_due(db, JobContext(owner="other", options={"chunk": 3, "limit": 4}))
    assert second == {"advanced": 0, "boundaries": 0, "skipped": 0, "failed": 0}
    assert _counts(db) == after_first


def test_a_boundary_whose_run_already_succeeded_is_skipped(at: At) -> None:
    """Defensive path: if the run of a due boundary is found succeeded, the chunk is redone
    claiming each run first, and that subscription is skipped, the others advanced."""
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        ids = sorted(create_subscription(tx).subscription.id for _ in range(3))
    clock.set(utc(2027, 2, 1, 0, 1))
    with db.transaction() as tx:
        key = f"{ids[1]}:{isoformat_z(utc(2027, 2, 1))}"
        claim = jobruns.claim_in(tx, job=JOB_ADVANCE, run_key=key, owner="elsewhere")
        assert claim is not None
        jobruns.complete(tx, claim, {"boundaries": 1})
    report = advance_due(db, JobContext(owner="test"))
    assert report == {"advanced": 2, "boundaries": 2, "skipped": 1, "failed": 0}
    with db.read() as tx:
        assert len(service.charges(tx, ids[1])) == 1
        assert all(len(service.charges(tx, sub_id)) == 2 for sub_id in (ids[0], ids[2]))


@pytest.mark.pg_only
def test_a_subscription_locked_elsewhere_is_skipped_and_stays_due(pg_db: Database) -> None:
    clock = TestClock(utc(2027, 1, 1))
    db = pg_db.with_clock(clock)
    with db.transaction() as tx:
        ids = sorted(create_subscription(tx).subscription.id for _ in range(3))
    clock.set(utc(2027, 2, 1, 0, 1))
    with db.transaction() as holder:
        state.lock(holder, ids[0])  # a request holds the row
        report = advance_due(db, JobContext(owner="test"))
    assert report == {"advanced": 2, "boundaries": 2, "skipped": 1, "failed": 0}
    assert advance_due(db, JobContext(owner="test"))["advanced"] == 1


@pytest.mark.pg_only
def test_concurrent_runs_advance_each_subscription_exactly_once(pg_db: Database) -> None:
    """Two workers run the job at the same instant over small chunks: every (subscription,
    boundary) has one job run and one new pending fee, and the reports add up."""
    clock = TestClock(utc(2027, 1, 1))
    db = pg_db.with_clock(clock)
    with db.transaction() as tx:
        version = create_version(tx, prices=[flat_price(1000)])
        ids = [create_subscription(tx, version=version).subscription.id for _ in range(40)]
    clock.set(utc(2027, 2, 1, 0, 1))
    barrier = threading.Barrier(2)

    def run(owner: str) -> dict[str, int]:
        barrier.wait()
        return advance_due(db, JobContext(owner=owner, options={"chunk": 4, "limit": 8}))

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = list(pool.map(run, ["a", "b"]))
    assert sum(r["advanced"] for r in reports) == 40
    assert sum(r["failed"] for r in reports) == 0
    with db.read() as tx:
        runs = list(tx.session.scalars(sa.select(JobRun).where(JobRun.job == JOB_ADVANCE)))
        assert sorted(run.run_key for run in runs) == sorted(
            f"{sub_id}:2027-02-01T00:00:00Z" for sub_id in ids
        )
        assert all(run.status == "succeeded" for run in runs)
        for sub_id in ids:
            starts = [c.service_start_at for c in service.charges(tx, sub_id)]
            assert starts == [utc(2027, 1, 1), utc(2027, 2, 1)]
    assert advance_due(db, JobContext(owner="c"))["advanced"] == 0


def test_a_chunk_whose_transaction_fails_keeps_nothing_and_the_next_chunk_runs(
    at: At, monkeypatch: pytest.MonkeyPatch
) -> None:
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        ids = sorted(create_subscription(tx).subscription.id for _ in range(4))
    clock.set(utc(2027, 2, 1, 0, 1))
    real_complete = jobruns.claim_and_complete_many
    calls = []

    def complete_many(tx: object, **kwargs: object) -> set[str]:
        calls.append(kwargs)
        if len(calls) == 1:
            raise RuntimeError("the first chunk's job runs cannot be written")
        return real_complete(tx, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jobruns, "claim_and_complete_many", complete_many)
    report = advance_due(db, JobContext(owner="test", options={"chunk": 2}))
    assert report == {"advanced": 2, "boundaries": 2, "skipped": 0, "failed": 2}
    with db.read() as tx:
        assert [len(service.charges(tx, sub_id)) for sub_id in ids] == [1, 1, 2, 2]
