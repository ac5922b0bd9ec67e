"""Refunds (through Stripe, after a credit note or without one) and the clearing check: once
Stripe has paid out everything, ``stripe_clearing`` is back to zero."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tallybook.api.app import create_app
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.kit.pagination import PageRequest
from tallybook.kit.settings import Settings
from tallybook.ledger import service as ledger
from tallybook.payments import service
from tallybook.payments.context import PaymentsContext
from tallybook.payments.service import accounts, postings
from tests.fixtures.databases import database_url_of
from tests.http.test_edge import assert_error
from tests.payments import stripe_events as se
from tests.payments.conftest import (
    GOOD_CARD,
    World,
    attach_card,
    create_stripe_customer,
    make_world,
    stripe_client,
    webhooks_for,
)
from tests.payments.scripted import SUCCEED, ScriptedProvider, scripted_context


def _client(world: World, ctx: PaymentsContext) -> Iterator[TestClient]:
    with world.db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="support", scopes=["payments:write"])
    app = create_app(world.db, Settings(extra={}))
    app.app.state.payments_context = ctx  # the app's providers are the test's
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield client


@pytest.fixture
def paid(db: Database, stripe_ctx: PaymentsContext) -> Iterator[tuple[World, TestClient, str]]:
    world = make_world(db, stripe_ctx)
    stripe_id = create_stripe_customer(stripe_ctx)
    attach_card(stripe_ctx, stripe_id, GOOD_CARD)
    with world.db.transaction(actor="test") as tx:
        accounts.link(
            tx,
            world.customer_id,
            provider="stripe",
            provider_customer_id=stripe_id,
            providers=stripe_ctx.providers,
        )
    world.relay()
    assert world.invoice().status == "paid"
    for client in _client(world, stripe_ctx):
        yield world, client, world.payments()[0].id


@pytest.mark.stripe
def test_a_credit_note_then_a_refund_through_stripe_settles_to_zero(
    paid: tuple[World, TestClient, str], stripe_ctx: PaymentsContext
) -> None:
    world, client, payment_id = paid
    with world.db.transaction(actor="test") as tx:
        invoicing.create_credit_note(tx, world.invoice_id, reason="goodwill")
    response = client.post(
        f"/v1/payments/{payment_id}/refunds", json={"reason": "credit note CN-1"}
    )
    assert response.status_code == 200, response.text
    refund = response.json()
    assert (refund["status"], refund["amount_minor"], refund["origin"]) == ("pending", 2000, "api")
    world.relay()
    shown = client.get(f"/v1/refunds/{refund['id']}").json()
    assert shown["status"] == "succeeded"
    assert shown["provider_refund_id"].startswith("re_")
    stripe_refund = stripe_client(stripe_ctx).v1.refunds.retrieve(shown["provider_refund_id"])
    assert stripe_refund["amount"] == 2000
    assert stripe_refund.to_dict()["metadata"]["tallybook_refund_id"] == refund["id"]
    # The money left the customer balance (the credit note), not the receivable.
    assert world.receivable_minor() == 0
    assert world.clearing_minor() == 0
    payment = client.get(f"/v1/payments/{payment_id}").json()
    assert payment["amount_refunded_minor"] == 2000
    world.assert_ledger_agrees_with_invoice()
    again = client.post(f"/v1/payments/{payment_id}/refunds", json={"amount_minor": 1})
    assert_error(again, 409, "refund_exceeds_refundable", "amount_minor")


@pytest.mark.stripe
def test_partial_refunds_and_bad_requests(paid: tuple[World, TestClient, str]) -> None:
    world, client, payment_id = paid
    first = client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount_minor": 500},
        headers={"Idempotency-Key": "r-1"},
    )
    same = client.post(
        f"/v1/payments/{payment_id}/refunds",
        json={"amount_minor": 500},
        headers={"Idempotency-Key": "r-1"},
    )
    assert first.json()["id"] == same.json()["id"]
    assert_error(
        client.post(f"/v1/payments/{payment_id}/refunds", json={"amount_minor": 1501}),
        409,
        "refund_exceeds_refundable",
    )
    assert_error(
        client.post(f"/v1/payments/{payment_id}/refunds", json={"amount_minor": 0}),
        400,
        "amount_invalid",
        "amount_minor",
    )
    assert_error(
        client.post(f"/v1/payments/{payment_id}/refunds", json={"amount": 5}),
        400,
        "parameter_unknown",
        "amount",
    )
    assert_error(client.post("/v1/payments/pay_nope/refunds", json={}), 404, "resource_missing")
    world.relay()
    rest = client.post(f"/v1/payments/{payment_id}/refunds", json={})
    assert rest.json()["amount_minor"] == 1500
    world.relay()
    listed = client.get(f"/v1/refunds?payment={payment_id}").json()["data"]
    assert sorted((r["amount_minor"], r["status"]) for r in listed) == [
        (500, "succeeded"),
        (1500, "succeeded"),
    ]
    # No credit note: the refunds reopened what the customer had paid.
    assert world.receivable_minor() == 2000
    assert world.clearing_minor() == 0


def test_clearing_returns_to_zero_once_stripe_has_paid_out(db: Database) -> None:
    provider = ScriptedProvider(default=SUCCEED)
    ctx = scripted_context(provider)
    worlds = [make_world(db, ctx) for _ in range(3)]
    for world in worlds:
        world.relay()
        assert world.invoice().status == "paid"
    # One refund (through the provider), one dispute lost (an event), a fee on each payment.
    first = worlds[0]
    with first.db.transaction(actor="test") as tx:
        service.request_refund(tx, first.payments()[0].id, amount_minor=500, reason=None, ctx=ctx)
    first.relay()
    second = worlds[1].payments()[0]
    now = int(worlds[1].billing.clock.now().timestamp())
    for hooks in webhooks_for(worlds[1]):
        dispute = se.dispute(
            f"dp_{second.id[-10:]}",
            charge=str(second.provider_charge_id),
            payment_intent=second.provider_payment_id,
            amount=2000,
            status="lost",
            created=now,
            fee=1500,
        )
        assert (
            hooks.send(se.event("charge.dispute.closed", dispute, created=now)).status_code == 200
        )
        assert hooks.process() == {"processed": 1}
    with first.db.read() as tx:
        balance = service.clearing_balance(tx, "USD")
    expected = 3 * (2000 - 59) - 500 - 2000 - 1500
    assert balance.outstanding.amount_minor == expected
    url = database_url_of(first.db)
    runner = CliRunner()
    from tallybook.cli.main import app as cli

    before = runner.invoke(
        cli, ["--database-url", url, "payments", "clearing", "--currency", "USD"]
    )
    assert before.exit_code == 1, before.output
    # Stripe pays out what it holds, in two payouts (one of them announced twice, late).
    for hooks in webhooks_for(worlds[2]):
        now = int(worlds[2].billing.clock.now().timestamp())
        split = [expected - 1000, 1000]
        for n, amount in enumerate(split):
            payout_id = f"po_{worlds[2].customer_id[-10:]}{n}"
            paid = se.event(
                "payout.paid",
                se.payout(payout_id, amount=amount, status="paid", created=now),
                created=now + 5,
            )
            created = se.event(
                "payout.created",
                se.payout(payout_id, amount=amount, status="pending", created=now),
                created=now,
            )
            for event in (paid, created, paid):
                assert hooks.send(event).status_code == 200
        hooks.process()
    with first.db.read() as tx:
        balance = service.clearing_balance(tx, "USD")
    assert balance.outstanding.amount_minor == 0
    with first.db.read() as tx:
        page = ledger.list_accounts(tx, PageRequest(limit=1), code=postings.BANK, currency="USD")
        # The payouts moved clearing → bank: the bank holds what Stripe paid out, once.
        assert ledger.balance(tx, page.data[0].id).posted.amount_minor == expected
    after = runner.invoke(cli, ["--database-url", url, "payments", "clearing", "--currency", "USD"])
    assert after.exit_code == 0, after.output
    assert "outstanding 0.00 USD" in " ".join(after.output.split())
