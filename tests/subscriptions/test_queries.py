"""The contract with invoicing and entitlements: phases, periods, rating a period, pending
charges and marking them invoiced."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

import pytest

from tallybook.db import Database
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import TallybookError
from tallybook.rating import UsageRequest
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import ChangeRequest
from tests.fixtures.catalog_factories import (
    create_subscription,
    create_version,
    flat_price,
    usage_price,
)
from tests.fixtures.factories import create_meter

At = Callable[[datetime], tuple[Database, TestClock]]


def test_rating_a_period_with_a_change_in_it(at: At) -> None:
    db, clock = at(utc(2026, 11, 1))
    with db.transaction() as tx:
        meter = create_meter(tx)
        basic = create_version(
            tx,
            plan_key="basic",
            plan_name="Basic",
            prices=[flat_price(1000), usage_price(meter.id, unit_price="0.01", key="tok")],
            minimum_commitment_minor=5000,
        )
        pro = create_version(
            tx,
            plan_key="pro",
            plan_name="Pro",
            prices=[flat_price(4000), usage_price(meter.id, unit_price="0.005", key="tok")],
        )
        sub_id = create_subscription(tx, version=basic).subscription.id
    clock.set(utc(2026, 11, 16))
    with db.transaction() as tx:
        service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=pro.id))
    clock.set(utc(2026, 12, 1, 0, 5))
    with db.transaction() as tx:
        service.advance_by_id(tx, sub_id)
    with db.read() as tx:
        [ended] = service.ended_periods(tx, utc(2026, 12, 1), utc(2026, 12, 2))
        rating_input = service.period_rating_input(tx, ended.id)
        asked: list[UsageRequest] = []

        def usage(customer_id: str, request: UsageRequest) -> Decimal:
            asked.append(request)
            return Decimal(100) if request.start == utc(2026, 11, 1) else Decimal(300)

        rated = service.rate_period(tx, ended.id, usage)
    assert [(r.start, r.end, r.meter_id) for r in asked] == [
        (utc(2026, 11, 1), utc(2026, 11, 16), meter.id),
        (utc(2026, 11, 16), utc(2026, 12, 1), meter.id),
    ]
    # 10.00 in advance, −5.00 credit, +20.00 remaining Pro fee.
    assert rating_input.advance_charged_minor == 2500
    # 100 × 0.01 under Basic, 300 × 0.005 under Pro. Basic's 50.00 minimum for half the
    # period is 25.00; 25.00 in advance + 2.50 of usage were charged: no true-up.
    assert [(line.kind, line.amount_minor) for line in rated.lines] == [
        ("usage", 100),
        ("usage", 150),
    ]


def test_current_period_recorded_and_projected(at: At) -> None:
    db, _ = at(utc(2027, 1, 31))
    with db.transaction() as tx:
        sub = create_subscription(tx).subscription
    with db.read() as tx:
        row = service.get(tx, sub.id)
        recorded = service.current_period(tx, row, utc(2027, 2, 10))
        projected = service.current_period(tx, row, utc(2027, 4, 30, 12))
        before = service.current_period(tx, row, utc(2027, 1, 1))
    assert recorded is not None and recorded.id == sub.current_period_id
    assert projected is not None and projected.id is None
    assert (projected.start_at, projected.end_at) == (utc(2027, 4, 30), utc(2027, 5, 31))
    assert before is None


def test_a_customers_subscriptions(db: Database) -> None:
    from tallybook.subscriptions.domain import CancelAt, CancelRequest
    from tests.fixtures.factories import create_customer

    with db.transaction() as tx:
        customer = create_customer(tx)
        first = create_subscription(tx, customer=customer).subscription.id
        second = create_subscription(tx, customer=customer).subscription.id
        create_subscription(tx)  # someone else's
        service.cancel(tx, first, CancelRequest(at=CancelAt.NOW))
        assert [s.id for s in service.for_customer(tx, customer.id)] == [second]
        everything = service.for_customer(tx, customer.id, include_canceled=True)
        assert [s.id for s in everything] == [first, second]


def test_phases_and_periods_for_a_window(at: At) -> None:
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        a = create_version(tx, plan_key="a", prices=[flat_price(1000)])
        b = create_version(tx, plan_key="b", prices=[flat_price(2000)])
        sub_id = create_subscription(tx, version=a).subscription.id
    clock.set(utc(2027, 1, 10))
    with db.transaction() as tx:
        service.change_plan(tx, sub_id, ChangeRequest(plan_version_id=b.id))
        phases = service.phases_overlapping(tx, sub_id, utc(2027, 1, 1), utc(2027, 2, 1))
        later = service.phases_overlapping(tx, sub_id, utc(2027, 1, 10), utc(2027, 2, 1))
        ending = service.subscriptions_with_period_ending_between(
            tx, utc(2027, 2, 1), utc(2027, 2, 2)
        )
    assert [p.plan_version_id for p in phases] == [a.id, b.id]
    assert [p.plan_version_id for p in later] == [b.id]
    assert [s.id for s in ending] == [sub_id]


def test_pending_charges_and_marking_them_invoiced(at: At) -> None:
    db, clock = at(utc(2027, 1, 1))
    with db.transaction() as tx:
        sub_id = create_subscription(tx).subscription.id
    clock.set(utc(2027, 2, 1, 1))
    with db.transaction() as tx:
        service.advance_by_id(tx, sub_id)
        january = service.pending_charges(tx, sub_id, utc(2027, 1, 31))
        both = service.pending_charges(tx, sub_id, utc(2027, 2, 1))
        assert [c.service_start_at for c in january] == [utc(2027, 1, 1)]
        assert len(both) == 2
        assert service.mark_charges_invoiced(tx, [january[0].id], "in_1") == 1
        assert service.mark_charges_invoiced(tx, [january[0].id], "in_1") == 0  # idempotent
        with pytest.raises(TallybookError) as caught:
            service.mark_charges_invoiced(tx, [january[0].id], "in_2")
        assert caught.value.code == "subscription_charge_already_invoiced"
        with pytest.raises(TallybookError) as caught:
            service.mark_charges_invoiced(tx, ["pch_missing"], "in_2")
        assert caught.value.code == "resource_missing"
        remaining = service.pending_charges(tx, sub_id, utc(2027, 2, 1))
        assert [c.service_start_at for c in remaining] == [utc(2027, 2, 1)]
