"""The pages: search, the customer page (details, panels, timeline), anomalies, webhooks, the
audit log and users; each renders on both backends and says what a person needs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import pytest

from tallybook.console import anomalies, panels
from tallybook.console.panels import Panel
from tallybook.customers.models import Customer
from tallybook.db import Database, Tx
from tallybook.kit.clock import TestClock
from tallybook.webhooks import service as webhooks
from tallybook.webhooks.models import WebhookDelivery
from tallybook.work import events
from tests.console.conftest import ConsoleClient, audit_entries, make_customer, make_user


def plant_failed_webhook(db: Database) -> tuple[str, str]:
    """An endpoint disabled by failures with one delivery that gave up."""
    with db.transaction(actor="test") as tx:
        endpoint = webhooks.create_endpoint(
            tx, webhooks.EndpointInput(url="https://hooks.example.com/billing")
        )
        event_id = events.emit(tx, "invoice.finalized", customer_id="cus_x", data={"n": 1})
        delivery = WebhookDelivery(
            id="whd_01TEST0000000000000000000",
            endpoint_id=endpoint.id,
            event_id=event_id,
            event_type="invoice.finalized",
            status="failed",
            attempts=10,
            next_attempt_at=tx.now(),
            last_status_code=500,
            last_error="HTTP 500",
            created_at=tx.now(),
        )
        tx.session.add(delivery)
        webhooks.disable_endpoint(
            tx, endpoint.id, reason="gave up after 10 attempts", by="failures"
        )
    anomalies.forget_badges()
    return endpoint.id, delivery.id


class TestSearch:
    def test_find_by_name_email_external_id_and_id(self, console: ConsoleClient) -> None:
        acme = make_customer(
            console.db, name="Acme Corp", email="billing@acme.test", external_id="org_acme"
        )
        make_customer(console.db, name="Acme Labs", email="ap@acmelabs.test")
        make_customer(console.db, name="Globex", email="billing@globex.test")
        console.as_role("viewer")
        page = console.get("/console/customers?q=acme")
        assert page.status_code == 200
        assert "2 matches" in page.text
        assert "Acme Corp" in page.text and "Acme Labs" in page.text
        assert "Globex" not in page.text
        for text in (acme.id, "org_acme", "billing@acme.test"):
            found = console.get(f"/console/customers?q={text}", follow_redirects=False)
            assert found.status_code == 303, text
            assert found.headers["location"] == f"/console/customers/{acme.id}"
        assert "0 matches" in console.get("/console/customers?q=nobody").text

    def test_results_sort_and_page_through_the_url(self, console: ConsoleClient) -> None:
        for n in range(30):
            make_customer(console.db, name=f"Tenant {n:02d}")
        console.as_role("viewer")
        first = console.get("/console/customers?q=tenant&sort=name&dir=asc")
        names = re.findall(r">(Tenant \d\d)<", first.text)
        assert names == [f"Tenant {n:02d}" for n in range(25)]
        assert "1–25 of 30" in first.text
        second = console.get("/console/customers?q=tenant&sort=name&dir=asc&page=2")
        assert re.findall(r">(Tenant \d\d)<", second.text) == [
            f"Tenant {n:02d}" for n in range(25, 30)
        ]
        descending = console.get("/console/customers?q=tenant&sort=name&dir=desc")
        assert re.findall(r">(Tenant \d\d)<", descending.text)[0] == "Tenant 29"

    def test_browse_newest_customers(self, console: ConsoleClient) -> None:
        make_customer(console.db, name="Initech")
        console.as_role("viewer")
        assert "Initech" in console.get("/console/customers").text


class TestCustomerPage:
    def test_details_slots_and_timeline(self, console: ConsoleClient) -> None:
        customer = make_customer(
            console.db,
            name="Acme Corp",
            email="billing@acme.test",
            metadata={"plan_hint": "enterprise"},
        )
        console.as_role("support")
        page = console.get(f"/console/customers/{customer.id}")
        assert page.status_code == 200
        assert "Acme Corp" in page.text and customer.external_id in page.text
        for key in ("subscriptions", "entitlements", "grants", "payments", "usage", "invoices"):
            assert f'data-panel="{key}"' in page.text
        assert "No invoices." in page.text and "No grants." in page.text
        assert "customer.created" in page.text  # the timeline
        assert "plan_hint" in page.text
        by_external_id = console.get(f"/console/customers/{customer.external_id}")
        assert by_external_id.status_code == 200

    def test_unknown_customer_is_a_404_page(self, console: ConsoleClient) -> None:
        console.as_role("viewer")
        page = console.get("/console/customers/cus_nope")
        assert page.status_code == 404
        assert "No such customer" in page.text
        assert page.headers["content-type"].startswith("text/html")

    def test_a_panel_is_one_function_and_one_template(
        self, console: ConsoleClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from tallybook.kit.money import Money

        def invoices(tx: Tx, customer: Customer) -> Mapping[str, Any]:
            return {"total": Money(123456789, "USD"), "refund": Money(-500, "EUR")}

        def broken(tx: Tx, customer: Customer) -> Mapping[str, Any]:
            raise RuntimeError("bug in a panel")

        originals = panels.customer_panels()

        def with_panels() -> list[Panel]:
            built = {
                "invoices": Panel(
                    "invoices",
                    "Invoices",
                    context=invoices,
                    template="panels/_example.html",
                    wide=True,
                ),
                "grants": Panel(
                    "grants", "Grants", context=broken, template="panels/_example.html"
                ),
                "payments": Panel(
                    "payments",
                    "Payments",
                    context=invoices,
                    template="panels/_example.html",
                    role=panels.Role.FINANCE,
                ),
            }
            return [built.get(p.key, p) for p in originals]

        monkeypatch.setattr(panels, "customer_panels", with_panels)
        customer = make_customer(console.db)
        console.as_role("support")
        page = console.get(f"/console/customers/{customer.id}")
        assert page.status_code == 200
        assert "1,234,567.89 USD" in page.text
        assert '<span class="money neg">-5.00 EUR</span>' in page.text
        assert "This panel failed to load." in page.text  # the rest still renders
        assert 'data-panel="payments"' not in page.text  # finance only
        assert "customer.created" in page.text


class TestTimeline:
    def test_events_and_console_actions_newest_first_with_paging(
        self, console: ConsoleClient, clock: TestClock
    ) -> None:
        customer = make_customer(console.db, name="Acme")
        for n in range(60):
            with console.db.transaction(actor="key_test") as tx:
                events.emit(tx, "usage.threshold_crossed", customer_id=customer.id, data={"n": n})
            clock.advance(minutes=1)
        console.as_role("viewer")
        first = console.get(f"/console/customers/{customer.id}/timeline")
        numbers = [int(n) for n in re.findall(r"n: (\d+)", first.text)]
        assert numbers == list(range(59, 9, -1))
        older = re.search(r'href="\?before=([0-9A-Z]{26})"', first.text)
        assert older
        second = console.get(f"/console/customers/{customer.id}/timeline?before={older.group(1)}")
        assert [int(n) for n in re.findall(r"n: (\d+)", second.text)] == list(range(9, -1, -1))
        assert "customer.created" in second.text
        only = console.get(f"/console/customers/{customer.id}/timeline?type=customer.created")
        assert "customer.created" in only.text and "usage.threshold_crossed" not in only.text

    def test_console_actions_show_with_their_reason(self, console: ConsoleClient) -> None:
        customer = make_customer(console.db)
        console.as_role("viewer")
        from tallybook.api.app import fastapi_of
        from tests.console.test_actions import _test_router

        fastapi_of(console.app).include_router(_test_router())
        console.act(f"/console/_test/customers/{customer.id}/credit", reason="goodwill")
        page = console.get(f"/console/customers/{customer.id}")
        assert "grant.issue_credit" in page.text and "goodwill" in page.text
        assert "refused" in page.text


class TestAnomalies:
    def test_failed_webhooks_page_and_badges(self, console: ConsoleClient) -> None:
        console.as_role("viewer")
        assert 'data-testid="anomaly-total"' not in console.get("/console").text
        endpoint_id, delivery_id = plant_failed_webhook(console.db)
        home = console.get("/console")
        assert 'data-testid="anomaly-total">1<' in home.text
        page = console.get("/console/anomalies/failed-webhooks")
        assert page.status_code == 200
        assert "https://hooks.example.com/billing" in page.text
        assert "gave up after 10 attempts" in page.text
        assert "HTTP 500" in page.text
        assert "<svg" in page.text  # failures by day
        assert "needs admin" in page.text  # a viewer sees why there is no button
        index = console.get("/console/anomalies")
        for title in (
            "Reconciliation discrepancies",
            "Dead-lettered events",
            "Failed payments",
            "Metering lag",
        ):
            assert title in index.text
        lag = console.get("/console/anomalies/metering-lag")
        assert 'data-testid="metering-status"' in lag.text
        assert console.get("/console/anomalies/nope").status_code == 404

    def test_retry_a_failed_delivery(self, console: ConsoleClient) -> None:
        _, delivery_id = plant_failed_webhook(console.db)
        console.as_role("support")
        response = console.act(
            f"/console/webhook-deliveries/{delivery_id}/retry", reason="receiver fixed"
        )
        assert response.status_code == 303
        with console.db.read() as tx:
            assert webhooks.get_delivery(tx, delivery_id).status == "pending"
        assert "queued again" in console.get(response.headers["location"]).text


class TestWebhooks:
    def test_admin_re_enables_with_a_reason_and_it_is_audited(self, console: ConsoleClient) -> None:
        endpoint_id, _ = plant_failed_webhook(console.db)
        email = console.as_role("admin")
        listing = console.get("/console/webhooks")
        assert "https://hooks.example.com/billing" in listing.text
        assert "Re-enable" in listing.text
        response = console.act(
            f"/console/webhooks/{endpoint_id}/enable",
            reason="receiver deployed a fix",
            back="/console/webhooks",
        )
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/webhooks?done=aud_")
        shown = console.get(response.headers["location"])
        assert "Re-enabled https://hooks.example.com/billing" in shown.text
        with console.db.read() as tx:
            assert webhooks.get_endpoint(tx, endpoint_id).status == "enabled"
        [entry] = audit_entries(console.db, action="webhook_endpoint.enable")
        assert entry.actor_name == email and entry.reason == "receiver deployed a fix"
        assert entry.details["previous"]["disabled_by"] == "failures"
        log = console.get(f"/console/audit?object={endpoint_id}")
        assert "receiver deployed a fix" in log.text
        detail = console.get(f"/console/webhooks/{endpoint_id}")
        assert "invoice.finalized" in detail.text

    def test_back_cannot_leave_the_console(self, console: ConsoleClient) -> None:
        endpoint_id, _ = plant_failed_webhook(console.db)
        console.as_role("admin")
        response = console.act(
            f"/console/webhooks/{endpoint_id}/enable", back="https://evil.example/"
        )
        assert response.headers["location"].startswith("/console?done=")


class TestAuditPage:
    def test_filter_sort_and_page(self, console: ConsoleClient) -> None:
        endpoint_id, _ = plant_failed_webhook(console.db)
        viewer = make_user(console.db, "viewer", email="vera@example.com")
        console.sign_in(viewer)
        for n in range(3):
            console.act(f"/console/webhooks/{endpoint_id}/enable", reason=f"try {n}")
        console.post("/console/sign-out", data={"csrf_token": console.csrf()})
        admin = console.as_role("admin")
        console.act(f"/console/webhooks/{endpoint_id}/enable", reason="fixed")
        page = console.get("/console/audit?action=webhook_endpoint.enable")
        rows = re.findall(r'data-entry="(aud_[0-9A-Z]+)"', page.text)
        assert len(rows) == 4
        assert page.text.index("fixed") < page.text.index("try 2") < page.text.index("try 0")
        refused = console.get("/console/audit?outcome=refused")
        assert refused.text.count('class="status status-refused"') == 3
        by_actor = console.get(
            "/console/audit?actor=vera@example.com&action=webhook_endpoint.enable"
        )
        assert len(re.findall(r'data-entry="', by_actor.text)) == 3
        ascending = console.get("/console/audit?action=webhook_endpoint.enable&sort=time&dir=asc")
        assert ascending.text.index("try 0") < ascending.text.index("fixed")
        by_name = console.get("/console/audit?sort=actor&dir=asc")
        assert by_name.text.index(admin) < by_name.text.index("vera@example.com")
        assert "Next ›" not in page.text


class TestUsersPage:
    def test_admin_changes_a_role_and_cannot_lock_themselves_out(
        self, console: ConsoleClient
    ) -> None:
        from tallybook.console import users

        target = make_user(console.db, "viewer", email="sam@example.com")
        console.as_role("admin")
        with console.db.read() as tx:
            target_id = users.get_by_email(tx, target).id
        assert "sam@example.com" in console.get("/console/users").text
        response = console.act(
            f"/console/users/{target_id}/role", role="support", reason="joined support"
        )
        assert response.status_code == 303
        with console.db.read() as tx:
            assert users.get_by_email(tx, target).role == "support"
        [entry] = audit_entries(console.db, action="console_user.set_role")
        assert entry.details == {
            "role": "support",
            "email": target,
            "from": "viewer",
            "to": "support",
        }
        me = audit_entries(console.db, action="console.sign_in")[-1].actor
        myself = console.act(f"/console/users/{me}/disable", reason="oops")
        assert "cannot disable yourself" in console.get(myself.headers["location"]).text

    def test_only_admins_see_users(self, console: ConsoleClient) -> None:
        console.as_role("finance")
        page = console.get("/console/users")
        assert page.status_code == 403
        assert "needs the admin role" in page.text


class TestChrome:
    def test_security_headers_static_files_and_404(self, console: ConsoleClient) -> None:
        console.as_role("viewer")
        page = console.get("/console")
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["cache-control"] == "no-store"
        css = re.search(r'href="(/console/static/console\.css\?v=[0-9a-f]+)"', page.text)
        assert css
        static = console.get(css.group(1))
        assert static.status_code == 200
        assert "immutable" in static.headers["cache-control"]
        assert console.get("/console/static/nope.css").status_code == 404
        missing = console.get("/console/no/such/page")
        assert missing.status_code == 404 and "No console page" in missing.text


#: The billing panels' own reads for a customer without billing data (subscriptions,
#: entitlements, grants, payments, the meters probed for usage, invoices).
PANEL_READS_MAX = 20


class TestQueryCounts:
    def test_the_customer_page_costs_the_same_whatever_the_timeline_holds(
        self, console: ConsoleClient
    ) -> None:
        """No query per timeline row or per actor (the page must stay fast for big customers)."""
        from sqlalchemy import event

        from tallybook.console import users

        quiet, busy = make_customer(console.db), make_customer(console.db)
        actors = [make_user(console.db, "support") for _ in range(5)]
        with console.db.read() as tx:
            actor_ids = [users.get_by_email(tx, email).id for email in actors]
        with console.db.transaction(actor=actor_ids[0]) as tx:
            events.emit(tx, "customer.noted", customer_id=quiet.id, data={"n": 0})
        for n in range(40):
            with console.db.transaction(actor=actor_ids[n % 5]) as tx:
                events.emit(tx, "customer.noted", customer_id=busy.id, data={"n": n})
        console.as_role("viewer")
        statements: list[str] = []

        def count(*args: Any) -> None:
            statements.append(str(args[2]))

        engines = {console.db.engine, console.db.read_engine}
        counts = []
        for customer in (quiet, busy):
            console.get(f"/console/customers/{customer.id}")  # warm the badge cache
            statements.clear()
            for engine in engines:
                event.listen(engine, "before_cursor_execute", count)
            try:
                assert console.get(f"/console/customers/{customer.id}").status_code == 200
            finally:
                for engine in engines:
                    event.remove(engine, "before_cursor_execute", count)
            counts.append(len([s for s in statements if s.lstrip().upper().startswith("SELECT")]))
        assert counts[0] == counts[1], statements
        assert counts[1] <= 8 + PANEL_READS_MAX, counts
