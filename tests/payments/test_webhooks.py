"""``POST /v1/webhooks/stripe``: signed events are stored once; forged, stale or unsigned ones
are refused with 400 and nothing stored. Then the worker processes the inbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.payments.inbox import processor
from tallybook.payments.models import WebhookEvent
from tests.http.test_edge import assert_error
from tests.payments import stripe_events as se
from tests.payments.conftest import (
    OLD_WEBHOOK_SECRET,
    WEBHOOK_SECRET,
    Started,
    Webhooks,
    World,
    make_world,
    offline_stripe_ctx,
    start_offline_attempt,
    webhooks_for,
)


@pytest.fixture
def world(db: Database) -> World:
    return make_world(db, offline_stripe_ctx())


@pytest.fixture
def hooks(world: World) -> Iterator[Webhooks]:
    yield from webhooks_for(world, secrets=f"{WEBHOOK_SECRET},{OLD_WEBHOOK_SECRET}")


def _stored(world: World) -> int:
    with world.db.read() as tx:
        return int(tx.session.scalar(select(func.count()).select_from(WebhookEvent)) or 0)


def _succeeded(started: Started, world: World, created: int) -> dict[str, object]:
    return se.event(
        "payment_intent.succeeded",
        se.payment_intent(
            started.intent_id,
            status="succeeded",
            amount=2000,
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


def test_a_signed_event_is_stored_once_and_redeliveries_change_nothing(
    world: World, hooks: Webhooks
) -> None:
    started = start_offline_attempt(world)
    event = _succeeded(started, world, hooks.now())
    first = hooks.send(event)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": True, "event_id": event["id"], "duplicate": False}
    for _ in range(3):
        again = hooks.send(event)
        assert again.status_code == 200
        assert again.json()["duplicate"] is True
    assert _stored(world) == 1
    assert hooks.process() == {"processed": 1}
    assert hooks.process() == {}
    (payment,) = world.payments()
    assert payment.status == "succeeded"
    assert world.invoice().status == "paid"
    hooks.send(event)  # a redelivery days later, after processing
    assert hooks.process() == {}
    world.assert_ledger_agrees_with_invoice()
    assert world.clearing_minor() == 2000


def test_forged_stale_and_unsigned_requests_are_refused_and_nothing_is_stored(
    world: World, hooks: Webhooks
) -> None:
    event = se.event(
        "payout.paid", se.payout("po_1", amount=100, status="paid", created=1), created=1
    )
    assert_error(
        hooks.send(event, secrets=["whsec_attacker"]),
        400,
        "webhook_signature_invalid",
        "Stripe-Signature",
    )
    assert_error(
        hooks.send(event, timestamp=hooks.now() - 301),
        400,
        "webhook_timestamp_outside_tolerance",
        "Stripe-Signature",
    )
    assert_error(
        hooks.send(event, timestamp=hooks.now() + 3600), 400, "webhook_timestamp_outside_tolerance"
    )
    unsigned = hooks.client.post("/v1/webhooks/stripe", json=event)
    assert_error(unsigned, 400, "webhook_signature_missing", "Stripe-Signature")
    # The right signature on a different body.
    payload, headers = se.signed(event, [WEBHOOK_SECRET], hooks.now())
    tampered = payload.replace(b'"amount":100', b'"amount":999')
    response = hooks.client.post("/v1/webhooks/stripe", content=tampered, headers=headers)
    assert_error(response, 400, "webhook_signature_invalid")
    assert _stored(world) == 0


def test_rotated_secrets_both_verify_until_the_old_one_is_removed(
    world: World, hooks: Webhooks
) -> None:
    old_only = se.event(
        "payout.created", se.payout("po_2", amount=100, status="pending", created=1), created=1
    )
    assert hooks.send(old_only, secrets=[OLD_WEBHOOK_SECRET]).status_code == 200
    both = se.event(
        "payout.created", se.payout("po_3", amount=100, status="pending", created=1), created=1
    )
    assert hooks.send(both, secrets=[OLD_WEBHOOK_SECRET, WEBHOOK_SECRET]).status_code == 200
    assert _stored(world) == 2
    for current_only in webhooks_for(world, secrets=WEBHOOK_SECRET):
        retired = se.event(
            "payout.created", se.payout("po_4", amount=1, status="pending", created=1), created=1
        )
        assert_error(
            current_only.send(retired, secrets=[OLD_WEBHOOK_SECRET]),
            400,
            "webhook_signature_invalid",
        )
        assert current_only.send(retired, secrets=[WEBHOOK_SECRET]).status_code == 200


def test_malformed_but_signed_bodies_are_refused(world: World, hooks: Webhooks) -> None:
    from tallybook.payments.signature import signature_header

    for body in (b"not json", b"[]", b'{"id": "evt_x", "type": "a.b"}', b'{"object": "event"}'):
        header = signature_header(body, [WEBHOOK_SECRET], hooks.now())
        response = hooks.client.post(
            "/v1/webhooks/stripe", content=body, headers={"Stripe-Signature": header}
        )
        assert_error(response, 400, "webhook_payload_invalid")
    assert _stored(world) == 0


def test_without_a_configured_secret_nothing_can_be_verified(world: World) -> None:
    for unconfigured in webhooks_for(world, secrets=""):
        event = se.event(
            "payout.paid", se.payout("po_5", amount=1, status="paid", created=1), created=1
        )
        assert_error(unconfigured.send(event), 503, "webhook_secret_unset")
    assert _stored(world) == 0


def test_events_that_are_not_ours_are_ignored_with_a_reason(world: World, hooks: Webhooks) -> None:
    now = hooks.now()
    foreign = se.event(
        "payment_intent.succeeded",
        se.payment_intent("pi_someone_else", status="succeeded", amount=500, created=now),
        created=now,
    )
    subscription = se.event(
        "customer.subscription.updated", {"id": "sub_1", "object": "subscription"}, created=now
    )
    unknown = se.event(
        "issuing_card.created", {"id": "ic_1", "object": "issuing.card"}, created=now
    )
    for event in (foreign, subscription, unknown):
        assert hooks.send(event).status_code == 200
    assert hooks.process() == {"ignored": 3}
    with world.db.read() as tx:
        outcomes = sorted(str(e.outcome) for e in tx.session.scalars(select(WebhookEvent)))
    assert outcomes == [
        "ignored: issuing_card.created is not acted on",
        "ignored: not a tallybook payment",
        "ignored: tallybook does not use Stripe subscriptions",
    ]


def test_a_poison_event_backs_off_is_parked_and_replayed(world: World, hooks: Webhooks) -> None:
    started = start_offline_attempt(world)
    now = hooks.now()
    poison = se.event(
        "payment_intent.succeeded",
        {
            **se.payment_intent(started.intent_id, status="succeeded", amount=2000, created=now),
            "status": "teleported",
        },
        created=now,
    )
    assert hooks.send(poison).status_code == 200
    attempts_max = world.ctx.settings.inbox_attempts_max
    due_times = []
    for attempt in range(1, attempts_max + 1):
        outcome = hooks.process()
        assert outcome == ({"parked": 1} if attempt == attempts_max else {"failed": 1}), attempt
        with world.db.read() as tx:
            row = tx.session.scalar(select(WebhookEvent))
            assert row is not None
            assert row.attempts == attempt
            assert "teleported" in (row.last_error or "")
            due_times.append(row.next_attempt_at)
        assert hooks.process() == {}  # not due again before its backoff
        world.billing.clock.advance(hours=7)
    gaps = [b - a for a, b in zip(due_times, due_times[1:-1], strict=False)]
    assert all(gap > timedelta(0) for gap in gaps)
    assert hooks.process() == {}  # parked: never retried on its own
    with world.db.transaction(actor="test") as tx:
        processor.replay(tx, str(poison["id"]))
    assert hooks.process() == {"failed": 1}
    (payment,) = world.payments()
    assert payment.status == "pending"  # nothing half-applied by the failures
    world.assert_ledger_agrees_with_invoice()


def test_replay_api_and_processed_events_are_not_replayed(world: World, hooks: Webhooks) -> None:
    started = start_offline_attempt(world)
    event = _succeeded(started, world, hooks.now())
    hooks.send(event)
    hooks.process()
    with world.db.transaction(actor="test") as tx:
        from tallybook.auth.service import create_api_key

        _, secret = create_api_key(tx, name="ops", scopes=["payments:write"])
    auth = {"Authorization": f"Bearer {secret}"}
    response = hooks.client.post(f"/v1/inbound_events/{event['id']}/replay", headers=auth)
    assert_error(response, 409, "inbox_event_not_replayable", "event")
    listing = hooks.client.get("/v1/inbound_events?status=processed", headers=auth)
    assert listing.status_code == 200
    assert [e["id"] for e in listing.json()["data"]] == [event["id"]]
    shown = hooks.client.get(f"/v1/inbound_events/{event['id']}", headers=auth).json()
    assert shown["payload"]["type"] == "payment_intent.succeeded"
    assert shown["outcome"].startswith("payment pay_")
