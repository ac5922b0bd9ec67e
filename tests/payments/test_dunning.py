"""Failed-payment recovery: the retry schedule, subscription statuses, the policies at the end,
manual retries, and announcing every failure. Attempts are answered by a scripted provider."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tallybook.db import Database
from tallybook.kit.errors import Conflict
from tallybook.payments import service
from tallybook.payments.settings import AfterRetries, InvoiceAfterRetries, parse_retry_days
from tallybook.payments.tasks import run_retries
from tallybook.subscriptions import service as subscriptions
from tallybook.work.models import DomainEvent
from tallybook.work.schedule import JobContext
from tests.payments.conftest import World, make_world
from tests.payments.scripted import (
    ACTION,
    DECLINE,
    NO_METHOD,
    SUCCEED,
    UNREACHABLE,
    ScriptedProvider,
    scripted_context,
)


def _world(db: Database, script: list[str], **settings: object) -> tuple[World, ScriptedProvider]:
    provider = ScriptedProvider(script=list(script))
    return make_world(db, scripted_context(provider, **settings)), provider


def _subscription_status(world: World) -> str:
    with world.db.read() as tx:
        return str(subscriptions.get(tx, world.billing.subscription_id).status)


def _advance_to_next_retry(world: World) -> None:
    next_at = world.collection().next_attempt_at
    assert next_at is not None
    world.billing.clock.set(next_at)
    run_retries(world.db, JobContext(owner="test"), world.ctx)
    world.relay()


def _failures(world: World) -> list[dict[str, object]]:
    with world.db.read() as tx:
        rows = tx.session.scalars(
            select(DomainEvent)
            .where(DomainEvent.type == "invoice.payment_failed")
            .order_by(DomainEvent.id)
        )
        return [dict(r.data) for r in rows]


def test_the_schedule_runs_days_after_the_first_failure_then_the_subscription_is_unpaid(
    db: Database,
) -> None:
    world, provider = _world(db, [DECLINE] * 5)
    start = world.billing.clock.now()
    world.relay()
    collection = world.collection()
    assert collection.status == "retrying"
    assert _subscription_status(world) == "past_due"
    first_failed = collection.first_failed_at
    assert first_failed is not None
    seen = []
    for _ in range(4):
        next_at = world.collection().next_attempt_at
        assert next_at is not None
        seen.append((next_at - first_failed).days)
        # Not a moment early: the job finds nothing due just before.
        world.billing.clock.set(next_at - timedelta(seconds=1))
        assert run_retries(world.db, JobContext(owner="test"), world.ctx) == {"retries_started": 0}
        _advance_to_next_retry(world)
    assert seen == [1, 3, 5, 7]
    collection = world.collection()
    assert (collection.status, collection.attempt_count, collection.retries_done) == (
        "exhausted",
        5,
        4,
    )
    assert collection.next_attempt_at is None
    assert _subscription_status(world) == "unpaid"
    assert world.invoice().status == "open"  # left open by default
    world.assert_ledger_agrees_with_invoice()
    failures = _failures(world)
    assert [f["attempt_number"] for f in failures] == [1, 2, 3, 4, 5]
    assert [f["final"] for f in failures] == [False, False, False, False, True]
    assert failures[0]["failure_code"] == "card_declined"
    assert failures[0]["next_attempt_at"] is not None
    assert provider.confirmations == [DECLINE] * 5
    # Every earlier attempt's PaymentIntent was canceled before the next one was made.
    assert len(provider.canceled) == 4
    assert world.billing.clock.now() - start >= timedelta(days=7)


def test_each_retry_is_created_once_however_often_the_job_runs(db: Database) -> None:
    world, _ = _world(db, [DECLINE, DECLINE])
    world.relay()
    next_at = world.collection().next_attempt_at
    assert next_at is not None
    world.billing.clock.set(next_at)
    started = [
        run_retries(world.db, JobContext(owner="test"), world.ctx)["retries_started"]
        for _ in range(3)
    ]
    assert started == [1, 0, 0]
    assert [p.attempt_number for p in world.payments()] == [1, 2]


def test_success_on_a_retry_pays_the_invoice_and_reactivates(db: Database) -> None:
    world, _ = _world(db, [DECLINE, DECLINE, SUCCEED])
    world.relay()
    _advance_to_next_retry(world)
    assert _subscription_status(world) == "past_due"
    _advance_to_next_retry(world)
    assert world.invoice().status == "paid"
    assert _subscription_status(world) == "active"
    collection = world.collection()
    assert (collection.status, collection.amount_paid_minor) == ("paid", 2000)
    payments = world.payments()
    assert [p.status for p in payments] == ["canceled", "canceled", "succeeded"]
    assert payments[-1].fee_minor == 59
    world.assert_ledger_agrees_with_invoice()
    with world.db.read() as tx:
        clearing = service.clearing_balance(tx, "USD")
    assert clearing.posted.amount_minor == 2000 - 59


def test_cancel_policy_and_writing_off_at_the_end(db: Database) -> None:
    world, _ = _world(
        db,
        [DECLINE] * 3,
        retry_days=parse_retry_days("2,4"),
        after_retries=AfterRetries.CANCEL,
        invoice_after_retries=InvoiceAfterRetries.MARK_UNCOLLECTIBLE,
    )
    world.relay()
    _advance_to_next_retry(world)
    _advance_to_next_retry(world)
    assert _subscription_status(world) == "canceled"
    assert world.invoice().status == "uncollectible"
    assert world.collection().status == "uncollectible"
    world.assert_ledger_agrees_with_invoice()  # the write-off took the receivable to zero


def test_no_retries_configured_means_the_first_failure_is_final(db: Database) -> None:
    world, _ = _world(db, [DECLINE], retry_days=())
    world.relay()
    assert world.collection().status == "exhausted"
    assert _subscription_status(world) == "unpaid"


def test_a_manual_retry_does_not_use_up_a_scheduled_one(db: Database) -> None:
    world, _ = _world(db, [DECLINE, DECLINE, SUCCEED])
    world.relay()
    scheduled = world.collection().next_attempt_at
    with world.db.transaction(actor="test") as tx:
        manual = service.retry_collection(tx, world.invoice_id, world.ctx)
        assert manual.trigger == "manual_retry"
        with pytest.raises(Conflict) as busy:
            service.retry_collection(tx, world.invoice_id, world.ctx)
        assert busy.value.code == "payment_attempt_in_progress"
    world.relay()
    collection = world.collection()
    assert (collection.status, collection.retries_done, collection.next_attempt_at) == (
        "retrying",
        0,
        scheduled,
    )
    _advance_to_next_retry(world)
    assert world.invoice().status == "paid"
    assert [p.trigger for p in world.payments()] == ["initial", "manual_retry", "retry"]


def test_a_manual_retry_after_the_schedule_can_recover_an_unpaid_subscription(db: Database) -> None:
    world, _ = _world(db, [DECLINE, DECLINE, SUCCEED], retry_days=parse_retry_days("1"))
    world.relay()
    _advance_to_next_retry(world)
    assert _subscription_status(world) == "unpaid"
    with world.db.transaction(actor="test") as tx:
        service.retry_collection(tx, world.invoice_id, world.ctx)
    world.relay()
    assert world.invoice().status == "paid"
    assert _subscription_status(world) == "active"


def test_authentication_required_and_no_payment_method_count_as_failures(db: Database) -> None:
    world, provider = _world(db, [NO_METHOD, ACTION, SUCCEED])
    world.relay()
    first = world.payments()[0]
    assert (first.status, first.failure_code) == ("failed", "payment_method_missing")
    _advance_to_next_retry(world)
    second = world.payments()[1]
    assert (second.status, second.failure_code) == ("requires_action", "authentication_required")
    assert _failures(world)[1]["action_required"] is True
    _advance_to_next_retry(world)
    assert world.invoice().status == "paid"
    # The attempt that waited for authentication was canceled first: it can't also succeed.
    assert provider.canceled == [second.provider_payment_id]


def test_an_unreachable_provider_is_retried_by_the_outbox_not_counted_as_a_failure(
    db: Database,
) -> None:
    world, _ = _world(db, [UNREACHABLE, SUCCEED])
    first = world.relay()
    assert first["failed"] == 1
    assert world.collection().status == "collecting"
    assert world.payments()[0].status == "pending"
    world.billing.clock.advance(minutes=2)
    world.relay()
    assert world.invoice().status == "paid"
    assert len(world.payments()) == 1


def test_an_invoice_voided_during_dunning_ends_the_collection(db: Database) -> None:
    world, _ = _world(db, [DECLINE, SUCCEED])
    world.relay()
    from tallybook.invoicing import service as invoicing

    with world.db.transaction(actor="test") as tx:
        invoicing.void(tx, world.invoice_id, reason="sold by mistake")
    _advance_to_next_retry(world)
    assert world.collection().status == "voided"
    assert len(world.payments()) == 1
    with world.db.transaction(actor="test") as tx:
        with pytest.raises(Conflict) as closed:
            service.retry_collection(tx, world.invoice_id, world.ctx)
    assert closed.value.code == "collection_closed"


def test_retry_days_are_validated() -> None:
    assert parse_retry_days("1, 3,5 ,7") == (1, 3, 5, 7)
    assert parse_retry_days("") == ()
    for bad in ("3,1", "1,1", "-1", "61", ",".join(["1"] * 13)):
        with pytest.raises(ValueError):
            parse_retry_days(bad)


def test_a_new_payment_method_retries_at_once(db: Database) -> None:
    from tests.payments import stripe_events as se
    from tests.payments.conftest import webhooks_for

    world, provider = _world(db, [DECLINE, SUCCEED])
    world.relay()
    assert world.collection().status == "retrying"
    with world.db.read() as tx:
        stripe_customer = service.get_account(tx, world.customer_id).provider_customer_id
    now = int(world.billing.clock.now().timestamp())
    attached = se.event(
        "payment_method.attached",
        se.payment_method("pm_new", customer=stripe_customer, created=now),
        created=now,
    )
    for hooks in webhooks_for(world):
        assert hooks.send(attached).status_code == 200
        assert hooks.process() == {"processed": 1}
    world.relay()
    assert world.invoice().status == "paid"
    assert [p.trigger for p in world.payments()] == ["initial", "manual_retry"]


def test_the_daily_sweep_starts_collections_that_never_started(db: Database) -> None:
    from tallybook.payments.tasks import run_collect_due

    world, _ = _world(db, [SUCCEED])
    # The payments.collect message is lost (never relayed); the sweep finds the invoice.
    context = JobContext(owner="sweeper")
    assert run_collect_due(world.db, context, world.ctx) == {"collections_started": 1}
    assert run_collect_due(world.db, context, world.ctx) == {
        "skipped": "done today or running elsewhere"
    }
    world.relay()
    assert world.invoice().status == "paid"
    assert len(world.payments()) == 1  # the late payments.collect message found it started
