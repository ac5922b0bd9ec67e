"""Reconciliation plants each kind of discrepancy and finds it; a clean system reports none;
a discrepancy no longer found is resolved. Corruption is planted straight in the tables (the
ledger's journal is append-only, so ledger damage is planted as a balance row or an extra
transfer)."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import select, update

from tallybook.invoicing.models import Invoice
from tallybook.kit.clock import utc
from tallybook.kit.money import Money
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.models import LedgerBalance
from tallybook.ledger.values import Leg, TransferRequest
from tallybook.metering.models import LateEvent, Rollup
from tallybook.payments.models import Payment, WebhookEvent
from tallybook.reconciliation import metrics, service
from tallybook.reconciliation.domain import DiscrepancyKind
from tests.reconciliation.conftest import World

DAY = date(2026, 12, 1)


def test_a_clean_system_reports_nothing_and_the_run_is_once_a_day(world: World) -> None:
    outcome = world.reconcile(DAY)
    assert outcome.ran
    run = outcome.run
    assert run.status == "completed"
    assert run.discrepancies_found == 0, world.open_discrepancies()
    assert world.open_kinds() == set()
    # Every check looked at something.
    assert run.checks["invoice_ledger"]["invoices"] >= 2
    assert run.checks["invoice_usage"]["lines"] >= 1
    assert run.checks["rollup_events"]["pairs_checked"] == 1
    assert run.checks["payment_provider"]["payments"] >= 2
    assert run.checks["clearing"]["currencies"] == ["USD"]
    again = world.reconcile(DAY)
    assert not again.ran and again.run.id == run.id
    assert metrics.DISCREPANCIES.labels("ledger_invariant")._value.get() == 0


def test_a_tampered_ledger_balance_is_a_ledger_invariant_discrepancy(world: World) -> None:
    with world.db.transaction() as tx:
        row = tx.session.scalars(select(LedgerBalance).limit(1)).one()
        row.debits_posted += 1
    world.reconcile(DAY)
    assert DiscrepancyKind.LEDGER_INVARIANT in world.open_kinds()


def test_an_invoice_amount_that_differs_from_the_ledger_is_found(world: World) -> None:
    invoice = world.billing.invoices()[-1]
    with world.db.transaction() as tx:
        tx.session.execute(
            update(Invoice)
            .where(Invoice.id == invoice.id)
            .values(
                subtotal_minor=Invoice.subtotal_minor + 100,
                total_minor=Invoice.total_minor + 100,
                amount_due_minor=Invoice.amount_due_minor + 100,
            )
        )
    world.reconcile(DAY)
    found = [d for d in world.open_discrepancies() if d.kind == DiscrepancyKind.INVOICE_LEDGER]
    assert len(found) == 1
    assert found[0].objects["invoice_id"] == invoice.id
    assert found[0].actual_minor is not None and found[0].expected_minor is not None
    assert found[0].expected_minor - found[0].actual_minor == 100


def test_late_usage_lost_before_billing_is_an_invoice_usage_discrepancy(world: World) -> None:
    world.billing.usage("tokens", 50, utc(2026, 11, 25, 12))  # late: the month is invoiced
    with world.db.transaction() as tx:
        # A bug marks the late event billed without billing it.
        tx.session.execute(update(LateEvent).values(billed_at=tx.now(), billed_ref="lost"))
    world.reconcile(DAY)
    found = [d for d in world.open_discrepancies() if d.kind == DiscrepancyKind.INVOICE_USAGE]
    assert len(found) == 1
    assert (found[0].expected_quantity, found[0].actual_quantity) == (2050, 2000)
    assert DiscrepancyKind.ROLLUP_EVENTS not in world.open_kinds()


def test_late_usage_waiting_for_the_next_invoice_is_not_a_discrepancy(world: World) -> None:
    world.billing.usage("tokens", 50, utc(2026, 11, 25, 12))
    world.reconcile(DAY)
    assert world.open_kinds() == set()


def test_a_tampered_rollup_is_found_against_raw_events(world: World) -> None:
    with world.db.transaction() as tx:
        row = tx.session.scalars(select(Rollup).limit(1)).one()
        row.quantity = row.quantity + 7
    world.reconcile(DAY)
    found = [d for d in world.open_discrepancies() if d.kind == DiscrepancyKind.ROLLUP_EVENTS]
    assert len(found) == 1
    assert (found[0].expected_quantity, found[0].actual_quantity) == (2000, 2007)


def _provider_event(tx, intent_id: str, amount_minor: int, n: int) -> WebhookEvent:  # type: ignore[no-untyped-def]
    """A stored Stripe event about a PaymentIntent (what the inbox keeps)."""
    obj = {
        "id": intent_id,
        "object": "payment_intent",
        "status": "succeeded",
        "amount": amount_minor,
        "amount_received": amount_minor,
        "currency": "usd",
        "metadata": {},
    }
    event = WebhookEvent(
        event_id=f"evt_planted_{n}",
        provider="stripe",
        type="payment_intent.succeeded",
        object_type="payment_intent",
        object_id=intent_id,
        provider_created_at=tx.now(),
        payload={
            "id": f"evt_planted_{n}",
            "type": "payment_intent.succeeded",
            "data": {"object": obj},
        },
        status="processed",
        attempts=1,
        next_attempt_at=tx.now(),
        received_at=tx.now(),
    )
    tx.session.add(event)
    return event


def test_payments_that_differ_from_the_provider_are_found_on_either_side(world: World) -> None:
    with world.db.transaction() as tx:
        ours = tx.session.scalars(
            select(Payment).where(Payment.status == "succeeded").order_by(Payment.id)
        ).first()
        assert ours is not None and ours.provider_payment_id
        # The provider says it received less than we booked, and holds a payment we never made.
        _provider_event(tx, ours.provider_payment_id, ours.amount_minor - 100, 1)
        _provider_event(tx, "pi_made_in_the_dashboard", 4200, 2)
    world.reconcile(DAY)
    found = [d for d in world.open_discrepancies() if d.kind == DiscrepancyKind.PAYMENT_PROVIDER]
    problems = {
        (d.objects["problem"], d.objects.get("payment_id") or d.objects.get("object_id"))
        for d in found
    }
    assert ("missing_here", "pi_made_in_the_dashboard") in problems
    assert ("amount", ours.id) in problems


def test_an_invoice_whose_status_disagrees_with_its_collection_is_found(world: World) -> None:
    with world.db.transaction() as tx:
        invoice = tx.session.scalars(select(Invoice).where(Invoice.kind == "cycle")).one()
        invoice.status = "open"
    world.reconcile(DAY)
    problems = {
        d.objects["problem"]
        for d in world.open_discrepancies()
        if d.kind == DiscrepancyKind.PAYMENT_PROVIDER
    }
    assert problems == {"status"}


def test_money_left_in_the_clearing_account_is_found(world: World) -> None:
    with world.db.transaction() as tx:
        clearing = ledger.open_account(tx, chart.spec(chart.STRIPE_CLEARING, "USD")).id
        bank = ledger.open_account(tx, chart.spec(chart.BANK, "USD")).id
        result = ledger.create_transfer(
            tx,
            TransferRequest(
                id="test:payout-failed-unbooked",
                legs=[
                    Leg.debit(clearing, Money(50_000, "USD")),
                    Leg.credit(bank, Money(50_000, "USD")),
                ],
                reason_code="test.plant",
            ),
        )
        assert result.status == "created", result
    world.reconcile(DAY)
    found = [d for d in world.open_discrepancies() if d.kind == DiscrepancyKind.CLEARING_BALANCE]
    assert len(found) == 1 and found[0].currency == "USD"
    assert found[0].actual_minor is not None and found[0].expected_minor is not None
    assert found[0].actual_minor - found[0].expected_minor == 50_000


def test_in_flight_money_is_tolerated_then_must_be_paid_out(world: World) -> None:
    world.reconcile(DAY)
    assert DiscrepancyKind.CLEARING_BALANCE not in world.open_kinds()
    later = DAY + timedelta(days=30)
    world.advance_to(utc(later.year, later.month, later.day, 1))
    world.reconcile(later)
    assert DiscrepancyKind.CLEARING_BALANCE in world.open_kinds()


def test_a_discrepancy_fixed_before_the_next_run_is_resolved(world: World) -> None:
    with world.db.transaction() as tx:
        tx.session.execute(update(Invoice).where(Invoice.kind == "cycle").values(status="open"))
    first = world.reconcile(DAY)
    assert first.run.discrepancies_new >= 1
    with world.db.transaction() as tx:
        tx.session.execute(update(Invoice).where(Invoice.kind == "cycle").values(status="paid"))
    world.advance_to(utc(2026, 12, 2, 6))
    second = world.reconcile(date(2026, 12, 2))
    assert second.run.discrepancies_resolved == first.run.discrepancies_new
    assert world.open_kinds() == set()
    with world.db.read() as tx:
        everything = service.list_discrepancies(tx, open_only=False)
        assert everything and all(d.resolved_at is not None for d in everything)
        assert service.count_open(tx) == 0


def test_the_api_lists_runs_and_open_discrepancies(world: World, api) -> None:  # type: ignore[no-untyped-def]
    with world.db.transaction() as tx:
        tx.session.execute(update(Invoice).where(Invoice.kind == "cycle").values(status="open"))
    run = world.reconcile(DAY).run
    runs = api.get("/v1/reconciliation/runs").json()
    assert [r["id"] for r in runs["data"]] == [run.id]
    assert runs["data"][0]["object"] == "reconciliation_run"
    listed = api.get("/v1/reconciliation/discrepancies", params={"kind": "payment_provider"})
    assert listed.status_code == 200, listed.text
    data = listed.json()["data"]
    assert data and all(d["status"] == "open" for d in data)
    one = api.get(f"/v1/reconciliation/discrepancies/{data[0]['id']}").json()
    assert one["kind"] == "payment_provider" and one["objects"]["problem"] == "status"
    bad = api.get("/v1/reconciliation/discrepancies", params={"kind": "nonsense"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "kind"
    viewer = api.key_with("invoices:read")
    refused = api.get("/v1/reconciliation/runs", headers=api.as_key(viewer))
    assert refused.status_code == 403


def test_the_cli_runs_and_lists(world: World) -> None:
    from typer.testing import CliRunner

    from tallybook.cli.main import app
    from tests.fixtures.databases import database_url_of

    result = CliRunner().invoke(
        app, ["--database-url", database_url_of(world.db), "reconcile", "--date", "2026-12-01"]
    )
    assert result.exit_code == 0, result.output
    assert "0 found" in result.output and "0 open" in result.output
