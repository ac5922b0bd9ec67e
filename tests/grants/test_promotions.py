"""Promotion codes: discounts counted per billed period, credit codes that issue grants, and the
named refusals (expired, exhausted, per-customer limit, ineligible plan…)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from tallybook.customers.models import Customer
from tallybook.db import Database
from tallybook.grants import promotions
from tallybook.grants import service as grants
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import Conflict, TallybookError
from tallybook.kit.money import Money
from tests.fixtures.catalog_factories import create_subscription, create_version
from tests.fixtures.factories import create_customer, create_meter


def code(db: Database, **fields: Any) -> str:
    data: dict[str, Any] = {"code": "WELCOME20", "kind": "percent_off", "percent_off": 20}
    data.update(fields)
    with db.transaction(actor="key_marketing") as tx:
        return promotions.create_code(tx, promotions.PromotionCodeInput(**data)).id


def subscribed(db: Database, plan_key: str | None = None) -> tuple[Customer, str]:
    with db.transaction() as tx:
        customer = create_customer(tx)
        version = create_version(tx, plan_key=plan_key)
        subscription = create_subscription(tx, customer=customer, version=version).subscription
    return customer, subscription.id


def test_a_repeating_discount_is_counted_per_billed_period(db: Database) -> None:
    code(db, duration="repeating", duration_periods=2)
    customer, subscription_id = subscribed(db)
    with db.transaction() as tx:
        redemption = promotions.redeem(
            tx, "welcome20", customer=customer.external_id, subscription=subscription_id
        )
    periods = [utc(2026, 11, 1), utc(2026, 12, 1), utc(2027, 1, 1)]
    seen = []
    for index, start in enumerate(periods):
        end = start + timedelta(days=30)
        with db.transaction() as tx:
            terms = promotions.discounts_for(
                tx, subscription_id, period_start=start, period_end=end
            )
            seen.append([(t.code, t.percent_off, t.periods_used) for t in terms])
            for term in terms:
                promotions.record_discount_use(
                    tx, term.redemption_id, invoice_id=f"in_{index}", period_start=start
                )
                # Invoicing the same period again counts it once.
                promotions.record_discount_use(
                    tx, term.redemption_id, invoice_id=f"in_{index}", period_start=start
                )
    assert seen == [[("WELCOME20", Decimal(20), 0)], [("WELCOME20", Decimal(20), 1)], []]
    with db.transaction() as tx:
        # A period already billed still sees its discount (re-rating gives the same invoice).
        again = promotions.discounts_for(
            tx, subscription_id, period_start=periods[1], period_end=periods[2]
        )
        assert [t.redemption_id for t in again] == [redemption.id]
        with pytest.raises(Conflict) as raised:
            promotions.record_discount_use(
                tx, redemption.id, invoice_id="in_9", period_start=periods[2]
            )
        assert raised.value.code == "promotion_discount_exhausted"
        assert promotions.get_redemption(tx, redemption.id).status == "ended"


def test_amount_off_forever_and_once(db: Database) -> None:
    code(
        db,
        code="TENOFF",
        kind="amount_off",
        percent_off=None,
        amount_off_minor=1000,
        currency="USD",
        duration="forever",
    )
    code(db, code="ONCE", duration="once")
    customer, subscription_id = subscribed(db)
    with db.transaction() as tx:
        promotions.redeem(tx, "TENOFF", customer=customer.id, subscription=subscription_id)
        promotions.redeem(tx, "ONCE", customer=customer.id, subscription=subscription_id)
    for month in range(1, 5):
        start = utc(2027, month, 1)
        with db.transaction() as tx:
            terms = promotions.discounts_for(
                tx, subscription_id, period_start=start, period_end=start + timedelta(days=28)
            )
            for term in terms:
                promotions.record_discount_use(
                    tx, term.redemption_id, invoice_id="in", period_start=start
                )
        codes = sorted(t.code for t in terms)
        assert codes == (["ONCE", "TENOFF"] if month == 1 else ["TENOFF"])
        ten = next(t for t in terms if t.code == "TENOFF")
        assert (ten.amount_off, ten.amount_off_minor, ten.currency) == (
            Money(1000, "USD"),
            1000,
            "USD",
        )


def test_a_credit_code_issues_a_promotional_grant(db: Database) -> None:
    with db.transaction() as tx:
        create_meter(tx)
    code(
        db,
        code="FREE-TOKENS",
        kind="credit",
        percent_off=None,
        credit=promotions.CreditTemplate(
            kind="usage", meter="tokens", quantity=5000, expires_after_days=30
        ),
    )
    with db.transaction() as tx:
        customer = create_customer(tx)
    with db.transaction(actor="key_signup") as tx:
        redemption = promotions.redeem(tx, "free-tokens", customer=customer.id)
    with db.read() as tx:
        assert redemption.grant_id is not None
        view = grants.get_view(tx, redemption.grant_id)
        assert (view.grant.source, view.grant.asset, view.remaining_minor) == (
            "promotion",
            "U_TOKENS",
            5_000_000_000,
        )
        assert view.grant.expires_at == tx.now() + timedelta(days=30)
        assert (
            view.grant.reason == "promotion code FREE-TOKENS"
            and view.grant.issued_by == "key_signup"
        )
        assert promotions.resolve_code(tx, "FREE-TOKENS").times_redeemed == 1


def test_limits_expiry_and_eligibility(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        eligible = create_version(tx, plan_key="pro")
        create_version(tx, plan_key="basic")
    code(
        db,
        code="PRO50",
        eligible_plans=["pro"],
        max_redemptions=2,
        max_redemptions_per_customer=1,
        expires_at=utc(2026, 11, 20),
    )
    first, first_sub = subscribed(db, "pro")
    second, second_sub = subscribed(db, "pro")
    third, third_sub = subscribed(db, "pro")
    basic, basic_sub = subscribed(db, "basic")

    def redeem(customer: Customer, subscription: str | None, text: str = "PRO50") -> str:
        try:
            with db.transaction() as tx:
                promotions.redeem(tx, text, customer=customer.id, subscription=subscription)
        except TallybookError as error:
            return error.code
        return "ok"

    assert redeem(basic, basic_sub) == "promotion_code_plan_not_eligible"
    assert redeem(first, None) == "promotion_code_subscription_required"
    assert redeem(first, second_sub) == "promotion_code_subscription_mismatch"
    assert redeem(first, first_sub) == "ok"
    assert redeem(first, first_sub) == "promotion_code_customer_limit_reached"
    assert redeem(second, second_sub) == "ok"
    assert redeem(third, third_sub) == "promotion_code_exhausted"
    assert redeem(third, third_sub, "NOPE") == "promotion_code_not_found"
    code(db, code="LATE", expires_at=utc(2026, 11, 2))
    clock.set(utc(2026, 11, 2))
    assert redeem(third, third_sub, "LATE") == "promotion_code_expired"
    with db.transaction() as tx:
        promotions.set_active(tx, "PRO50", active=False)
    assert redeem(third, third_sub) == "promotion_code_inactive"
    assert eligible.id


def test_an_amount_off_in_another_currency_is_refused(db: Database) -> None:
    code(db, code="EUR5", kind="amount_off", percent_off=None, amount_off_minor=500, currency="EUR")
    customer, subscription_id = subscribed(db)
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        promotions.redeem(tx, "EUR5", customer=customer.id, subscription=subscription_id)
    assert raised.value.code == "promotion_code_currency_mismatch"


@pytest.mark.parametrize(
    ("fields", "code_", "param"),
    [
        ({"code": "a"}, "promotion_code_invalid", "code"),
        ({"code": "has space"}, "promotion_code_invalid", "code"),
        ({"percent_off": 0}, "promotion_discount_invalid", "percent_off"),
        ({"percent_off": 101}, "promotion_discount_invalid", "percent_off"),
        ({"percent_off": "12.34567"}, "promotion_discount_invalid", "percent_off"),
        (
            {"kind": "amount_off", "percent_off": None, "amount_off_minor": 100},
            "promotion_discount_invalid",
            "currency",
        ),
        (
            {"kind": "amount_off", "percent_off": None, "amount_off_minor": -1, "currency": "USD"},
            "promotion_discount_invalid",
            "amount_off_minor",
        ),
        ({"duration": "repeating"}, "promotion_duration_invalid", "duration_periods"),
        ({"duration_periods": 3}, "promotion_duration_invalid", "duration_periods"),
        ({"eligible_plans": ["ghost"]}, "promotion_plan_not_found", "eligible_plans[0]"),
        ({"max_redemptions": 0}, "promotion_limits_invalid", "max_redemptions"),
        ({"kind": "credit", "percent_off": None}, "promotion_credit_invalid", "credit"),
        ({"expires_at": utc(2026, 1, 1)}, "promotion_limits_invalid", "expires_at"),
    ],
)
def test_bad_codes_are_named(db: Database, fields: dict[str, Any], code_: str, param: str) -> None:
    with pytest.raises(TallybookError) as raised:
        code(db, **fields)
    assert (raised.value.code, raised.value.param) == (code_, param)


def test_a_taken_code_is_a_conflict(db: Database) -> None:
    code(db)
    with pytest.raises(Conflict) as raised:
        code(db, code="welcome20")
    assert raised.value.code == "promotion_code_taken"
