"""Reservations: units against a limit (settled as usage through metering, exactly once) and
money held on credit grants (ledger holds, posted or voided), released or expired."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.entitlements import service as entitlements
from tallybook.entitlements import tasks
from tallybook.grants import service as grants
from tallybook.kit.clock import TestClock
from tallybook.kit.errors import TallybookError
from tallybook.ledger import service as ledger
from tallybook.metering.models import MeteringEvent
from tallybook.work.schedule import JobContext
from tests.entitlements.conftest import checked
from tests.fixtures.grants_factories import issue, metered_setup, send_usage


def reserve(db: Database, **fields: object) -> entitlements.ReserveOutcome:
    with db.transaction(actor="key_app") as tx:
        return entitlements.reserve(tx, entitlements.ReservationInput(**fields))  # type: ignore[arg-type]


def test_units_are_held_then_settled_as_usage_exactly_once(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=1000)
    customer, feature = setup.customer.id, setup.feature.key
    send_usage(db, setup.customer, 400)
    held = reserve(db, customer=customer, feature=feature, quantity=500).reservation
    assert held is not None and held.status == "open"
    during = checked(db, customer, feature)
    assert (during.used, during.reserved, during.remaining) == (
        Decimal(400),
        Decimal(500),
        Decimal(100),
    )
    refused = reserve(db, customer=customer, feature=feature, quantity=101)
    assert refused.refused and str(refused.check.reason) == "limit_exceeded"  # type: ignore[union-attr]

    with db.transaction() as tx:
        settled = entitlements.settle(tx, held.id, quantity="320.25")
    assert (settled.status, settled.settled_quantity) == ("settled", Decimal("320.25"))
    after = checked(db, customer, feature)
    assert (after.used, after.reserved) == (Decimal("720.25"), Decimal(0))
    with db.read() as tx:
        recorded = tx.session.scalars(
            select(MeteringEvent).where(MeteringEvent.source == "tallybook.reservation")
        ).all()
        assert [(e.event_id, e.customer_id) for e in recorded] == [(held.id, setup.customer.id)]
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        entitlements.settle(tx, held.id)
    assert raised.value.code == "reservation_not_open"


def test_release_and_expiry_give_units_back(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx, limit=100)
    customer, feature = setup.customer.id, setup.feature.key
    first = reserve(db, customer=customer, feature=feature, quantity=60).reservation
    second = reserve(
        db, customer=customer, feature=feature, quantity=40, timeout_seconds=60
    ).reservation
    assert first and second
    assert not checked(db, customer, feature).allowed
    with db.transaction() as tx:
        entitlements.release(tx, first.id)
    assert checked(db, customer, feature).reserved == Decimal(40)
    clock.advance(seconds=61)
    assert checked(db, customer, feature).reserved == Decimal(0)  # expired: no longer counted
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        entitlements.settle(tx, second.id)
    assert raised.value.code == "reservation_expired"
    result = tasks.run_expire_reservations(db, JobContext(owner="w"))
    assert result["expired"] == 1
    with db.read() as tx:
        assert entitlements.get_reservation(tx, second.id).status == "expired"
        events = tx.session.scalar(select(func.count()).select_from(MeteringEvent))
    assert events == 0


def test_money_is_held_on_grants_then_posted_and_the_rest_released(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
        first = issue(tx, setup.customer, 300, priority=1)
        second = issue(tx, setup.customer, 500, priority=2)
    held = reserve(db, customer=setup.customer.id, amount_minor=600).reservation
    assert held is not None
    assert [(h["grant_id"], h["amount_minor"]) for h in held.holds] == [
        (first.id, 300),
        (second.id, 300),
    ]
    with db.read() as tx:
        assert grants.get_view(tx, second.id).remaining_minor == 200
        assert grants.get_view(tx, second.id).held_minor == 300
    with pytest.raises(TallybookError) as refused:
        reserve(db, customer=setup.customer.id, amount_minor=201)
    assert refused.value.code == "credit_insufficient"
    with db.transaction() as tx:
        entitlements.settle(tx, held.id, amount_minor=450)
    with db.read() as tx:
        assert grants.get_view(tx, first.id).remaining_minor == 0
        assert grants.get_view(tx, second.id).remaining_minor == 350
        assert grants.get_view(tx, second.id).held_minor == 0
        assert ledger.check_invariants(tx).ok


def test_money_held_on_a_grant_voided_meanwhile_is_swept_back(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
        grant = issue(tx, setup.customer, 1000, source="promotion")
    held = reserve(db, customer=setup.customer.id, amount_minor=400).reservation
    assert held is not None
    with db.transaction() as tx:
        grants.void_grant(tx, grant.id, reason="abuse")
    with db.read() as tx:
        assert grants.get_view(tx, grant.id).held_minor == 400
    with db.transaction() as tx:
        entitlements.settle(tx, held.id, amount_minor=100)  # the work ran: 100 consumed
    with db.read() as tx:
        view = grants.get_view(tx, grant.id)
        assert (view.remaining_minor, view.held_minor, view.posted_minor) == (0, 0, 0)
        swept = ledger.get_transfer(tx, f"grant:{grant.id}:sweep:1")
        assert sum(e.amount_minor for e in swept.entries) == 600
        assert ledger.check_invariants(tx).ok


def test_a_count_meter_settles_one_event_per_unit(db: Database) -> None:
    from tests.fixtures.catalog_factories import create_feature, create_subscription, create_version
    from tests.fixtures.factories import create_customer, create_meter

    with db.transaction() as tx:
        customer = create_customer(tx)
        meter = create_meter(
            tx,
            key="calls",
            event_type="api.call",
            aggregation="count",
            filters=[{"path": "billable", "op": "eq", "value": True}],
            group_by={"endpoint": "endpoint"},
        )
        feature = create_feature(tx, key="calls", type="metered", meter_id=meter.id)
        version = create_version(tx, entitlements=[{"feature": feature.id, "limit": 10}])
        create_subscription(tx, customer=customer, version=version)
    with pytest.raises(TallybookError) as bad:
        reserve(db, customer=customer.id, feature="calls", quantity=3)
    assert (bad.value.code, bad.value.param) == ("reservation_event_data_invalid", "event_data")
    with pytest.raises(TallybookError) as fractional:
        reserve(
            db, customer=customer.id, feature="calls", quantity="1.5", event_data={"billable": True}
        )
    assert fractional.value.code == "reservation_quantity_invalid"
    held = reserve(
        db,
        customer=customer.id,
        feature="calls",
        quantity=3,
        event_data={"billable": True, "endpoint": "/v1/x"},
    ).reservation
    assert held is not None
    with db.transaction() as tx:
        entitlements.settle(tx, held.id, quantity=2)
    assert checked(db, customer.id, "calls").used == Decimal(2)


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({}, "reservation_empty", "quantity"),
        ({"feature": "{flag}", "quantity": 1}, "feature_not_metered", "feature"),
        ({"feature": "{feature}"}, "reservation_quantity_invalid", "quantity"),
        ({"feature": "{feature}", "quantity": 0}, "reservation_quantity_invalid", "quantity"),
        ({"feature": "{feature}", "quantity": -2}, "quantity_negative", "quantity"),
        ({"feature": "nope", "quantity": 1}, "feature_not_found", "feature"),
        ({"amount_minor": 0}, "reservation_quantity_invalid", "amount_minor"),
        ({"amount_minor": 5, "currency": "EUR"}, "reservation_currency_mismatch", "currency"),
        (
            {"amount_minor": 5, "timeout_seconds": 0},
            "reservation_timeout_invalid",
            "timeout_seconds",
        ),
        (
            {"amount_minor": 5, "timeout_seconds": 90_000},
            "reservation_timeout_invalid",
            "timeout_seconds",
        ),
    ],
)
def test_bad_reservations_are_named(
    db: Database, fields: dict[str, object], code: str, param: str
) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
        issue(tx, setup.customer, 100)
    resolved = {
        k: (v.format(flag=setup.flag.key, feature=setup.feature.key) if isinstance(v, str) else v)
        for k, v in fields.items()
    }
    with pytest.raises(TallybookError) as raised:
        reserve(db, customer=setup.customer.id, **resolved)
    assert (raised.value.code, raised.value.param) == (code, param)


def test_settle_more_than_reserved_is_refused(db: Database) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
    held = reserve(
        db, customer=setup.customer.id, feature=setup.feature.key, quantity=5
    ).reservation
    assert held is not None
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        entitlements.settle(tx, held.id, quantity=6)
    assert (raised.value.code, raised.value.param) == (
        "reservation_settle_exceeds_reserved",
        "quantity",
    )
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        entitlements.settle(tx, held.id, amount_minor=1)
    assert raised.value.code == "reservation_settle_exceeds_reserved"
    send_usage(db, setup.customer, 1)
    assert checked(db, setup.customer.id, setup.feature.key).reserved == Decimal(5)


def test_expired_money_holds_are_voided_by_the_job(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        setup = metered_setup(tx)
        grant = issue(tx, setup.customer, 100)
    held = reserve(db, customer=setup.customer.id, amount_minor=80, timeout_seconds=30).reservation
    assert held is not None
    clock.advance(timedelta(seconds=31))
    assert tasks.run_expire_reservations(db, JobContext(owner="w"))["expired"] == 1
    with db.read() as tx:
        view = grants.get_view(tx, grant.id)
        assert (view.remaining_minor, view.held_minor) == (100, 0)
