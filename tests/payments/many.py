"""Many customers with an open invoice each, their attempts started at Stripe, and a burst of
Stripe events for them: the shared set-up of the burst and worker-crash tests."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.tasks import close_due
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.models import Payment, Refund, WebhookEvent
from tallybook.payments.service import collections, postings
from tallybook.work.models import DomainEvent
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_subscription, create_version, flat_price
from tests.fixtures.factories import create_customer
from tests.payments import stripe_events as se

FEE_MINOR = 2000
REFUNDS_PER_PAYMENT = 4
REFUND_MINOR = 100
T0 = 1_793_000_000


@dataclass(frozen=True)
class Attempt:
    customer_id: str
    invoice_id: str
    payment_id: str
    intent_id: str
    charge_id: str


def many_attempts(db: Database, ctx: PaymentsContext, count: int) -> tuple[Database, list[Attempt]]:
    clock = TestClock(utc(2026, 11, 1, 9))
    db = db.with_clock(clock)
    with db.transaction(actor="test") as tx:
        version = create_version(tx, prices=[flat_price(FEE_MINOR)])
        for _ in range(count):
            create_subscription(tx, customer=create_customer(tx), version=version)
    close_due(db, JobContext(owner="test"))
    attempts = []
    with db.transaction(actor="test") as tx:
        invoices = invoicing.list_invoices(tx, PageRequest(limit=100), status="open")
        listed = list(invoices.data)
        while invoices.has_more:
            invoices = invoicing.list_invoices(
                tx, PageRequest(limit=100, starting_after=listed[-1].id), status="open"
            )
            listed.extend(invoices.data)
        assert len(listed) == count
        for n, invoice in enumerate(listed):
            assert invoice.id is not None
            collections.start(tx, invoice.id, ctx)
            payment = repository.payment_for_attempt(tx, invoice.id, 1)
            assert payment is not None
            payment.provider_payment_id = f"pi_burst{n:06d}{invoice.id[-8:]}"
            attempts.append(
                Attempt(
                    invoice.customer_id,
                    invoice.id,
                    payment.id,
                    payment.provider_payment_id,
                    f"ch_burst{n:06d}{invoice.id[-8:]}",
                )
            )
    return db, attempts


def burst(attempts: list[Attempt], *, seed: int = 7) -> list[dict[str, Any]]:
    """Ten events per payment (processing, succeeded, four refunds created then succeeded),
    shuffled across all payments."""
    events: list[dict[str, Any]] = []
    for k, a in enumerate(attempts):
        t = T0 + k * 20
        meta = {"tallybook_payment_id": a.payment_id, "tallybook_invoice_id": a.invoice_id}

        def intent(
            status: str, a: Attempt = a, meta: dict[str, str] = meta, t: int = t
        ) -> dict[str, Any]:
            return se.payment_intent(
                a.intent_id,
                status=status,
                amount=FEE_MINOR,
                created=t,
                metadata=meta,
                latest_charge=a.charge_id,
            )

        events.append(se.event("payment_intent.processing", intent("processing"), created=t))
        events.append(se.event("payment_intent.succeeded", intent("succeeded"), created=t + 1))
        for r in range(REFUNDS_PER_PAYMENT):
            refund_id = f"re_burst{k:06d}{r}{a.invoice_id[-8:]}"
            for status, kind, dt in (
                ("pending", "refund.created", 2),
                ("succeeded", "refund.updated", 3),
            ):
                refund = se.refund(
                    refund_id,
                    charge=a.charge_id,
                    payment_intent=a.intent_id,
                    amount=REFUND_MINOR,
                    status=status,
                    created=t + 2 + r,
                )
                events.append(se.event(kind, refund, created=t + dt + 2 * r))
    random.Random(seed).shuffle(events)
    return events


def assert_each_effect_once(
    db: Database, attempts: list[Attempt], events: list[dict[str, Any]]
) -> None:
    count = len(attempts)
    with db.read() as tx:
        inbox = Counter(status for (status,) in tx.session.execute(select(WebhookEvent.status)))
        assert inbox == {"processed": len(events)}, inbox
        payments = list(tx.session.scalars(select(Payment)))
        assert len(payments) == count
        assert {p.status for p in payments} == {"succeeded"}
        assert {p.amount_refunded_minor for p in payments} == {REFUND_MINOR * REFUNDS_PER_PAYMENT}
        refunds = list(tx.session.scalars(select(Refund)))
        assert len(refunds) == count * REFUNDS_PER_PAYMENT
        assert {r.status for r in refunds} == {"succeeded"}
        emitted = Counter(
            kind
            for (kind,) in tx.session.execute(
                select(DomainEvent.type).where(DomainEvent.type.like("payment.%"))
            )
        )
        assert emitted == {
            "payment.succeeded": count,
            "payment.refunded": count * REFUNDS_PER_PAYMENT,
        }, emitted
        paid = tx.session.scalar(
            select(func.count()).select_from(Payment).where(Payment.succeeded_at.is_not(None))
        )
        assert paid == count
        clearing = postings.clearing_balance(tx, "USD").posted.amount_minor
        assert clearing == count * (FEE_MINOR - REFUND_MINOR * REFUNDS_PER_PAYMENT)
        for a in attempts[:20]:
            invoice = invoicing.get_invoice(tx, a.invoice_id)
            assert invoice.status == "paid"
            assert invoice.amount_paid_minor == FEE_MINOR
        assert ledger.check_invariants(tx).ok
