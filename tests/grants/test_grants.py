"""Issuing, voiding and expiring grants: every movement is a ledger transfer with the ADR's
accounts and ids, and a grant's balance is the ledger's."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.grants import service as grants
from tallybook.grants.domain import GrantKind, invoice_credit_transfer_id
from tallybook.grants.models import Grant
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import Conflict, InvalidRequest, TallybookError
from tallybook.kit.money import Money
from tallybook.ledger import service as ledger
from tallybook.work.events import timeline
from tests.fixtures.factories import create_customer, create_meter
from tests.fixtures.grants_factories import issue


def accounts_of(db: Database, transfer_id: str) -> dict[str, tuple[str, int]]:
    """{account code: (direction, amount)} of a stored transfer."""
    with db.read() as tx:
        transfer = ledger.get_transfer(tx, transfer_id)
        return {
            ledger.get_account(tx, e.account_id).code: (str(e.direction), e.amount_minor)
            for e in transfer.entries
        }


def test_a_goodwill_grant_is_funded_from_promotion_expense(db: Database) -> None:
    with db.transaction(actor="key_support") as tx:
        customer = create_customer(tx)
        grant = issue(tx, customer, 2500, reason="outage on Nov 3")
    assert accounts_of(db, f"grant:{grant.id}:issue") == {
        "promotion_expense": ("debit", 2500),
        "credit_grant": ("credit", 2500),
    }
    with db.read() as tx:
        view = grants.get_view(tx, grant.id)
        wallet = ledger.get_account(tx, grant.account_id)
        events = [e.data for e in timeline(tx, customer_id=customer.id, types=["grant.created"])]
    assert view.remaining_minor == 2500
    assert (wallet.code, wallet.reference, wallet.debits_must_not_exceed_credits) == (
        "credit_grant",
        grant.id,
        True,
    )
    assert grant.issued_by == "key_support" and grant.reason == "outage on Nov 3"
    assert len(events) == 1 and events[0]["grant"]["amount_minor"] == 2500


def test_purchased_credits_are_receivable_and_usage_credits_are_unit_assets(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        meter = create_meter(tx)
        bought = issue(tx, customer, 10_000, source="purchase")
        tokens = grants.issue_grant(
            tx,
            grants.GrantInput(
                customer=customer.external_id,
                kind="usage",
                meter="tokens",
                quantity=Decimal("1500.5"),
                reason="launch bonus",
            ),
        )
    assert accounts_of(db, f"grant:{bought.id}:issue") == {
        "accounts_receivable": ("debit", 10_000),
        "credit_grant": ("credit", 10_000),
    }
    assert accounts_of(db, f"grant:{tokens.id}:issue") == {
        "usage_credit_issuance": ("debit", 1_500_500_000),
        "usage_credit_grant": ("credit", 1_500_500_000),
    }
    assert (tokens.asset, tokens.meter_id, tokens.amount_minor) == (
        "U_TOKENS",
        meter.id,
        1_500_500_000,
    )


def test_void_returns_the_remainder_to_its_source(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        promo = issue(tx, customer, 800, source="promotion")
        bought = issue(tx, customer, 500, source="purchase")
    with db.transaction(actor="key_ops") as tx:
        grants.void_grant(tx, promo.id, reason="issued by mistake")
        grants.void_grant(tx, bought.id, reason="refunded")
        again = grants.void_grant(tx, promo.id, reason="twice")
    assert again.status == "voided" and again.void_reason == "issued by mistake"
    assert accounts_of(db, f"grant:{promo.id}:void") == {
        "credit_grant": ("debit", 800),
        "promotion_expense": ("credit", 800),
    }
    assert accounts_of(db, f"grant:{bought.id}:void") == {
        "credit_grant": ("debit", 500),
        "credit_breakage": ("credit", 500),
    }
    with db.read() as tx:
        assert grants.get_view(tx, promo.id).remaining_minor == 0
        assert grants.credit_sources(tx, customer.id, at=tx.now()) == []
        assert ledger.check_invariants(tx).ok


def test_expiry_is_idempotent_and_waits_for_its_time(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        grant = issue(tx, customer, 300, expires_at=utc(2026, 11, 10))
    with db.transaction() as tx:
        assert grants.expire_grant(tx, grant.id) is False
    clock.set(utc(2026, 11, 10))
    with db.transaction() as tx:
        assert grants.credit_sources(tx, customer.id, at=tx.now()) == []
        assert grants.expire_grant(tx, grant.id) is True
        assert grants.expire_grant(tx, grant.id) is False
    assert accounts_of(db, f"grant:{grant.id}:expire") == {
        "credit_grant": ("debit", 300),
        "promotion_expense": ("credit", 300),
    }
    with db.transaction() as tx, pytest.raises(Conflict) as raised:
        grants.void_grant(tx, grant.id, reason="too late")
    assert raised.value.code == "grant_not_active"


def test_credit_sources_come_in_burn_down_order_with_ledger_balances(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        late = issue(tx, customer, 100, expires_at=utc(2026, 12, 31))
        never = issue(tx, customer, 100)
        soon = issue(tx, customer, 100, expires_at=utc(2026, 11, 20))
        first = issue(tx, customer, 100, priority=0)
        issue(tx, customer, 100, effective_at=utc(2026, 12, 1))  # not yet usable
        create_meter(tx)
        issue(tx, customer, kind="usage", meter="tokens", quantity=5)
    with db.read() as tx:
        money = grants.credit_sources(tx, customer.id, at=tx.now(), currency="USD")
        everything = grants.credit_sources(tx, customer.id, at=tx.now())
    assert [s.grant_id for s in money] == [first.id, soon.id, late.id, never.id]
    assert {s.asset for s in everything} == {"USD", "U_TOKENS"}


@pytest.mark.parametrize(
    ("fields", "code", "param"),
    [
        ({"amount_minor": 0}, "grant_amount_invalid", "amount_minor"),
        ({"amount_minor": -5}, "grant_amount_invalid", "amount_minor"),
        ({"amount_minor": 10, "currency": "EUR"}, "grant_currency_mismatch", "currency"),
        ({"amount_minor": 10, "currency": "XYZ"}, "currency_invalid", "currency"),
        ({"amount_minor": 10, "reason": " "}, "grant_reason_required", "reason"),
        ({"amount_minor": 10, "priority": 101}, "grant_priority_invalid", "priority"),
        ({"amount_minor": 10, "source": "gift"}, "grant_source_invalid", "source"),
        ({"amount_minor": 10, "kind": "points"}, "grant_kind_invalid", "kind"),
        (
            {"amount_minor": 10, "expires_at": utc(2026, 10, 1)},
            "grant_window_invalid",
            "expires_at",
        ),
        ({"kind": "usage", "meter": "nope", "quantity": 1}, "grant_meter_not_found", "meter"),
        (
            {"kind": "usage", "meter": "tokens", "quantity": "-1"},
            "grant_amount_invalid",
            "quantity",
        ),
        (
            {"kind": "usage", "meter": "tokens", "quantity": "0.0000001"},
            "quantity_invalid",
            "quantity",
        ),
        ({"kind": "usage", "meter": "peak", "quantity": 1}, "grant_meter_not_countable", "meter"),
        ({"kind": "usage", "quantity": 1}, "grant_meter_required", "meter"),
        (
            {"kind": "usage", "meter": "tokens", "quantity": 1, "source": "purchase"},
            "grant_source_invalid",
            "source",
        ),
    ],
)
def test_bad_input_is_named_and_writes_nothing(
    db: Database, fields: dict[str, object], code: str, param: str
) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        create_meter(tx)
        create_meter(tx, key="peak", aggregation="max", value_path="v")
    data = {"customer": customer.id, "reason": "test", **fields}
    with db.transaction() as tx, pytest.raises(TallybookError) as raised:
        grants.issue_grant(tx, grants.GrantInput(**data))  # type: ignore[arg-type]
    assert (raised.value.code, raised.value.param) == (code, param)
    with db.read() as tx:
        assert tx.session.scalar(select(func.count()).select_from(Grant)) == 0


def test_a_grant_in_the_wrong_currency_is_refused(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx, currency="EUR")
    with db.transaction() as tx, pytest.raises(InvalidRequest) as raised:
        issue(tx, customer, 100, currency="USD")
    assert raised.value.code == "grant_currency_mismatch"


def test_apply_credits_posts_once_and_refuses_more_than_a_wallet_holds(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        a = issue(tx, customer, 700, priority=1)
        b = issue(tx, customer, 700, priority=2)
        create_meter(tx)
        tokens = issue(tx, customer, kind="usage", meter="tokens", quantity=100)
    invoice = "in_01JD3X2K6Q7Z9V8C4B3N1M0P5R"
    with db.transaction() as tx:
        sources = grants.credit_sources(tx, customer.id, at=tx.now())
        applications = grants.burn_down(
            sources,
            [
                grants.Demand.money(Money(1000, "USD"), key="total"),
                grants.Demand.units("U_TOKENS", Decimal(40), key="line-1"),
            ],
        )
        grants.apply_credits(tx, applications, invoice_id=invoice)
        grants.apply_credits(tx, applications, invoice_id=invoice)  # idempotent
    with db.read() as tx:
        assert grants.get_view(tx, a.id).remaining_minor == 0
        assert grants.get_view(tx, b.id).remaining_minor == 400
        assert grants.get_view(tx, tokens.id).remaining_minor == 60_000_000
        assert ledger.check_invariants(tx).ok
    assert accounts_of(db, invoice_credit_transfer_id(invoice, a.id, GrantKind.MONETARY)) == {
        "credit_grant": ("debit", 700),
        "accounts_receivable": ("credit", 700),
    }
    assert accounts_of(db, invoice_credit_transfer_id(invoice, tokens.id, GrantKind.USAGE)) == {
        "usage_credit_grant": ("debit", 40_000_000),
        "usage_credit_consumed": ("credit", 40_000_000),
    }
    # Stale applications (the grant was used since) are refused; nothing of it stays.
    with db.transaction() as tx, pytest.raises(Conflict) as raised:
        grants.apply_credits(tx, applications, invoice_id="in_01JD3X2K6Q7Z9V8C4B3N1M0P5S")
    assert raised.value.code == "grant_balance_insufficient"
    with db.read() as tx:
        assert grants.get_view(tx, b.id).remaining_minor == 400


def test_effective_in_the_future_is_not_a_source_yet(db: Database, clock: TestClock) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        grant = issue(tx, customer, 100, effective_at=clock.now() + timedelta(days=2))
    with db.read() as tx:
        assert grants.credit_sources(tx, customer.id, at=tx.now()) == []
        later = grants.credit_sources(tx, customer.id, at=tx.now() + timedelta(days=3))
    assert [s.grant_id for s in later] == [grant.id]
