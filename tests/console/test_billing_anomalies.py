"""The billing anomaly pages (dead letters with replay, failed payments with retry, metering
lag) and the role rule for every billing action: without the right role, a 403 and an entry."""

from __future__ import annotations

import pytest

from tallybook.console.roles import PERMISSIONS, Role, may_run
from tallybook.db import Database
from tallybook.kit.clock import isoformat_z
from tallybook.metering import service as metering
from tests.console.billing_world import billed_month
from tests.console.conftest import audit_entries, make_customer
from tests.console.test_billing import console_on
from tests.payments.conftest import make_world
from tests.payments.scripted import DECLINE, SUCCEED, ScriptedProvider, scripted_context


def _send_unknown_customer_event(db: Database, subject: str) -> None:
    with db.transaction(actor="test") as tx:
        result = metering.ingest_events(
            tx,
            [
                {
                    "specversion": "1.0",
                    "id": f"ev-{subject}",
                    "source": "test",
                    "type": "tokens.used",
                    "subject": subject,
                    "time": isoformat_z(tx.now()),
                    "data": {"value": "7"},
                }
            ],
        )
    assert result.outcomes[0].status == "rejected"


def test_dead_letters_are_listed_and_replayed(db: Database) -> None:
    month = billed_month(db)
    _send_unknown_customer_event(month.db, "newcomer")
    with console_on(month.db) as console:
        console.as_role("support")
        index = console.get("/console/anomalies")
        assert "Dead-lettered events" in index.text
        page = console.get("/console/anomalies/dead-letters")
        assert page.status_code == 200
        assert "ev-newcomer" in page.text and "customer_not_found" in page.text
        with month.db.read() as tx:
            [letter] = metering.list_dead_letters(tx).data
            letter_id = letter.id
        still = console.act(f"/console/dead-letters/{letter_id}/replay", reason="retry")
        assert still.status_code == 303
        assert "still rejected" in console.get(still.headers["location"]).text
        make_customer(month.db, external_id="newcomer")
        done = console.act(f"/console/dead-letters/{letter_id}/replay", reason="customer created")
        assert "accepted" in console.get(done.headers["location"]).text
        after = console.get("/console/anomalies/dead-letters")
        assert "ev-newcomer" not in after.text
    outcomes = [
        e.details.get("outcome") for e in audit_entries(month.db, action="dead_letter.replay")
    ]
    assert outcomes == ["rejected", "accepted"]


def test_metering_lag_page(db: Database) -> None:
    month = billed_month(db)
    with console_on(month.db) as console:
        console.as_role("viewer")
        page = console.get("/console/anomalies/metering-lag")
    assert page.status_code == 200
    assert 'data-testid="metering-status"' in page.text
    assert "every meter&#39;s usage is complete" in page.text or "every meter's usage" in page.text


def test_failed_payments_are_listed_and_retried(db: Database) -> None:
    provider = ScriptedProvider(script=[DECLINE, SUCCEED])
    world = make_world(db, scripted_context(provider))
    world.relay()
    collection = world.collection()
    assert collection.status == "retrying"
    with console_on(world.db) as console:
        console.as_role("support")
        page = console.get("/console/anomalies/failed-payments")
        assert page.status_code == 200
        assert world.customer_id in page.text and "retrying" in page.text
        customer = console.get(f"/console/customers/{world.customer_id}")
        assert f"/console/collections/{collection.id}/retry" in customer.text
        done = console.act(f"/console/collections/{collection.id}/retry", reason="new card")
        assert done.status_code == 303
        assert "Payment attempt" in console.get(done.headers["location"]).text
    [entry] = audit_entries(world.db, action="payment.retry")
    assert entry.outcome == "succeeded" and entry.customer_id == world.customer_id
    assert len(world.payments()) == 2


#: Every billing action's form URL, with the ids filled from a billed month.
def _action_urls(db: Database) -> dict[str, tuple[str, dict[str, str]]]:
    month = billed_month(db)
    invoice_id = str(month.invoice.id)
    return {
        "grant.issue_credit": (
            f"/console/customers/{month.billing.customer_id}/credits",
            {"amount": "5", "currency": "USD"},
        ),
        "grant.void": ("/console/grants/grt_unknown/void", {}),
        "invoice.issue_adjustment": (f"/console/invoices/{invoice_id}/adjustments", {}),
        "invoice.void": (f"/console/invoices/{invoice_id}/void", {}),
        "payment.retry": (f"/console/collections/{invoice_id}/retry", {}),
        "subscription.cancel": (
            f"/console/subscriptions/{month.billing.subscription_id}/cancel",
            {"at": "now"},
        ),
        "dead_letter.replay": ("/console/dead-letters/dl_unknown/replay", {}),
    }


@pytest.mark.parametrize("role", ["viewer", "support"])
def test_every_billing_action_without_the_role_is_refused_and_logged(
    db: Database, role: str
) -> None:
    urls = _action_urls(db)
    refused = [action for action in urls if not may_run(Role(role), action)]
    assert refused, "each role tested lacks at least one action"
    with console_on(db) as console:
        console.as_role(role)
        for action in refused:
            url, extra = urls[action]
            response = console.act(url, reason="trying", **extra)
            assert response.status_code == 403, (action, response.status_code)
    for action in refused:
        entries = audit_entries(db, action=action)
        assert [(e.outcome, e.role, e.error_code) for e in entries] == [
            ("refused", role, "console_action_refused")
        ], action
    assert set(urls) | {
        "webhook_endpoint.enable",
        "webhook_delivery.retry",
        "console_user.set_role",
        "console_user.disable",
        "console_user.enable",
    } == set(PERMISSIONS)
