"""The billing side of the console: the customer page's panels over real billing data, the
invoice page with its explanation down to the events, and the audited billing actions with
their roles (every refusal is a 403 and an audit entry)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

from tallybook.api.app import create_app
from tallybook.db import Database
from tallybook.grants import service as grants
from tallybook.http.edge import clear_caller_cache
from tallybook.invoicing import service as invoicing
from tallybook.kit.pagination import PageRequest
from tallybook.subscriptions import service as subscriptions
from tests.console.billing_world import BilledMonth, billed_month
from tests.console.conftest import ConsoleClient, audit_entries


@contextmanager
def console_on(db: Database) -> Iterator[ConsoleClient]:
    clear_caller_cache()
    client = ConsoleClient(create_app(db), base_url="http://testserver")
    client.db = db
    with client:
        yield client


@pytest.fixture
def month(db: Database) -> BilledMonth:
    return billed_month(db)


@dataclass(frozen=True)
class GrantFacts:
    id: str
    amount_minor: int
    currency: str | None
    source: str
    status: str
    remaining_minor: int


def _grants(db: Database, customer_id: str) -> list[GrantFacts]:
    with db.read() as tx:
        page = grants.list_views(tx, PageRequest(limit=100), customer=customer_id)
        return [
            GrantFacts(
                v.grant.id,
                v.grant.amount_minor,
                v.grant.currency,
                v.grant.source,
                v.grant.status,
                v.remaining_minor,
            )
            for v in page.data
        ]


class TestCustomerPanels:
    def test_every_panel_shows_its_domain(self, month: BilledMonth) -> None:
        invoice = month.invoice
        with console_on(month.db) as console:
            console.as_role("viewer")
            page = console.get(f"/console/customers/{month.billing.customer_id}")
        assert page.status_code == 200
        text = page.text
        assert "This panel failed to load" not in text
        assert month.billing.subscription_id in text  # subscriptions
        assert "status-active" in text
        assert invoice.number is not None and invoice.number in text  # invoices
        assert f"/console/invoices/{invoice.id}" in text
        assert "37.50 USD" in text  # 20.00 fee + 1,750 tokens at 0.01
        assert 'data-meter="tokens"' in text and "<svg" in text  # usage chart
        assert "1,750" in text  # tokens in the chart's window
        assert "No grants." in text
        # A viewer sees why there is no button.
        assert "Issue credit: needs support or finance or admin" in text
        assert "Cancel subscription: needs" in text


class TestInvoicePage:
    def test_explains_every_line_down_to_the_events(self, month: BilledMonth) -> None:
        invoice = month.invoice
        usage = next(line for line in invoice.lines if line.kind == "usage")
        with console_on(month.db) as console:
            console.as_role("viewer")
            by_number = console.get(f"/console/invoices/{invoice.number}")
            assert by_number.status_code == 200
            page = console.get(f"/console/invoices/{invoice.id}")
            assert page.status_code == 200
            text = page.text
            assert f"Invoice {invoice.number}" in text
            assert "37.50 USD" in text and "17.50 USD" in text and "20.00 USD" in text
            assert "tokens.used" in text  # the meter's event type
            assert "1,750" in text  # measured quantity
            assert "unit price" in text
            events_url = f"/console/invoices/{invoice.id}/lines/{usage.id}/events"
            assert events_url in text
            events = console.get(events_url)
            assert events.status_code == 200
            assert events.text.count("tokens.used</code>") == 3
            first = console.get(f"{events_url}?after=bad")
            assert first.status_code == 400
            document = console.get(f"/console/invoices/{invoice.id}/document")
            assert document.status_code == 200
            assert invoice.number in document.text
            assert "unsafe-inline" in document.headers["content-security-policy"]
            assert console.get("/console/invoices/in_nope").status_code == 404


class TestActions:
    def test_issue_a_credit_shows_in_the_balance_and_the_audit_log(
        self, month: BilledMonth
    ) -> None:
        customer_id = month.billing.customer_id
        with console_on(month.db) as console:
            email = console.as_role("support")
            token = "credit-token-0123456789"
            url = f"/console/customers/{customer_id}/credits"
            first = console.act(
                url, reason="outage on Nov 3", token=token, amount="25", currency="usd"
            )
            assert first.status_code == 303, first.text
            again = console.act(
                url, reason="outage on Nov 3", token=token, amount="25", currency="usd"
            )
            assert again.status_code == 303  # a double click: one grant
            page = console.get(first.headers["location"])
            assert "Issued 25.00 USD of credit" in page.text
            assert 'data-testid="credit-balance"' in page.text and "25.00 USD" in page.text
            assert "outage on Nov 3" in page.text  # the timeline keeps the reason
            audit = console.get("/console/audit?action=grant.issue_credit")
            assert email in audit.text and "outage on Nov 3" in audit.text
        issued = _grants(month.db, customer_id)
        assert [(g.amount_minor, g.currency, g.source) for g in issued] == [
            (2500, "USD", "goodwill")
        ]
        [entry] = audit_entries(month.db, action="grant.issue_credit")
        assert entry.outcome == "succeeded" and entry.customer_id == customer_id
        assert entry.details["amount"] == {"amount_minor": 2500, "currency": "USD"}

    def test_a_bad_amount_is_a_failed_entry_and_nothing_issued(self, month: BilledMonth) -> None:
        customer_id = month.billing.customer_id
        with console_on(month.db) as console:
            console.as_role("finance")
            for amount in ("abc", "-5", "1.234"):
                response = console.act(
                    f"/console/customers/{customer_id}/credits", amount=amount, currency="USD"
                )
                assert response.status_code == 303
        assert _grants(month.db, customer_id) == []
        entries = audit_entries(month.db, action="grant.issue_credit")
        assert [e.error_code for e in entries] == ["console_amount_invalid"] * 3

    def test_void_a_grant_is_for_finance(self, month: BilledMonth) -> None:
        customer_id = month.billing.customer_id
        with console_on(month.db) as console:
            console.as_role("support")
            console.act(f"/console/customers/{customer_id}/credits", amount="10", currency="USD")
            [grant] = _grants(month.db, customer_id)
            refused = console.act(f"/console/grants/{grant.id}/void", reason="mistake")
            assert refused.status_code == 403
            console.post("/console/sign-out", data={"csrf_token": console.csrf()})
            console.as_role("finance")
            done = console.act(f"/console/grants/{grant.id}/void", reason="mistake")
            assert done.status_code == 303
        [voided] = _grants(month.db, customer_id)
        assert voided.status == "voided" and voided.remaining_minor == 0
        outcomes = [e.outcome for e in audit_entries(month.db, action="grant.void")]
        assert outcomes == ["refused", "succeeded"]

    def test_void_an_invoice_support_cannot_finance_can(self, month: BilledMonth) -> None:
        invoice_id = month.invoice.id
        with console_on(month.db) as console:
            console.as_role("support")
            page = console.get(f"/console/invoices/{invoice_id}")
            assert "Void invoice: needs finance or admin" in page.text
            refused = console.act(f"/console/invoices/{invoice_id}/void", reason="wrong plan")
            assert refused.status_code == 403
            assert "console_action_refused" in refused.text or "needs" in refused.text
            console.post("/console/sign-out", data={"csrf_token": console.csrf()})
            console.as_role("finance")
            done = console.act(f"/console/invoices/{invoice_id}/void", reason="wrong plan")
            assert done.status_code == 303
            assert "Voided invoice" in console.get(done.headers["location"]).text
        with month.db.read() as tx:
            assert invoicing.get_invoice(tx, str(invoice_id)).status == "void"
        entries = audit_entries(month.db, action="invoice.void")
        assert [(e.outcome, e.role) for e in entries] == [
            ("refused", "support"),
            ("succeeded", "finance"),
        ]
        assert entries[1].customer_id == month.billing.customer_id

    def test_issue_an_adjustment_as_a_credit_note(self, month: BilledMonth) -> None:
        invoice = month.invoice
        usage = next(line for line in invoice.lines if line.kind == "usage")
        with console_on(month.db) as console:
            console.as_role("finance")
            done = console.act(
                f"/console/invoices/{invoice.id}/adjustments",
                reason="tokens double counted",
                line_id=str(usage.id),
                amount="5.00",
                credit_reason="billing_error",
            )
            assert done.status_code == 303
            page = console.get(done.headers["location"])
            assert "Credit note" in page.text and "5.00 USD" in page.text
            assert "tokens double counted" in page.text
        with month.db.read() as tx:
            after = invoicing.get_invoice(tx, str(invoice.id))
        assert after.amount_credited_minor == 500
        assert after.amount_remaining_minor == invoice.amount_remaining_minor - 500

    def test_cancel_a_subscription_at_period_end(self, month: BilledMonth) -> None:
        sub_id = month.billing.subscription_id
        with console_on(month.db) as console:
            console.as_role("viewer")
            refused = console.act(f"/console/subscriptions/{sub_id}/cancel", at="now")
            assert refused.status_code == 403
            console.post("/console/sign-out", data={"csrf_token": console.csrf()})
            console.as_role("support")
            done = console.act(
                f"/console/subscriptions/{sub_id}/cancel", at="period_end", reason="moving away"
            )
            assert done.status_code == 303
        with month.db.read() as tx:
            view = subscriptions.view(tx, sub_id)
        assert view.cancel_at_period_end and view.status == "active"
        entries = audit_entries(month.db, action="subscription.cancel")
        assert [(e.outcome, e.role) for e in entries] == [
            ("refused", "viewer"),
            ("succeeded", "support"),
        ]
