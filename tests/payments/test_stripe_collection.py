"""Collecting invoices through the official ``stripe`` SDK against localstripe: the customer is
created on demand, a good card pays, a declining card fails and dunning takes over, a retry with
a new card succeeds. Ledger and invoice agree at every step."""

from __future__ import annotations

import pytest

from tallybook.db import Database
from tallybook.payments.context import PaymentsContext
from tallybook.payments.service import accounts
from tests.payments.conftest import (
    DECLINING_CARD,
    GOOD_CARD,
    attach_card,
    charges_of,
    create_stripe_customer,
    make_world,
)

pytestmark = pytest.mark.stripe


def _link(world_db: Database, ctx: PaymentsContext, customer_id: str, stripe_id: str) -> None:
    with world_db.transaction(actor="test") as tx:
        accounts.link(
            tx,
            customer_id,
            provider="stripe",
            provider_customer_id=stripe_id,
            providers=ctx.providers,
        )


def test_first_collection_creates_the_stripe_customer_and_records_no_method(
    db: Database, stripe_ctx: PaymentsContext
) -> None:
    world = make_world(db, stripe_ctx)
    world.relay()
    assert world.outbox_errors() == []
    with world.db.read() as tx:
        account = accounts.get(tx, world.customer_id)
        assert account.provider == "stripe"
        assert account.provider_customer_id is not None
        assert account.provider_customer_id.startswith("cus_")
    (attempt,) = world.payments()
    assert (attempt.status, attempt.failure_code) == ("failed", "payment_method_missing")
    assert attempt.provider_payment_id is None  # nothing was created at Stripe
    assert world.collection().status == "retrying"
    world.assert_ledger_agrees_with_invoice()


def test_a_good_card_pays_the_invoice(db: Database, stripe_ctx: PaymentsContext) -> None:
    world = make_world(db, stripe_ctx)
    stripe_id = create_stripe_customer(stripe_ctx)
    attach_card(stripe_ctx, stripe_id, GOOD_CARD)
    _link(world.db, stripe_ctx, world.customer_id, stripe_id)
    world.relay()
    (payment,) = world.payments()
    assert payment.status == "succeeded", payment.failure_message
    assert payment.provider_payment_id is not None and payment.provider_charge_id is not None
    assert payment.fee_minor == 0  # localstripe charges no fees
    assert world.invoice().status == "paid"
    assert world.collection().status == "paid"
    assert world.clearing_minor() == 2000
    world.assert_ledger_agrees_with_invoice()
    assert len(charges_of(stripe_ctx, stripe_id)) == 1


def test_a_declining_card_fails_and_a_retry_with_a_new_card_succeeds(
    db: Database, stripe_ctx: PaymentsContext
) -> None:
    world = make_world(db, stripe_ctx)
    stripe_id = create_stripe_customer(stripe_ctx)
    attach_card(stripe_ctx, stripe_id, DECLINING_CARD)
    _link(world.db, stripe_ctx, world.customer_id, stripe_id)
    world.relay()
    (failed,) = world.payments()
    assert (failed.status, failed.failure_code) == ("failed", "card_declined")
    collection = world.collection()
    assert collection.status == "retrying"
    assert collection.next_attempt_at is not None
    world.assert_ledger_agrees_with_invoice()

    attach_card(stripe_ctx, stripe_id, GOOD_CARD)
    from tallybook.payments import service

    with world.db.transaction(actor="test") as tx:
        retry = service.retry_collection(tx, world.invoice_id, stripe_ctx)
    assert retry.attempt_number == 2
    world.relay()
    payments = world.payments()
    assert [p.status for p in payments] == ["canceled", "succeeded"]
    assert world.invoice().status == "paid"
    world.assert_ledger_agrees_with_invoice()
    statuses = sorted(c["status"] for c in charges_of(stripe_ctx, stripe_id))
    assert statuses == ["failed", "succeeded"]
