"""``provider_comparison``: our payment records beside the provider's last known state, read
from stored webhooks and syncs only (no network), and provider objects without a counterpart.
Reconciliation builds its payment-provider check on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.payments import service as payments
from tallybook.payments.context import PaymentsContext
from tallybook.payments.settings import PaymentsSettings
from tests.payments import stripe_events as se
from tests.payments.conftest import (
    Started,
    Webhooks,
    World,
    make_world,
    offline_stripe_ctx,
    start_offline_attempt,
    webhooks_for,
)

SINCE, UNTIL = utc(2026, 11, 1), utc(2026, 12, 1)


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, offline_stripe_ctx())


@pytest.fixture
def hooks(world: World) -> Iterator[Webhooks]:
    yield from webhooks_for(world)


def _compare(world: World, **kwargs: object) -> payments.ProviderComparison:
    with world.db.read() as tx:
        return payments.provider_comparison(
            tx,
            since=kwargs.pop("since", SINCE),  # type: ignore[arg-type]
            until=kwargs.pop("until", UNTIL),  # type: ignore[arg-type]
            **kwargs,  # type: ignore[arg-type]
        )


def _intent_event(
    started: Started, world: World, *, status: str, created: int, amount: int = 2000
) -> dict[str, object]:
    return se.event(
        f"payment_intent.{'succeeded' if status == 'succeeded' else 'processing'}",
        se.payment_intent(
            started.intent_id,
            status=status,
            amount=amount,
            created=created,
            customer=started.stripe_customer_id,
            latest_charge=started.charge_id,
            metadata={
                "tallybook_payment_id": started.payment_id,
                "tallybook_invoice_id": world.invoice_id,
            },
        ),
        created=created,
    )


def test_a_success_not_yet_processed_disagrees_until_the_worker_applies_it(
    world: World, hooks: Webhooks
) -> None:
    started = start_offline_attempt(world)
    (before,) = _compare(world).invoices
    (attempt,) = before.payments
    # Nothing heard from Stripe yet: a pending attempt agrees with silence.
    assert (attempt.status, attempt.provider_view.source) == ("pending", "none")
    assert before.agrees

    event = _intent_event(started, world, status="succeeded", created=hooks.now())
    assert hooks.send(event).status_code == 200
    # Stored, not processed (a webhook parked or waiting): Stripe says paid, we say pending.
    (stored,) = _compare(world).invoices
    (attempt,) = stored.payments
    view = attempt.provider_view
    assert (view.source, view.status, view.state, view.amount_minor, view.currency) == (
        "event",
        "succeeded",
        "succeeded",
        2000,
        "USD",
    )
    assert view.event_id == event["id"]
    assert not attempt.agrees and not stored.agrees
    assert (stored.collected_minor, stored.provider_collected_minor) == (0, 2000)
    assert _compare(world).disagreements == [stored]

    assert hooks.process() == {"processed": 1}
    (after,) = _compare(world).invoices
    assert after.agrees, after
    assert (after.invoice_status, after.collection_status) == ("paid", "paid")
    assert (after.collected_minor, after.provider_collected_minor) == (2000, 2000)
    assert after.invoice_amount_paid_minor == after.collection_amount_paid_minor == 2000
    assert _compare(world).unmatched == []
    world.assert_ledger_agrees_with_invoice()


def test_a_provider_amount_that_differs_from_ours_disagrees(world: World, hooks: Webhooks) -> None:
    started = start_offline_attempt(world)
    hooks.send(_intent_event(started, world, status="succeeded", created=hooks.now()))
    hooks.process()
    # A later event (Stripe's view changed: e.g. a partial capture) says another amount.
    hooks.send(
        _intent_event(started, world, status="succeeded", created=hooks.now() + 5, amount=1500)
    )
    hooks.process()
    (compared,) = _compare(world).invoices
    (attempt,) = compared.payments
    assert (attempt.amount_minor, attempt.provider_view.amount_minor) == (2000, 1500)
    assert not compared.agrees


def test_provider_objects_without_a_counterpart_are_listed(world: World, hooks: Webhooks) -> None:
    started = start_offline_attempt(world)
    now = hooks.now()
    # Ours: matched by id.
    hooks.send(_intent_event(started, world, status="processing", created=now))
    # A PaymentIntent created twice after a lost answer: names our invoice, never stored.
    orphan = se.payment_intent(
        "pi_1TbOrphan000000000000000",
        status="requires_payment_method",
        amount=2000,
        created=now,
        payment_method=None,
        metadata={"tallybook_invoice_id": world.invoice_id, "tallybook_attempt": "1"},
    )
    hooks.send(se.event("payment_intent.created", orphan, created=now + 1))
    # A charge made in the dashboard, and a Stripe invoice that isn't ours.
    dashboard = se.payment_intent(
        "pi_1TbDashboard0000000000000", status="succeeded", amount=999, created=now
    )
    hooks.send(se.event("payment_intent.succeeded", dashboard, created=now + 2))
    foreign = se.stripe_invoice(
        "in_1TbForeign00000000000000",
        status="paid",
        amount_due=4200,
        amount_paid=4200,
        created=now,
        customer="cus_1TbSomeoneElse",
    )
    hooks.send(se.event("invoice.paid", foreign, created=now + 3))
    # A Stripe invoice naming ours is a counterpart even unpaid.
    named = se.stripe_invoice(
        "in_1TbNamed000000000000000",
        status="open",
        amount_due=2000,
        amount_paid=0,
        created=now,
        customer=started.stripe_customer_id,
        metadata={"tallybook_invoice_id": world.invoice_id},
    )
    hooks.send(se.event("invoice.finalized", named, created=now + 4))
    hooks.process()

    found = _compare(world).unmatched
    assert [(u.object_type, u.object_id, u.status, u.amount_minor) for u in found] == [
        ("payment_intent", "pi_1TbOrphan000000000000000", "requires_payment_method", 2000),
        ("payment_intent", "pi_1TbDashboard0000000000000", "succeeded", 999),
        ("invoice", "in_1TbForeign00000000000000", "paid", 4200),
    ]
    assert found[0].metadata == {"tallybook_invoice_id": world.invoice_id, "tallybook_attempt": "1"}
    assert found[0].event_type == "payment_intent.created"
    (compared,) = _compare(world).invoices
    assert compared.payments[0].provider_view.status == "processing"
    assert compared.agrees
    # The window is half-open on the provider's own event time and the invoice's finalization.
    assert _compare(world, since=UNTIL, until=utc(2027, 1, 1)).invoices == []
    assert _compare(world, since=UNTIL, until=utc(2027, 1, 1)).unmatched == []
    assert _compare(world, provider="manual").unmatched == []


def test_manual_payments_are_their_own_record(db: Database) -> None:
    ctx = PaymentsContext.of(PaymentsSettings.from_settings(None))
    world = make_world(db, ctx)
    world.relay()
    with world.db.transaction(actor="finance") as tx:
        payments.mark_paid(tx, world.invoice_id, ctx, reference="SEPA 1")
    (compared,) = _compare(world).invoices
    assert compared.provider == "manual"
    assert {p.provider_view.source for p in compared.payments} == {"manual"}
    assert compared.agrees
    assert compared.collected_minor == compared.provider_collected_minor == 2000
    assert _compare(world, provider="stripe").invoices == []
