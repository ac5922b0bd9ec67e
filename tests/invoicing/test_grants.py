"""Credit grants and promotions on invoices (grants' own services): usage credits reduce the
billable quantity before pricing, monetary credits then the customer balance reduce the amount
due, discounts come off the subtotal; voiding gives the credits back."""

from __future__ import annotations

from decimal import Decimal

from tallybook.db import Database
from tallybook.grants import promotions
from tallybook.grants import service as grants
from tallybook.invoicing import service as invoicing
from tallybook.kit.clock import utc
from tallybook.ledger import service as ledger
from tests.invoicing.test_close import ledger_ok, receivable_movement, tokens_plan


def test_usage_credits_monetary_credits_and_a_discount(db: Database) -> None:
    billing = tokens_plan(db)
    with billing.db.transaction() as tx:
        usage_grant = grants.issue_grant(
            tx,
            grants.GrantInput(
                customer=billing.customer_id,
                kind="usage",
                meter="tokens",
                quantity=Decimal(500),
                reason="test",
            ),
        )
        money_grant = grants.issue_grant(
            tx, grants.GrantInput(customer=billing.customer_id, amount_minor=700, reason="test")
        )
        promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code="TENOFF", kind="percent_off", percent_off=10, duration="forever"
            ),
        )
        promotions.redeem(
            tx, "TENOFF", customer=billing.customer_id, subscription=billing.subscription_id
        )
    billing.run_jobs()
    billing.usage("tokens", 1500, utc(2026, 11, 10))
    billing.run_jobs(utc(2026, 12, 1, 2))
    opening, cycle = billing.invoices()
    # Opening: 20.00 fee, 10% off = 18.00, 7.00 of monetary credit → 11.00 due.
    assert (opening.subtotal_minor, opening.discount_minor, opening.total_minor) == (
        2000,
        200,
        1800,
    )
    assert opening.credits_applied_minor == 700 and opening.amount_due_minor == 1100
    usage = next(line for line in cycle.lines if line.kind == "usage")
    # 1,500 measured, 500 credited: 1,000 billed on the first tier = 10.00.
    assert usage.quantity == 1500 and usage.usage_credit_quantity == 500
    assert usage.amount_minor == 1000
    assert cycle.discount_minor == (1000 + 2000) // 10
    assert [c["type"] for c in cycle.credits] == ["units"]
    for invoice in (opening, cycle):
        assert invoice.id is not None
        movement = receivable_movement(billing.db, invoice.id, billing.customer_id)
        assert movement == invoice.amount_due_minor
    ledger_ok(billing.db)
    with billing.db.read() as tx:
        assert grants.get_view(tx, usage_grant.id).remaining_minor == 0
        assert grants.get_view(tx, money_grant.id).remaining_minor == 0
    assert opening.id is not None
    with billing.db.transaction() as tx:
        invoicing.void(tx, opening.id)
    with billing.db.read() as tx:
        assert grants.get_view(tx, money_grant.id).remaining_minor == 700
        now_hash, stored = invoicing.rerate(tx, cycle.id or "")
    assert now_hash == stored
    ledger_ok(billing.db)
    with billing.db.read() as tx:
        assert ledger.check_invariants(tx).ok
