"""Without Stripe configured, tallybook collects by bank transfer: the invoice waits, finance
marks it paid (all at once or in parts) into ``manual_clearing``, or writes it off."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.payments.context import PaymentsContext
from tallybook.payments.settings import PaymentsSettings
from tests.http.test_edge import assert_error
from tests.payments.conftest import World, make_world


@pytest.fixture
def world(db: Database) -> World:
    # What a process without TALLYBOOK_STRIPE_API_KEY gets.
    ctx = PaymentsContext.of(PaymentsSettings.from_settings(None))
    assert str(ctx.providers.default) == "manual"
    return make_world(db, ctx)


@pytest.fixture
def client(world: World) -> Iterator[object]:
    from fastapi.testclient import TestClient

    from tallybook.api.app import create_app
    from tallybook.auth.service import create_api_key
    from tallybook.kit.settings import Settings

    with world.db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="finance", scopes=["payments:write"])
    app = create_app(world.db, Settings(extra={}))
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as test_client:
        yield test_client


def test_the_invoice_waits_for_a_transfer_and_nothing_calls_stripe(world: World) -> None:
    outcome = world.relay()
    assert outcome == {"delivered": 1, "failed": 0, "dead": 0}  # only payments.collect
    collection = world.collection()
    assert (collection.provider, collection.status) == ("manual", "awaiting_payment")
    (attempt,) = world.payments()
    assert (attempt.provider, attempt.status) == ("manual", "awaiting_transfer")
    world.assert_ledger_agrees_with_invoice()


def test_finance_marks_it_paid_in_two_transfers(world: World, client: object) -> None:
    world.relay()
    api = client  # a TestClient
    first = api.post(  # type: ignore[attr-defined]
        f"/v1/collections/{world.invoice_id}/mark_paid",
        json={
            "amount_minor": 1500,
            "reference": "SEPA 2026-11-03 ACME",
            "paid_at": "2026-11-03T10:00:00Z",
        },
        headers={"Idempotency-Key": "transfer-1"},
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["provider"], body["trigger"], body["status"], body["amount_minor"]) == (
        "manual",
        "manual",
        "succeeded",
        1500,
    )
    replayed = api.post(  # type: ignore[attr-defined]
        f"/v1/collections/{world.invoice_id}/mark_paid",
        json={
            "amount_minor": 1500,
            "reference": "SEPA 2026-11-03 ACME",
            "paid_at": "2026-11-03T10:00:00Z",
        },
        headers={"Idempotency-Key": "transfer-1"},
    )
    assert replayed.json()["id"] == body["id"]  # the same request once
    assert world.invoice().status == "open"
    assert world.invoice().amount_remaining_minor == 500
    world.assert_ledger_agrees_with_invoice()
    too_much = api.post(f"/v1/collections/{world.invoice_id}/mark_paid", json={"amount_minor": 501})  # type: ignore[attr-defined]
    assert_error(too_much, 409, "manual_payment_exceeds_amount_due", "amount_minor")
    wrong_currency = api.post(  # type: ignore[attr-defined]
        f"/v1/collections/{world.invoice_id}/mark_paid",
        json={"amount_minor": 500, "currency": "EUR"},
    )
    assert_error(wrong_currency, 400, "currency_mismatch")
    rest = api.post(f"/v1/collections/{world.invoice_id}/mark_paid", json={})  # type: ignore[attr-defined]
    assert rest.status_code == 200 and rest.json()["amount_minor"] == 500
    assert world.invoice().status == "paid"
    assert world.collection().status == "paid"
    assert world.clearing_minor("manual") == 2000
    world.assert_ledger_agrees_with_invoice()
    closed = api.post(f"/v1/collections/{world.invoice_id}/mark_paid", json={})  # type: ignore[attr-defined]
    assert_error(closed, 409, "collection_closed")


def test_a_manual_collection_has_nothing_to_retry(world: World, client: object) -> None:
    world.relay()
    response = client.post(f"/v1/collections/{world.invoice_id}/retry")  # type: ignore[attr-defined]
    assert_error(response, 409, "invoice_not_collectible", "collection")


def test_writing_off_and_a_late_transfer_recovers_it(world: World, client: object) -> None:
    world.relay()
    written = client.post(  # type: ignore[attr-defined]
        f"/v1/collections/{world.invoice_id}/mark_uncollectible",
        json={"reason": "customer vanished"},
    )
    assert written.status_code == 200, written.text
    assert written.json()["status"] == "uncollectible"
    assert world.invoice().status == "uncollectible"
    world.assert_ledger_agrees_with_invoice()
    again = client.post(f"/v1/collections/{world.invoice_id}/mark_uncollectible", json={})  # type: ignore[attr-defined]
    assert_error(again, 409, "collection_closed")
    late = client.post(  # type: ignore[attr-defined]
        f"/v1/collections/{world.invoice_id}/mark_paid", json={"reference": "arrived after all"}
    )
    assert late.status_code == 200, late.text
    assert late.json()["amount_minor"] == 2000
    assert world.invoice().status == "paid"
    assert world.collection().status == "paid"
    world.assert_ledger_agrees_with_invoice()
    with world.db.read() as tx:
        from tallybook.kit.pagination import PageRequest
        from tallybook.ledger import service as ledger

        (bad_debt,) = ledger.list_accounts(
            tx, PageRequest(limit=1), code="bad_debt", currency="USD"
        ).data
        assert ledger.balance(tx, bad_debt.id).posted.amount_minor == 0  # the write-off was undone


def test_a_manual_refund_posts_against_manual_clearing(world: World) -> None:
    from tallybook.payments import service

    world.relay()
    with world.db.transaction(actor="test") as tx:
        payment = service.mark_paid(tx, world.invoice_id, world.ctx, paid_at=utc(2026, 11, 2))
        payment_id = payment.id
        refund = service.request_refund(
            tx, payment_id, amount_minor=300, reason="goodwill", ctx=world.ctx
        )
        refund_id = refund.id
    world.relay()
    with world.db.transaction(actor="test") as tx:
        from tallybook.payments.service import refunds

        assert refunds.get(tx, refund_id).status == "succeeded"
    assert world.clearing_minor("manual") == 1700
    # No credit note: the refund reopened 3.00 of the receivable.
    assert world.receivable_minor() == 300
    _ = timedelta
