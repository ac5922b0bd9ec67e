"""Events that localstripe itself sends (its own payload and Stripe-Signature header), forwarded
byte for byte to our endpoint: the answer to our confirmation was lost, and the webhook is what
tells us the payment succeeded."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from tallybook.db import Database
from tallybook.payments.providers.stripe import StripeProvider
from tallybook.payments.service import accounts
from tests.fixtures.receiver import Receiver, receiver
from tests.payments.conftest import (
    GOOD_CARD,
    LOCALSTRIPE_OFF_SESSION,
    STRIPE_TEST_KEY,
    WEBHOOK_SECRET,
    attach_card,
    create_stripe_customer,
    make_world,
    stripe_context,
    webhooks_for,
)
from tests.payments.test_timeouts import AnswerLost

__all__ = ["receiver"]  # the fixture

pytestmark = pytest.mark.stripe
DELIVERY_WAIT_SECONDS_MAX = 30.0


def test_a_webhook_from_localstripe_resolves_an_attempt_whose_answer_was_lost(
    db: Database, localstripe_url: str, receiver: Receiver
) -> None:
    transport = AnswerLost(method="POST", path_suffix="/confirm")
    provider = StripeProvider(
        STRIPE_TEST_KEY,
        api_base=localstripe_url,
        off_session=LOCALSTRIPE_OFF_SESSION,
        http_client=transport,
    )
    ctx = stripe_context(localstripe_url, provider=provider)
    world = make_world(db, ctx)
    # localstripe signs with the real time: move our clock there (the tolerance is 300 s).
    world.billing.clock.set(datetime.now(UTC))
    hook_id = f"we_{world.customer_id[-8:]}"
    response = httpx.post(
        f"{localstripe_url}/_config/webhooks/{hook_id}",
        data={
            "url": receiver.url,
            "secret": WEBHOOK_SECRET,
            "events[]": "payment_intent.succeeded",
        },
        headers={"Authorization": f"Bearer {STRIPE_TEST_KEY}"},
    )
    assert response.status_code == 200, response.text
    stripe_id = create_stripe_customer(ctx)
    attach_card(ctx, stripe_id, GOOD_CARD)
    with world.db.transaction(actor="test") as tx:
        accounts.link(
            tx,
            world.customer_id,
            provider="stripe",
            provider_customer_id=stripe_id,
            providers=ctx.providers,
        )

    world.relay()
    (payment,) = world.payments()
    assert payment.status == "pending"  # the confirmation's answer was lost

    deadline = time.monotonic() + DELIVERY_WAIT_SECONDS_MAX
    mine: list[tuple[bytes, str]] = []
    while not mine and time.monotonic() < deadline:
        time.sleep(0.2)
        with receiver.lock:
            mine = [
                (r.body, r.headers["stripe-signature"])
                for r in receiver.received
                if payment.provider_payment_id is not None
                and payment.provider_payment_id.encode() in r.body
            ]
    assert mine, "localstripe sent no payment_intent.succeeded for our PaymentIntent"
    body, signature = mine[0]
    for hooks in webhooks_for(world):
        forwarded = hooks.client.post(
            "/v1/webhooks/stripe",
            content=body,
            headers={"Stripe-Signature": signature, "Content-Type": "application/json"},
        )
        assert forwarded.status_code == 200, forwarded.text
        assert hooks.process() == {"processed": 1}
    (payment,) = world.payments()
    assert payment.status == "succeeded"
    assert world.invoice().status == "paid"
    world.assert_ledger_agrees_with_invoice()
    # The outbox retry of the lost confirmation later finds nothing left to do.
    world.billing.clock.advance(minutes=5)
    world.relay()
    assert [p.status for p in world.payments()] == ["succeeded"]
