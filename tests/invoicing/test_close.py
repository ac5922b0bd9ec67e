"""The period-close job and the invoice lifecycle against the real services, on both backends."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.credits import credit_transfer_ids
from tallybook.invoicing.domain import InvoiceKind
from tallybook.invoicing.models import Invoice
from tallybook.kit.clock import utc
from tallybook.kit.errors import Conflict, InvalidRequest
from tallybook.ledger import service as ledger
from tallybook.ledger.values import Direction
from tallybook.work.models import DomainEvent, OutboxMessage
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import Billing, per_unit, setup_billing

NOV, DEC, JAN = utc(2026, 11, 1), utc(2026, 12, 1), utc(2027, 1, 1)
GRADUATED = [
    {"up_to": 1000, "unit_price": "0.01"},
    {"up_to": 5000, "unit_price": "0.008", "flat_fee_minor": 500},
    {"up_to": None, "unit_price": "0.005"},
]


def tokens_plan(db: Database, **fields: object) -> Billing:
    return setup_billing(
        db,
        start=NOV,
        prices=lambda m: [
            flat_price(2000),
            {
                "type": "usage",
                "key": "tokens",
                "name": "Tokens",
                "meter_id": m["tokens"],
                "model": "graduated",
                "tiers": GRADUATED,
            },
        ],
        **fields,
    )


def receivable_movement(db: Database, invoice_id: str, customer_id: str) -> int:
    """Net debit on the customer's receivable of the invoice's own transfers."""
    with db.read() as tx:
        ids = [f"invoice:{invoice_id}:finalize", f"invoice:{invoice_id}:balance"]
        credits = invoicing.get_invoice(tx, invoice_id).credits
        ids += credit_transfer_ids(invoice_id, credits)
        transfers = ledger.transfers_by_id(tx, ids)
        accounts = {
            a.id
            for a in ledger.list_accounts(
                tx,
                __import__("tallybook.kit.pagination", fromlist=["PageRequest"]).PageRequest(
                    limit=10
                ),
                customer_id=customer_id,
                code="accounts_receivable",
            ).data
        }
        movement = 0
        for transfer in transfers.values():
            for entry in transfer.entries:
                if entry.account_id in accounts:
                    sign = 1 if entry.direction == Direction.DEBIT else -1
                    movement += sign * entry.amount_minor
    return movement


def ledger_ok(db: Database) -> None:
    with db.read() as tx:
        report = ledger.check_invariants(tx)
    assert report.ok, report


def test_each_period_gets_exactly_one_invoice_however_often_the_job_runs(db: Database) -> None:
    billing = tokens_plan(db)
    billing.usage("tokens", 1200, utc(2026, 11, 10))
    for _ in range(3):
        billing.run_jobs(utc(2026, 12, 1, 2))
    billing.usage("tokens", 300, utc(2026, 12, 10))
    for _ in range(2):
        billing.run_jobs(utc(2027, 1, 1, 2))
    invoices = billing.invoices()
    assert [(i.kind, i.status) for i in invoices] == [
        ("opening", "open"),
        ("cycle", "open"),
        ("cycle", "open"),
    ]
    nov = invoices[1]
    assert [(line.kind, line.amount_minor) for line in nov.lines] == [
        ("usage", 1000 + 160 + 500),
        ("fee_advance", 2000),
    ]
    assert invoices[2].lines[0].amount_minor == 300
    # People read the quantity: its thousands are grouped.
    assert nov.lines[0].description.startswith("Tokens: 1,200")
    numbers = [i.number for i in invoices]
    assert numbers == ["TB-2026-000001", "TB-2026-000002", "TB-2027-000001"]
    for invoice in invoices:
        assert invoice.id is not None
        assert (
            receivable_movement(billing.db, invoice.id, billing.customer_id)
            == invoice.amount_due_minor
        )
    ledger_ok(billing.db)
    with billing.db.read() as tx:
        collect = tx.session.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.topic == "payments.collect")
        )
        finalized = tx.session.scalar(
            select(func.count())
            .select_from(DomainEvent)
            .where(DomainEvent.type == "invoice.finalized")
        )
    assert collect == 3 and finalized == 3


def test_preview_is_what_finalizing_produces_and_rerating_reproduces_it(db: Database) -> None:
    billing = tokens_plan(db)
    billing.usage("tokens", 4321, utc(2026, 11, 20, 13, 37))
    billing.run_jobs(utc(2026, 12, 1, 0, 10))
    with billing.db.read() as tx:
        preview = invoicing.preview(tx, billing.subscription_id)
    billing.run_jobs(utc(2026, 12, 1, 2))
    cycle = [i for i in billing.invoices() if i.kind == "cycle"][0]
    assert preview.content_hash == cycle.content_hash
    assert [(line.description, line.amount_minor) for line in preview.lines] == [
        (line.description, line.amount_minor) for line in cycle.lines
    ]
    assert cycle.id is not None
    with billing.db.read() as tx:
        now_hash, stored_hash = invoicing.rerate(tx, cycle.id)
    assert now_hash == stored_hash == cycle.content_hash


def test_upcoming_invoice_of_an_open_period_shows_usage_so_far(db: Database) -> None:
    billing = tokens_plan(db)
    billing.run_jobs()
    billing.usage("tokens", 500, utc(2026, 11, 3))
    with billing.db.read() as tx:
        upcoming = invoicing.preview(tx, billing.subscription_id)
    assert upcoming.id is None and upcoming.status == "draft"
    assert [(line.kind, line.amount_minor) for line in upcoming.lines] == [("usage", 500)]


def test_late_usage_becomes_an_adjustment_on_the_next_invoice(db: Database) -> None:
    billing = tokens_plan(db)
    billing.usage("tokens", 900, utc(2026, 11, 10))
    billing.run_jobs(utc(2026, 12, 1, 2))
    # An event of November arrives after November was invoiced: it crosses into tier 2.
    billing.usage("tokens", 200, utc(2026, 11, 28))
    billing.usage("tokens", 50, utc(2026, 12, 15))
    billing.run_jobs(utc(2027, 1, 1, 2))
    nov, dec = [i for i in billing.invoices() if i.kind == "cycle"]
    adjustments = [line for line in dec.lines if line.kind == "adjustment"]
    assert len(adjustments) == 1
    adjustment = adjustments[0]
    # Re-rated November: 1,100 tokens = 10.00 + 100 × 0.008 + 5.00 = 15.80; billed 9.00.
    assert adjustment.amount_minor == 1580 - 900
    assert adjustment.period_id == nov.period_id
    assert adjustment.breakdown["previously_billed"]["amount_minor"] == 900
    assert len(adjustment.breakdown["late_event_seqs"]) == 1
    assert len(dec.late_events) == 1
    with billing.db.read() as tx:
        from tallybook.metering import service as metering

        assert metering.late_seq_max(tx, billing.customer_id) is None
    ledger_ok(billing.db)


def test_threshold_billing_issues_an_interim_invoice_and_the_final_bills_the_rest(
    db: Database,
) -> None:
    billing = tokens_plan(db, billing_threshold_minor=1000)
    billing.run_jobs()
    billing.usage("tokens", 800, utc(2026, 11, 5))
    assert billing.run_threshold().get("finalized") is None
    billing.usage("tokens", 700, utc(2026, 11, 6))
    assert billing.run_threshold()["finalized"] == 1
    interim = [i for i in billing.invoices() if i.kind == "threshold"]
    assert [line.amount_minor for line in interim[0].lines] == [1000 + 400 + 500]
    billing.usage("tokens", 2000, utc(2026, 11, 20))
    billing.run_jobs(utc(2026, 12, 1, 2))
    cycle = [i for i in billing.invoices() if i.kind == "cycle"][0]
    usage = [line for line in cycle.lines if line.kind == "usage"][0]
    # 3,500 tokens undivided: 10.00 + 2,500 × 0.008 + 5.00 = 35.00; 19.00 billed on the interim.
    assert usage.amount_minor == 3500 - 1900
    assert usage.breakdown["previously_billed"]["amount_minor"] == 1900
    ledger_ok(billing.db)


def test_void_reverses_the_transfers_and_a_paid_invoice_needs_a_credit_note(db: Database) -> None:
    billing = tokens_plan(db)
    billing.run_jobs()
    opening = billing.invoices()[0]
    assert opening.id is not None
    with billing.db.transaction() as tx:
        voided = invoicing.void(tx, opening.id, reason="sold by mistake")
        again = invoicing.void(tx, opening.id)
    assert voided.status == again.status == "void"
    assert receivable_movement(billing.db, opening.id, billing.customer_id) == 2000
    ledger_ok(billing.db)
    billing.usage("tokens", 10, utc(2026, 11, 2))
    billing.run_jobs(utc(2026, 12, 1, 2))
    cycle = [i for i in billing.invoices() if i.kind == "cycle"][0]
    assert cycle.id is not None
    with billing.db.transaction() as tx:
        invoicing.record_payment(
            tx,
            cycle.id,
            payment_id="pay_1",
            amount_minor=cycle.amount_due_minor,
            currency="USD",
            at=utc(2026, 12, 1, 3),
        )
    with billing.db.transaction() as tx, pytest.raises(Conflict) as refused:
        invoicing.void(tx, cycle.id)
    assert refused.value.code == "invoice_void_paid"
    with billing.db.transaction() as tx:
        paid = invoicing.get_invoice(tx, cycle.id)
        assert paid.status == "paid"
        usage_line = next(line for line in paid.lines if line.kind == "usage")
        assert usage_line.id is not None
        note = invoicing.create_credit_note(
            tx, cycle.id, lines=[invoicing.CreditLine(usage_line.id, 10)], reason="goodwill"
        )
    assert (note.amount_minor, note.receivable_minor, note.balance_minor) == (10, 0, 10)
    assert note.number == "TB-CN-2026-000001"
    with billing.db.transaction() as tx, pytest.raises(InvalidRequest) as too_much:
        invoicing.create_credit_note(tx, cycle.id, lines=[invoicing.CreditLine(usage_line.id, 1)])
    assert too_much.value.code == "credit_note_amount_invalid"
    ledger_ok(billing.db)


def test_a_credit_note_on_an_open_invoice_reduces_what_is_owed(db: Database) -> None:
    billing = tokens_plan(db)
    billing.run_jobs()
    opening = billing.invoices()[0]
    assert opening.id is not None
    with billing.db.transaction() as tx:
        note = invoicing.create_credit_note(tx, opening.id, reason="order_change")
        invoice = invoicing.get_invoice(tx, opening.id)
    assert (note.amount_minor, note.receivable_minor, note.balance_minor) == (2000, 2000, 0)
    assert invoice.status == "paid" and invoice.amount_remaining_minor == 0
    ledger_ok(billing.db)


def test_uncollectible_writes_off_and_a_late_payment_recovers(db: Database) -> None:
    billing = tokens_plan(db)
    billing.run_jobs()
    opening = billing.invoices()[0]
    assert opening.id is not None
    with billing.db.transaction() as tx:
        written = invoicing.mark_uncollectible(tx, opening.id, reason="card expired")
        assert written.amount_written_off_minor == 2000 and written.amount_remaining_minor == 0
        paid = invoicing.record_payment(
            tx,
            opening.id,
            payment_id="pay_9",
            amount_minor=2000,
            currency="USD",
            at=utc(2026, 11, 3),
        )
        replay = invoicing.record_payment(
            tx,
            opening.id,
            payment_id="pay_9",
            amount_minor=2000,
            currency="USD",
            at=utc(2026, 11, 3),
        )
    assert paid.status == "paid" and paid.amount_written_off_minor == 0
    assert replay.amount_paid_minor == 2000
    ledger_ok(billing.db)


def test_customer_balance_pays_the_next_invoice_and_a_credit_total_is_carried(db: Database) -> None:
    billing = tokens_plan(db)
    billing.run_jobs()
    opening = billing.invoices()[0]
    assert opening.id is not None
    with billing.db.transaction() as tx:
        invoicing.record_payment(
            tx,
            opening.id,
            payment_id="pay_2",
            amount_minor=2000,
            currency="USD",
            at=utc(2026, 11, 2),
        )
        invoicing.create_credit_note(tx, opening.id, reason="goodwill")  # 20.00 to the balance
    billing.usage("tokens", 100, utc(2026, 11, 5))
    billing.run_jobs(utc(2026, 12, 1, 2))
    cycle = [i for i in billing.invoices() if i.kind == "cycle"][0]
    assert cycle.total_minor == 100 + 2000
    assert cycle.balance_applied_minor == 2000
    assert cycle.amount_due_minor == 100
    assert cycle.id is not None
    assert receivable_movement(billing.db, cycle.id, billing.customer_id) == 100
    ledger_ok(billing.db)


def test_numbers_are_gap_free_when_a_finalization_rolls_back(db: Database) -> None:
    billing = tokens_plan(db)
    request = invoicing.BillingRequest(
        billing.subscription_id, _current_period(billing), InvoiceKind.OPENING
    )

    def finalize_then_crash() -> None:
        with billing.db.transaction() as tx:
            assert invoicing.bill(tx, [request], finalize=True)[0].status == "finalized"
            raise RuntimeError("crash after numbering")

    with pytest.raises(RuntimeError):
        finalize_then_crash()
    billing.run_jobs()
    assert [i.number for i in billing.invoices()] == ["TB-2026-000001"]


def _current_period(billing: Billing) -> str:
    with billing.db.read() as tx:
        from tallybook.subscriptions import service as subscriptions

        period_id = subscriptions.get(tx, billing.subscription_id).current_period_id
    assert period_id is not None
    return period_id


def test_an_empty_period_is_closed_by_a_paid_zero_invoice(db: Database) -> None:
    billing = setup_billing(
        db, start=NOV, prices=lambda m: [per_unit(m["tokens"], "0.01", key="tokens")]
    )
    billing.run_jobs(utc(2026, 12, 1, 2))
    (cycle,) = billing.invoices()
    assert cycle.total_minor == 0 and cycle.status == "paid"
    assert [line.quantity for line in cycle.lines] == [Decimal(0)]
    with billing.db.read() as tx:
        count = tx.session.scalar(select(func.count()).select_from(Invoice))
    assert count == 1
