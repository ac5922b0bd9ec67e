"""Creating subscriptions, renewing them, trials, pauses, and the status state machine."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
import sqlalchemy as sa

from tallybook.db import Database
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import TallybookError
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import CreateRequest, Status, check_transition
from tallybook.work.models import DomainEvent
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer

At = Callable[[datetime], tuple[Database, TestClock]]


def charges(db: Database, subscription_id: str) -> list[tuple[str, int, str, str]]:
    with db.read() as tx:
        return [
            (
                c.kind,
                c.amount_minor,
                c.service_start_at.date().isoformat(),
                c.service_end_at.date().isoformat(),
            )
            for c in service.charges(tx, subscription_id)
        ]


def event_types(db: Database) -> list[str]:
    with db.read() as tx:
        return list(tx.session.scalars(sa.select(DomainEvent.type).order_by(DomainEvent.id)))


class TestCreate:
    def test_starts_now_and_charges_the_first_period(self, at: At) -> None:
        db, _ = at(
            utc(
                2027,
                1,
                31,
                10,
                30,
                15,
            )
        )
        with db.transaction() as tx:
            result = create_subscription(tx)
        sub = result.subscription
        assert sub.status == "active"
        assert sub.current_period_start_at == utc(2027, 1, 31, 10, 30, 15)
        assert sub.current_period_end_at == utc(2027, 2, 28, 10, 30, 15)
        assert [(line.kind, line.amount_minor) for line in result.lines] == [("fee_advance", 2000)]
        assert "subscription.created" in event_types(db)

    def test_an_anchor_on_the_first_prorates_the_first_period(self, at: At) -> None:
        db, _ = at(utc(2027, 1, 15))
        with db.transaction() as tx:
            version = create_version(tx, prices=[flat_price(3100)])
            result = create_subscription(tx, version=version, billing_anchor=utc(2027, 2, 1))
        assert result.subscription.current_period_end_at == utc(2027, 2, 1)
        # 17 of 31 days of 31.00.
        assert [(line.kind, line.amount_minor) for line in result.lines] == [("fee_advance", 1700)]
        assert result.lines[0].breakdown["proration"] == {
            "seconds": 17 * 86400,
            "period_seconds": 31 * 86400,
            "fraction": "0.548387096774",
        }

    def test_the_customer_takes_the_plan_currency_and_must_keep_it(self, db: Database) -> None:
        with db.transaction() as tx:
            customer = create_customer(tx, currency=None)
            create_subscription(tx, customer=customer, version=create_version(tx, currency="EUR"))
            assert customer.currency == "EUR"
            with pytest.raises(TallybookError) as caught:
                create_subscription(tx, customer=customer, version=create_version(tx))
            assert (caught.value.code, caught.value.param) == (
                "subscription_currency_mismatch",
                "plan_version",
            )

    def test_by_plan_key_takes_the_latest_published_version(self, db: Database) -> None:
        with db.transaction() as tx:
            create_version(tx, plan_key="pro")
            newest = create_version(tx, plan_key="pro", prices=[flat_price(3000)])
            create_version(tx, plan_key="pro", publish=False)
            result = service.create(tx, CreateRequest(customer=create_customer(tx).id, plan="pro"))
            assert result.subscription.plan_version_id == newest.id

    @pytest.mark.parametrize(
        ("fields", "code", "param"),
        [
            ({"trial_period_days": 900}, "subscription_trial_invalid", "trial_period_days"),
            ({"trial_end": utc(2020, 1, 1)}, "subscription_trial_invalid", "trial_end"),
            ({"billing_anchor": utc(1990, 1, 1)}, "subscription_anchor_invalid", "billing_anchor"),
            ({"trial_end_behavior": "explode"}, "parameter_invalid", "trial_end_behavior"),
        ],
    )
    def test_named_errors(self, db: Database, fields: dict, code: str, param: str) -> None:  # type: ignore[type-arg]
        with db.transaction() as tx, pytest.raises(TallybookError) as caught:
            create_subscription(tx, **fields)
        assert (caught.value.code, caught.value.param) == (code, param)


class TestRenewal:
    def test_periods_follow_the_anchor_through_february_and_back(self, at: At) -> None:
        db, clock = at(utc(2028, 1, 31))
        with db.transaction() as tx:
            sub_id = create_subscription(tx).subscription.id
        clock.set(utc(2028, 5, 1))
        with db.transaction() as tx:
            assert service.advance_by_id(tx, sub_id) == 3
            assert service.advance_by_id(tx, sub_id) == 0  # idempotent
        assert charges(db, sub_id) == [
            ("fee_advance", 2000, "2028-01-31", "2028-02-29"),
            ("fee_advance", 2000, "2028-02-29", "2028-03-31"),
            ("fee_advance", 2000, "2028-03-31", "2028-04-30"),
            ("fee_advance", 2000, "2028-04-30", "2028-05-31"),
        ]
        with db.read() as tx:
            ended = service.ended_periods(tx, utc(2028, 1, 1), utc(2028, 5, 1))
            assert [(p.start_at.day, p.end_at.day, p.end_reason) for p in ended] == [
                (31, 29, "renewed"),
                (29, 31, "renewed"),
                (31, 30, "renewed"),
            ]


class TestTrials:
    def test_a_trial_bills_nothing_then_converts(self, at: At) -> None:
        db, clock = at(utc(2027, 3, 1, 12))
        with db.transaction() as tx:
            result = create_subscription(tx, trial_period_days=14)
        sub = result.subscription
        assert (sub.status, sub.trial_end_at, result.lines) == (
            "trialing",
            utc(2027, 3, 15, 12),
            (),
        )
        clock.set(utc(2027, 3, 20))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub.id)
            after = service.view(tx, sub.id)
        assert after.status == "active"
        assert (after.current_period_start_at, after.current_period_end_at) == (
            utc(2027, 3, 15, 12),
            utc(2027, 4, 15, 12),
        )
        assert charges(db, sub.id) == [("fee_advance", 2000, "2027-03-15", "2027-04-15")]
        assert "subscription.trial_ended" in event_types(db)

    def test_a_plan_default_trial(self, db: Database) -> None:
        with db.transaction() as tx:
            version = create_version(tx, trial_period_days=7)
            assert create_subscription(tx, version=version).subscription.status == "trialing"
            no_trial = create_subscription(tx, version=version, trial_period_days=0)
            assert no_trial.subscription.status == "active"

    @pytest.mark.parametrize(("behavior", "status"), [("cancel", "canceled"), ("pause", "paused")])
    def test_a_trial_that_ends_without_converting(self, at: At, behavior: str, status: str) -> None:
        db, clock = at(utc(2027, 3, 1))
        with db.transaction() as tx:
            sub_id = create_subscription(
                tx, trial_period_days=7, trial_end_behavior=behavior
            ).subscription.id
        clock.set(utc(2027, 3, 9))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub_id)
            assert service.view(tx, sub_id).status == status
        assert charges(db, sub_id) == []

    def test_resuming_a_paused_subscription_starts_a_period_now(self, at: At) -> None:
        db, clock = at(utc(2027, 3, 1))
        with db.transaction() as tx:
            sub_id = create_subscription(
                tx, trial_period_days=7, trial_end_behavior="pause"
            ).subscription.id
        clock.set(utc(2027, 3, 20, 8))
        with db.transaction() as tx:
            service.advance_by_id(tx, sub_id)
            result = service.resume(tx, sub_id)
        assert result.subscription.status == "active"
        assert result.subscription.billing_anchor_at == utc(2027, 3, 20, 8)
        assert charges(db, sub_id) == [("fee_advance", 2000, "2027-03-20", "2027-04-20")]

    def test_ending_a_trial_early(self, at: At) -> None:
        db, clock = at(utc(2027, 3, 1))
        with db.transaction() as tx:
            sub_id = create_subscription(tx, trial_period_days=30).subscription.id
        clock.set(utc(2027, 3, 5))
        with db.transaction() as tx:
            preview = service.end_trial(tx, sub_id, preview=True)
            real = service.end_trial(tx, sub_id)
        assert [line.amount_minor for line in preview.lines] == [2000]
        assert real.subscription.current_period_start_at == utc(2027, 3, 5)
        assert real.subscription.trial_end_at == utc(2027, 3, 5)
        with db.transaction() as tx, pytest.raises(TallybookError) as caught:
            service.end_trial(tx, sub_id)
        assert caught.value.code == "subscription_transition_invalid"


class TestStatusMachine:
    @pytest.mark.parametrize(
        ("current", "target", "allowed"),
        [
            ("trialing", "active", True),
            ("trialing", "past_due", False),
            ("active", "past_due", True),
            ("active", "unpaid", False),
            ("past_due", "unpaid", True),
            ("past_due", "active", True),
            ("unpaid", "active", True),
            ("paused", "active", True),
            ("active", "paused", False),
            ("active", "trialing", False),
            ("active", "canceled", True),
        ],
    )
    def test_transitions(self, current: str, target: str, allowed: bool) -> None:
        if allowed:
            assert check_transition(Status(current), Status(target)) is True
        else:
            with pytest.raises(TallybookError) as caught:
                check_transition(Status(current), Status(target))
            assert caught.value.code == "subscription_transition_invalid"

    def test_canceled_is_terminal(self) -> None:
        for target in Status:
            if target == Status.CANCELED:
                continue
            with pytest.raises(TallybookError) as caught:
                check_transition(Status.CANCELED, target)
            assert caught.value.code == "subscription_canceled"

    def test_payments_drive_past_due_unpaid_and_back(self, db: Database) -> None:
        with db.transaction() as tx:
            sub_id = create_subscription(tx).subscription.id
            assert service.mark_past_due(tx, sub_id).status == "past_due"
            assert service.mark_past_due(tx, sub_id).status == "past_due"  # repeatable
            assert service.mark_unpaid(tx, sub_id).status == "unpaid"
            assert service.mark_active(tx, sub_id).status == "active"
            with pytest.raises(TallybookError) as caught:
                service.mark_unpaid(tx, sub_id)
            assert caught.value.code == "subscription_transition_invalid"
