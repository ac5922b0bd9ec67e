"""Scenario: a subscription whose payment fails goes past due and loses its premium feature,
recovers on the third retry (after the customer swaps to a good card) and gets it back. Ledger
and invoice agree at every step. Stripe is localstripe, through the official SDK; the premium
check is the entitlements endpoint, configured to restrict paid features while past due.

| when | what happens | invoice | subscription | premium |
| --- | --- | --- | --- | --- |
| Nov 1 09:00 | opening invoice 20.00; card 0341 declines | open 20.00 | past_due | no |
| Nov 2 09:00 | retry 1 (day 1) declines | open 20.00 | past_due | no |
| Nov 4 09:00 | retry 2 (day 3) declines | open 20.00 | past_due | no |
| Nov 5 | the customer saves a good card | | | |
| Nov 6 09:00 | retry 3 (day 5) succeeds | paid | active | yes |
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tallybook.api.app import create_app
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.kit.settings import Settings
from tallybook.payments.context import PaymentsContext
from tallybook.payments.service import accounts
from tallybook.payments.tasks import run_retries
from tallybook.subscriptions import service as subscriptions
from tallybook.work.models import DomainEvent
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_feature, flat_price
from tests.fixtures.invoicing_factories import setup_billing
from tests.payments.conftest import (
    DECLINING_CARD,
    GOOD_CARD,
    World,
    attach_card,
    charges_of,
    create_stripe_customer,
)

pytestmark = pytest.mark.stripe


@pytest.fixture
def scene(db: Database, stripe_ctx: PaymentsContext) -> Iterator[tuple[World, TestClient, str]]:
    with db.transaction(actor="test") as tx:
        premium = create_feature(tx, key="premium", name="Premium support")
    billing = setup_billing(
        db,
        start=utc(2026, 11, 1, 9),
        prices=lambda m: [flat_price(2000)],
        entitlements=[{"feature": premium.id, "enabled": True}],
    )
    world = World(billing, stripe_ctx)
    app = create_app(
        world.db,
        Settings(
            extra={
                "TALLYBOOK_ENTITLEMENTS_PAST_DUE_POLICY": "restrict_paid",
                "TALLYBOOK_ENTITLEMENTS_UNPAID_POLICY": "restrict_paid",
            }
        ),
    )
    with world.db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="app", scopes=["admin"])
    with TestClient(app, headers={"Authorization": f"Bearer {secret}"}) as client:
        yield world, client, premium.key


def premium_allowed(client: TestClient, world: World, feature: str) -> tuple[bool, str | None]:
    response = client.post(
        "/v1/entitlements/check", json={"customer": world.billing.external_id, "feature": feature}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["allowed"], body.get("reason")


def status(world: World) -> str:
    with world.db.read() as tx:
        return str(subscriptions.get(tx, world.billing.subscription_id).status)


def retry_at(world: World, days_after_first_failure: int) -> None:
    first_failed = world.collection().first_failed_at
    assert first_failed is not None
    expected = first_failed + timedelta(days=days_after_first_failure)
    assert world.collection().next_attempt_at == expected
    world.billing.clock.set(expected)
    assert run_retries(world.db, JobContext(owner="test"), world.ctx) == {"retries_started": 1}
    world.relay()


def check_books(world: World, *, owed: int) -> None:
    world.assert_ledger_agrees_with_invoice()
    assert world.receivable_minor() == owed
    assert world.clearing_minor() == 2000 - owed


def test_fail_past_due_lose_premium_recover_on_the_third_retry(
    scene: tuple[World, TestClient, str], stripe_ctx: PaymentsContext
) -> None:
    world, client, feature = scene
    stripe_id = create_stripe_customer(stripe_ctx, "owner@example.com")
    attach_card(stripe_ctx, stripe_id, DECLINING_CARD)
    with world.db.transaction(actor="test") as tx:
        accounts.link(
            tx,
            world.customer_id,
            provider="stripe",
            provider_customer_id=stripe_id,
            providers=stripe_ctx.providers,
        )
    assert premium_allowed(client, world, feature) == (True, "ok")

    # Nov 1: the opening invoice is finalized and handed to payments; the card declines.
    world.billing.run_jobs()
    world.relay()
    assert world.invoice().status == "open"
    assert [p.status for p in world.payments()] == ["failed"]
    assert status(world) == "past_due"
    allowed, reason = premium_allowed(client, world, feature)
    assert (allowed, reason) == (False, "subscription_past_due")
    check_books(world, owed=2000)

    # Retries 1 and 2 (days 1 and 3) decline too.
    retry_at(world, 1)
    retry_at(world, 3)
    assert [p.failure_code for p in world.payments()] == ["card_declined"] * 3
    assert status(world) == "past_due"
    assert premium_allowed(client, world, feature)[0] is False
    check_books(world, owed=2000)

    # Nov 5: the customer saves a good card (no webhook here, so no early retry).
    world.billing.clock.set(utc(2026, 11, 5, 12))
    attach_card(stripe_ctx, stripe_id, GOOD_CARD)

    # Retry 3 (day 5) succeeds.
    retry_at(world, 5)
    payments = world.payments()
    assert [(p.attempt_number, p.trigger, p.status) for p in payments] == [
        (1, "initial", "canceled"),
        (2, "retry", "canceled"),
        (3, "retry", "canceled"),
        (4, "retry", "succeeded"),
    ]
    assert world.invoice().status == "paid"
    assert world.collection().status == "paid"
    assert status(world) == "active"
    assert premium_allowed(client, world, feature) == (True, "ok")
    check_books(world, owed=0)
    charges = sorted(c["status"] for c in charges_of(stripe_ctx, stripe_id))
    assert charges == ["failed", "failed", "failed", "succeeded"]

    # The customer was told each time, and the recovery is on record.
    with world.db.read() as tx:
        kinds = [
            e.type
            for e in tx.session.scalars(
                select(DomainEvent)
                .where(DomainEvent.customer_id == world.customer_id)
                .order_by(DomainEvent.id)
            )
            if e.type.startswith(
                ("invoice.payment_failed", "payment.", "subscription.updated", "invoice.paid")
            )
        ]
    assert kinds.count("invoice.payment_failed") == 3
    assert kinds.count("payment.failed") == 3
    assert kinds.count("payment.succeeded") == 1
    assert kinds.index("payment.succeeded") < kinds.index("invoice.paid")
