"""Plan changes, cancellations, resumption and migrations, with their previews."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy as sa

from tallybook.catalog.domain import ChangePolicy
from tallybook.catalog.models import PlanVersion
from tallybook.db import Database, Tx
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import TallybookError
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import CancelAt, CancelRequest, ChangeRequest, CreateRequest
from tallybook.subscriptions.views import ChangeResult, PendingChargeView
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer

At = Callable[[datetime], tuple[Database, TestClock]]

TABLES = (
    "subscriptions",
    "subscription_phases",
    "subscription_periods",
    "subscription_changes",
    "subscription_charges",
    "domain_events",
)


def versions(tx: Tx) -> tuple[PlanVersion, PlanVersion]:
    basic = create_version(tx, plan_key="basic", plan_name="Basic", prices=[flat_price(1000)])
    pro = create_version(tx, plan_key="pro", plan_name="Pro", prices=[flat_price(3000)])
    return basic, pro


def started(at: At, when: datetime = utc(2027, 1, 31)) -> tuple[Database, TestClock, str, Any]:
    """A Basic subscription started at ``when`` (period Jan 31 → Feb 28: 28 days)."""
    db, clock = at(when)
    with db.transaction() as tx:
        basic, pro = versions(tx)
        sub_id = create_subscription(tx, version=basic).subscription.id
    return db, clock, sub_id, {"basic": basic.id, "pro": pro.id}


def summary(result: ChangeResult) -> list[tuple[str, int]]:
    return [(line.kind, line.amount_minor) for line in result.lines]


def comparable(line: PendingChargeView) -> tuple[Any, ...]:
    """What a preview promises: everything but the ids of rows it did not keep."""
    return (
        line.kind,
        line.description,
        line.currency,
        line.amount_minor,
        line.service_start_at,
        line.service_end_at,
        line.price_id,
        line.price_key,
        line.plan_version_id,
        line.invoice_now,
        line.breakdown,
    )


def row_counts(db: Database) -> dict[str, int]:
    with db.read() as tx:
        return {
            t: tx.session.execute(sa.text(f"SELECT COUNT(*) FROM {t}")).scalar_one() for t in TABLES
        }


class TestPlanChanges:
    def test_an_upgrade_prorates_now_by_default(self, at: At) -> None:
        db, clock, sub_id, v = started(at)
        clock.set(utc(2027, 2, 14))  # half of the 28 days
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v["pro"]))
        assert summary(result) == [("proration_credit", -500), ("proration_charge", 1500)]
        assert result.change is not None
        assert (result.change.direction, result.change.policy) == ("upgrade", "prorate_now")
        with db.read() as tx:
            phases = service.phases(tx, sub_id)
        assert [(p.plan_version_id, p.start_at, p.end_at) for p in phases] == [
            (v["basic"], utc(2027, 1, 31), utc(2027, 2, 14)),
            (v["pro"], utc(2027, 2, 14), None),
        ]

    def test_a_downgrade_waits_for_period_end_by_default(self, at: At) -> None:
        db, clock, sub_id, v = started(at)
        clock.set(utc(2027, 2, 3))
        with db.transaction() as tx:
            service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v["pro"]))
        clock.set(utc(2027, 2, 20))
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v["basic"]))
        assert result.lines == ()
        scheduled = result.subscription.scheduled_change
        assert scheduled is not None
        assert (scheduled.status, scheduled.effective_at) == ("scheduled", utc(2027, 2, 28))
        clock.set(utc(2027, 3, 1))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub_id)
            after = service.view(tx, sub_id)
            charges = service.pending_charges(tx, sub_id, utc(2027, 3, 1))
        assert after.plan_version_id == v["basic"] and after.scheduled_change is None
        assert [(c.kind, c.amount_minor, c.plan_version_id) for c in charges][-1] == (
            "fee_advance",
            1000,
            v["basic"],
        )

    def test_the_call_overrides_the_policy(self, at: At) -> None:
        db, clock, sub_id, v = started(at)
        clock.set(utc(2027, 2, 14))
        later = ChangeRequest(plan_version_id=v["pro"], policy=ChangePolicy.PERIOD_END)
        with db.transaction() as tx:
            assert service.change_plan(tx, sub_id, later).lines == ()
        with db.transaction() as tx, pytest.raises(TallybookError) as caught:
            service.change_plan(tx, sub_id, later)
        assert caught.value.code == "subscription_change_already_scheduled"
        # A change that applies now supersedes the scheduled one.
        now = ChangeRequest(plan_version_id=v["pro"], policy=ChangePolicy.NOW_WITHOUT_PRORATION)
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, now)
            history = service.changes(tx, sub_id)
        assert result.lines == () and result.subscription.plan_version_id == v["pro"]
        assert result.subscription.scheduled_change is None
        assert [(c.policy, c.status) for c in history] == [
            ("now_without_proration", "applied"),
            ("period_end", "canceled"),
        ]
        with db.transaction() as tx, pytest.raises(TallybookError) as caught:
            service.cancel_scheduled_change(tx, sub_id)
        assert caught.value.code == "subscription_no_scheduled_change"

    @pytest.mark.parametrize("kind", ["upgrade", "cancel_now", "create"])
    def test_a_preview_equals_what_is_recorded_and_writes_nothing(self, at: At, kind: str) -> None:
        db, clock, sub_id, v = started(at)
        with db.transaction() as tx:
            customer_id = create_customer(tx).id
        clock.set(utc(2027, 2, 10, 13, 14, 15))

        def run(tx: Tx, preview: bool) -> ChangeResult:
            if kind == "upgrade":
                request = ChangeRequest(plan_version_id=v["pro"], invoice_now=True)
                return service.change_plan(tx, sub_id, request, preview=preview)
            if kind == "cancel_now":
                request_ = CancelRequest(at=CancelAt.NOW, credit_unused=True)
                return service.cancel(tx, sub_id, request_, preview=preview)
            request__ = CreateRequest(
                customer=customer_id, plan_version_id=v["pro"], billing_anchor=utc(2027, 3, 1)
            )
            return service.create(tx, request__, preview=preview)

        before = row_counts(db)
        with db.transaction() as tx:
            preview = run(tx, True)
        assert row_counts(db) == before
        assert preview.preview and preview.lines
        with db.transaction() as tx:
            applied = run(tx, False)
        assert [comparable(line) for line in preview.lines] == [
            comparable(line) for line in applied.lines
        ]
        with db.read() as tx:
            stored = {c.id: c for c in service.charges(tx, applied.subscription.id)}
        assert [comparable(stored[line.id]) for line in applied.lines] == [
            comparable(line) for line in preview.lines
        ]

    def test_upgrade_downgrade_upgrade_pays_each_plan_for_its_time(self, at: At) -> None:
        db, clock, sub_id, v = started(at)
        now = ChangeRequest(policy=ChangePolicy.PRORATE_NOW)
        for day, target in ((8, "pro"), (15, "basic"), (22, "pro")):
            clock.set(utc(2027, 2, day))
            with db.transaction() as tx:
                service.change_plan(
                    tx,
                    sub_id,
                    ChangeRequest(plan_version_id=v[target], policy=now.policy),
                )
        with db.read() as tx:
            lines = service.charges(tx, sub_id)
        # Basic 8 + 7 days, Pro 7 + 6 days of 28: 10.00×15/28 + 30.00×13/28 = 19.285…
        assert sum(line.amount_minor for line in lines) in (1928, 1929, 1930)
        for line in lines:
            assert 0 <= line.credited_minor <= max(line.amount_minor, 0)

    def test_a_new_interval_starts_a_new_period_now(self, at: At) -> None:
        db, clock, sub_id, _ = started(at)
        with db.transaction() as tx:
            yearly = create_version(
                tx, plan_key="annual", interval="year", prices=[flat_price(20000)]
            )
        clock.set(utc(2027, 2, 14))
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=yearly.id))
        assert summary(result) == [("proration_credit", -500), ("fee_advance", 20000)]
        sub = result.subscription
        assert (sub.current_period_start_at, sub.current_period_end_at) == (
            utc(2027, 2, 14),
            utc(2028, 2, 14),
        )
        with db.read() as tx:
            periods = service.periods(tx, sub_id)
        assert [(p.start_at, p.end_at, p.end_reason) for p in periods] == [
            (utc(2027, 1, 31), utc(2027, 2, 14), "interval_changed"),
            (utc(2027, 2, 14), utc(2028, 2, 14), None),
        ]

    def test_a_new_interval_without_proration_charges_in_full_and_credits_nothing(
        self, at: At
    ) -> None:
        db, clock, sub_id, _ = started(at)
        with db.transaction() as tx:
            yearly = create_version(
                tx, plan_key="annual", interval="year", prices=[flat_price(20000)]
            )
        clock.set(utc(2027, 2, 14))
        request = ChangeRequest(
            plan_version_id=yearly.id, policy=ChangePolicy.NOW_WITHOUT_PRORATION
        )
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, request)
        assert summary(result) == [("fee_advance", 20000)]
        assert result.subscription.current_period_end_at == utc(2028, 2, 14)

    def test_changes_in_a_trial_apply_at_once_without_charges(self, at: At) -> None:
        db, clock = at(utc(2027, 1, 1))
        with db.transaction() as tx:
            basic, pro = versions(tx)
            sub_id = create_subscription(tx, version=basic, trial_period_days=14).subscription.id
        clock.set(utc(2027, 1, 5))
        with db.transaction() as tx:
            result = service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=pro.id))
        assert result.lines == () and result.subscription.status == "trialing"
        clock.set(utc(2027, 1, 16))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub_id)
            assert [c.amount_minor for c in service.charges(tx, sub_id)] == [3000]

    @pytest.mark.parametrize(
        ("target", "code", "param"),
        [
            ("basic", "subscription_change_noop", "plan_version"),
            ("euro", "subscription_currency_mismatch", "plan_version"),
            ("draft", "plan_version_not_published", "plan_version"),
        ],
    )
    def test_named_errors(self, at: At, target: str, code: str, param: str) -> None:
        db, _, sub_id, v = started(at)
        with db.transaction() as tx:
            v["euro"] = create_version(tx, currency="EUR").id
            v["draft"] = create_version(tx, publish=False).id
        with db.transaction() as tx, pytest.raises(TallybookError) as caught:
            service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v[target]))
        assert (caught.value.code, caught.value.param) == (code, param)


class TestCancellation:
    def test_at_period_end_is_revocable_until_then(self, at: At) -> None:
        db, clock, sub_id, v = started(at)
        clock.set(utc(2027, 2, 10))
        with db.transaction() as tx:
            result = service.cancel(tx, sub_id, CancelRequest())
            assert result.subscription.cancel_at_period_end
            with pytest.raises(TallybookError) as caught:
                service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v["pro"]))
            assert caught.value.code == "subscription_cancel_scheduled"
            resumed = service.resume(tx, sub_id)
            assert not resumed.subscription.cancel_at_period_end
            with pytest.raises(TallybookError) as caught:
                service.resume(tx, sub_id)
            assert caught.value.code == "subscription_nothing_to_resume"
            service.cancel(tx, sub_id, CancelRequest())
        clock.set(utc(2027, 3, 2))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub_id)
            after = service.view(tx, sub_id)
            assert [c.kind for c in service.charges(tx, sub_id)] == ["fee_advance"]
        assert (after.status, after.ended_at) == ("canceled", utc(2027, 2, 28))

    @pytest.mark.parametrize(
        ("credit", "lines"), [(True, [("proration_credit", -500)]), (False, [])]
    )
    def test_now_with_or_without_credit(self, at: At, credit: bool, lines: list) -> None:  # type: ignore[type-arg]
        db, clock, sub_id, _ = started(at)
        clock.set(utc(2027, 2, 14))
        with db.transaction() as tx:
            result = service.cancel(
                tx, sub_id, CancelRequest(at=CancelAt.NOW, credit_unused=credit)
            )
        assert summary(result) == lines
        assert (result.subscription.status, result.subscription.ended_at) == (
            "canceled",
            utc(2027, 2, 14),
        )
        with db.read() as tx:
            [period] = service.periods(tx, sub_id)
        assert (period.end_at, period.end_reason) == (utc(2027, 2, 14), "canceled")

    def test_the_plan_policy_decides_the_credit_by_default(self, at: At) -> None:
        db, clock = at(utc(2027, 1, 31))
        with db.transaction() as tx:
            version = create_version(tx, cancellation_credit="prorate")
            sub_id = create_subscription(tx, version=version).subscription.id
        clock.set(utc(2027, 2, 14))
        with db.transaction() as tx:
            result = service.cancel(tx, sub_id, CancelRequest(at=CancelAt.NOW))
        assert summary(result) == [("proration_credit", -1000)]

    def test_nothing_changes_a_canceled_subscription(self, at: At) -> None:
        db, _, sub_id, v = started(at)
        with db.transaction() as tx:
            service.cancel(tx, sub_id, CancelRequest(at=CancelAt.NOW))
        calls = [
            lambda tx: service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=v["pro"])),
            lambda tx: service.cancel(tx, sub_id, CancelRequest(at=CancelAt.NOW)),
            lambda tx: service.resume(tx, sub_id),
            lambda tx: service.mark_past_due(tx, sub_id),
        ]
        for call in calls:
            with db.transaction() as tx, pytest.raises(TallybookError) as caught:
                call(tx)
            assert caught.value.code == "subscription_canceled"


class TestMigration:
    def test_bulk_moves_subscriptions_between_versions(self, at: At) -> None:
        db, clock = at(utc(2027, 1, 31))
        with db.transaction() as tx:
            old = create_version(tx, plan_key="pro", prices=[flat_price(2000)])
            new = create_version(tx, plan_key="pro", prices=[flat_price(2500)])
            ids = sorted(create_subscription(tx, version=old).subscription.id for _ in range(3))
            service.cancel(tx, ids[1], CancelRequest())
        with db.transaction() as tx:
            first = service.migrate(tx, old.id, new.id, limit=2)
            assert first.migrated == (ids[0],)
            assert first.skipped == ((ids[1], "subscription_cancel_scheduled"),)
            assert first.has_more and first.next_after == ids[1]
            rest = service.migrate(tx, old.id, new.id, after_id=first.next_after)
            assert rest.migrated == (ids[2],) and not rest.has_more
            again = service.migrate(tx, old.id, new.id)
            assert {s for s, _ in again.skipped} == {ids[0], ids[1], ids[2]}
        clock.set(utc(2027, 3, 1))
        with db.transaction() as tx:
            for sub_id in ids:
                service.advance_by_id(tx, sub_id)
            on_new = [service.view(tx, s).plan_version_id == new.id for s in ids]
        assert on_new == [True, False, True]

    def test_only_within_one_plan(self, db: Database) -> None:
        with db.transaction() as tx:
            a = create_version(tx, plan_key="a")
            b = create_version(tx, plan_key="b")
            with pytest.raises(TallybookError) as caught:
                service.migrate(tx, a.id, b.id)
        assert caught.value.code == "subscription_migration_plan_mismatch"
