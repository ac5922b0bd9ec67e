"""Stripe did the work but our side saw a timeout: the retry must not charge twice.

The transport forwards every request to localstripe and then, for the chosen call, raises a
read timeout to our code, which is what a real network does when the answer is lost. (localstripe
does not implement idempotency keys, so these tests prove more than the keys alone: a retry
confirms the same PaymentIntent by id, and a PaymentIntent succeeds at most once.)
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import stripe

from tallybook.db import Database
from tallybook.payments.context import PaymentsContext
from tallybook.payments.providers.stripe import StripeProvider
from tallybook.payments.service import accounts
from tallybook.payments.tasks import run_sync
from tallybook.work.schedule import JobContext
from tests.payments.conftest import (
    GOOD_CARD,
    LOCALSTRIPE_OFF_SESSION,
    STRIPE_TEST_KEY,
    attach_card,
    charges_of,
    create_stripe_customer,
    make_world,
    stripe_client,
    stripe_context,
)

pytestmark = pytest.mark.stripe


class AnswerLost(stripe.HTTPXClient):
    """Performs each request; for the first ``times`` matching ones, then loses the answer."""

    def __init__(self, *, method: str, path_suffix: str, times: int = 1) -> None:
        super().__init__(timeout=httpx.Timeout(10.0, connect=5.0), allow_sync_methods=True)
        self.method = method
        self.path_suffix = path_suffix
        self.remaining = times
        self.sent: list[tuple[str, str, str | None]] = []

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        answer = super().request(method, url, headers, post_data)
        self.sent.append((method.upper(), url, dict(headers).get("Idempotency-Key")))
        path = url.split("?")[0]
        if method.upper() == self.method and path.endswith(self.path_suffix) and self.remaining:
            self.remaining -= 1
            self._handle_request_error(httpx.ReadTimeout("the answer never came back"))
        return answer


def _world(db: Database, url: str, transport: AnswerLost) -> Any:
    provider = StripeProvider(
        STRIPE_TEST_KEY, api_base=url, off_session=LOCALSTRIPE_OFF_SESSION, http_client=transport
    )
    ctx = stripe_context(url, provider=provider)
    world = make_world(db, ctx)
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
    return world, ctx, stripe_id


def _succeeded_charges(ctx: PaymentsContext, stripe_id: str) -> list[Any]:
    return [c for c in charges_of(ctx, stripe_id) if c["status"] == "succeeded"]


def test_a_lost_confirmation_is_retried_without_a_second_charge(
    db: Database, localstripe_url: str
) -> None:
    transport = AnswerLost(method="POST", path_suffix="/confirm")
    world, ctx, stripe_id = _world(db, localstripe_url, transport)

    first = world.relay()
    assert first["failed"] == 1  # our side saw a timeout
    (payment,) = world.payments()
    assert payment.status == "pending"  # outcome unknown: nothing recorded as paid
    assert payment.provider_payment_id is not None
    assert len(_succeeded_charges(ctx, stripe_id)) == 1  # but Stripe charged
    assert world.invoice().status == "open"

    world.billing.clock.advance(minutes=5)  # past the outbox backoff
    world.relay()
    (payment,) = world.payments()
    assert payment.status == "succeeded"
    assert len(_succeeded_charges(ctx, stripe_id)) == 1
    assert world.invoice().status == "paid"
    world.assert_ledger_agrees_with_invoice()
    confirms = [key for method, url, key in transport.sent if url.endswith("/confirm")]
    assert len(confirms) == 2 and confirms[0] == confirms[1]  # the retry reused the key
    assert confirms[0] == f"tb:confirm:{world.invoice_id}:1"


def test_a_lost_creation_makes_an_unconfirmed_orphan_never_a_second_charge(
    db: Database, localstripe_url: str
) -> None:
    transport = AnswerLost(method="POST", path_suffix="/v1/payment_intents")
    world, ctx, stripe_id = _world(db, localstripe_url, transport)
    world.relay()
    (payment,) = world.payments()
    assert payment.status == "pending" and payment.provider_payment_id is None
    world.billing.clock.advance(minutes=5)
    world.relay()
    (payment,) = world.payments()
    assert payment.status == "succeeded"
    creates = [key for method, url, key in transport.sent if url.endswith("/v1/payment_intents")]
    assert creates == [f"tb:payment:{world.invoice_id}:1"] * 2
    # Real Stripe answers the retry with the first PaymentIntent (same key); localstripe makes a
    # second one, which is never confirmed and so never charges.
    assert len(_succeeded_charges(ctx, stripe_id)) == 1
    intents = stripe_client(ctx).v1.payment_intents.list(params={"limit": 100})["data"]
    mine = [
        i
        for i in intents
        if i.to_dict()["metadata"].get("tallybook_invoice_id") == world.invoice_id
    ]
    assert sorted(i["status"] for i in mine) == ["requires_confirmation", "succeeded"]
    world.assert_ledger_agrees_with_invoice()


def test_the_sync_job_finishes_an_attempt_whose_answer_and_webhook_never_came(
    db: Database, localstripe_url: str
) -> None:
    transport = AnswerLost(method="POST", path_suffix="/confirm")
    world, ctx, stripe_id = _world(db, localstripe_url, transport)
    world.relay()
    assert world.payments()[0].status == "pending"
    # No webhook, and suppose the outbox message is stuck: the sync job polls Stripe.
    world.billing.clock.advance(minutes=ctx.settings.sync_after_minutes + 1)
    report = run_sync(world.db, JobContext(owner="test"), ctx)
    assert report["synced"] == 1
    assert world.payments()[0].status == "succeeded"
    assert len(_succeeded_charges(ctx, stripe_id)) == 1
    world.relay()  # the pending outbox message now finds nothing to do
    assert len(_succeeded_charges(ctx, stripe_id)) == 1
    world.assert_ledger_agrees_with_invoice()


def test_every_call_has_an_explicit_timeout_and_no_sdk_retries(localstripe_url: str) -> None:
    provider = StripeProvider(STRIPE_TEST_KEY, api_base=localstripe_url, timeout_seconds=7.5)
    requestor = provider.client._requestor
    assert requestor._options.max_network_retries == 0
    http_client = requestor._client
    assert isinstance(http_client, stripe.HTTPXClient)
    timeout = http_client._timeout
    assert isinstance(timeout, httpx.Timeout)
    assert (timeout.read, timeout.connect) == (7.5, 5.0)


def test_a_retry_after_the_outbox_backoff_is_idempotent_per_attempt(
    db: Database, localstripe_url: str
) -> None:
    """Delivering the same attempt message again after success does nothing at Stripe."""
    transport = AnswerLost(method="POST", path_suffix="/nothing", times=0)
    world, ctx, stripe_id = _world(db, localstripe_url, transport)
    world.relay()
    sent_before = len(transport.sent)
    from tallybook.payments.service import runner

    (payment,) = world.payments()
    assert runner.run_attempt(world.db, payment.id, ctx) == "nothing to do"
    assert len(transport.sent) == sent_before
    assert len(_succeeded_charges(ctx, stripe_id)) == 1
    _ = timedelta
