"""The action framework: reason, role from the permission table, CSRF, one effect per form
however often it is submitted, domain failures recorded, and an audit log nobody can edit."""

from __future__ import annotations

import re
import secrets
import threading
import time

import pytest
from fastapi import APIRouter, Depends
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from starlette.responses import Response

from tallybook.api.app import fastapi_of
from tallybook.console.actions import ActionForm, Done, action_form, respond, run_action
from tallybook.console.roles import PERMISSIONS, Role, may_run
from tallybook.console.web import ConsoleContext, console_router, signed_in
from tallybook.db import Database, Tx
from tallybook.kit.errors import Conflict
from tallybook.kit.money import Money
from tallybook.work import events
from tallybook.work.models import DomainEvent
from tests.console.conftest import ConsoleClient, audit_entries, make_customer, make_user

#: Seconds the test action dawdles, so that two concurrent submits overlap.
SLOW_SECONDS = 0.3


def effects(db: Database, event_type: str) -> int:
    with db.read() as tx:
        return (
            tx.session.scalar(
                select(func.count()).select_from(DomainEvent).where(DomainEvent.type == event_type)
            )
            or 0
        )


def _test_router() -> APIRouter:
    router = console_router()

    @router.post("/console/_test/customers/{customer_id}/credit")
    def issue_credit(
        customer_id: str,
        ctx: ConsoleContext = Depends(signed_in()),
        form: ActionForm = Depends(action_form),
    ) -> Response:
        amount = Money(2500, "USD")

        def perform(tx: Tx) -> Done:
            time.sleep(SLOW_SECONDS)
            events.emit(tx, "test.credit_issued", customer_id=customer_id, data={"n": 1})
            return Done(f"Issued {amount.format()}", details={"amount": amount})

        outcome = run_action(
            ctx,
            form,
            action="grant.issue_credit",
            object_type="customer",
            object_id=customer_id,
            customer_id=customer_id,
            perform=perform,
        )
        return respond(ctx, outcome, back=f"/console/customers/{customer_id}")

    @router.post("/console/_test/invoices/{invoice_id}/void")
    def void_invoice(
        invoice_id: str,
        ctx: ConsoleContext = Depends(signed_in()),
        form: ActionForm = Depends(action_form),
    ) -> Response:
        def perform(tx: Tx) -> Done:
            events.emit(tx, "test.invoice_voided", data={"invoice": invoice_id})
            return Done("voided")

        outcome = run_action(
            ctx,
            form,
            action="invoice.void",
            object_type="invoice",
            object_id=invoice_id,
            perform=perform,
        )
        return respond(ctx, outcome, back="/console")

    @router.post("/console/_test/conflict")
    def conflicting(
        ctx: ConsoleContext = Depends(signed_in()), form: ActionForm = Depends(action_form)
    ) -> Response:
        def perform(tx: Tx) -> Done:
            events.emit(tx, "test.half_done", data={})  # rolled back with the failure
            raise Conflict("grant_already_void", "this grant is already void", param="id")

        outcome = run_action(
            ctx, form, action="grant.void", object_type="grant", object_id="gr_1", perform=perform
        )
        return respond(ctx, outcome, back="/console")

    @router.post("/console/_test/crash")
    def crashing(
        ctx: ConsoleContext = Depends(signed_in()), form: ActionForm = Depends(action_form)
    ) -> Response:
        def perform(tx: Tx) -> Done:
            raise RuntimeError("bug")

        outcome = run_action(
            ctx,
            form,
            action="payment.retry",
            object_type="payment",
            object_id="pay_1",
            perform=perform,
        )
        return respond(ctx, outcome, back="/console")

    return router


@pytest.fixture
def client(console: ConsoleClient) -> ConsoleClient:
    fastapi_of(console.app).include_router(_test_router())
    return console


class TestPermissionTable:
    def test_support_may_issue_credits_but_not_void_invoices(self) -> None:
        assert may_run(Role.SUPPORT, "grant.issue_credit")
        assert not may_run(Role.SUPPORT, "invoice.void")
        assert may_run(Role.FINANCE, "invoice.void")

    def test_the_documented_table_matches_the_code(self) -> None:
        from pathlib import Path

        doc = (Path(__file__).resolve().parents[2] / "docs" / "console.md").read_text()
        documented = {
            action: {role.strip() for role in roles.split(",")}
            for action, roles in re.findall(
                r"^\| `([a-z_]+\.[a-z_]+)` \| ([a-z, ]+) \|$", doc, re.MULTILINE
            )
        }
        assert documented == {
            action: {role.value for role in roles} for action, roles in PERMISSIONS.items()
        }

    def test_viewers_run_nothing_and_unknown_actions_are_denied(self) -> None:
        assert not any(may_run(Role.VIEWER, action) for action in PERMISSIONS)
        assert not may_run(Role.ADMIN, "invoice.delete_everything")


class TestRefusals:
    def test_a_viewer_cannot_issue_credits_and_each_refusal_is_logged(
        self, client: ConsoleClient
    ) -> None:
        customer = make_customer(client.db)
        client.as_role("viewer")
        for _ in range(2):
            response = client.act(f"/console/_test/customers/{customer.id}/credit")
            assert response.status_code == 403
            assert "needs the support or finance or admin role" in response.text
        assert effects(client.db, "test.credit_issued") == 0
        refused = audit_entries(client.db, action="grant.issue_credit")
        assert [(e.outcome, e.error_code, e.role) for e in refused] == [
            ("refused", "console_action_refused", "viewer")
        ] * 2
        assert refused[0].customer_id == customer.id

    def test_a_support_user_cannot_void_an_invoice(self, client: ConsoleClient) -> None:
        client.as_role("support")
        response = client.act("/console/_test/invoices/in_1/void", reason="duplicate")
        assert response.status_code == 403
        assert effects(client.db, "test.invoice_voided") == 0
        [entry] = audit_entries(client.db, action="invoice.void")
        assert (entry.outcome, entry.role, entry.reason) == ("refused", "support", "duplicate")

    @pytest.mark.parametrize(
        ("role", "allowed"),
        [("viewer", False), ("support", False), ("finance", False), ("admin", True)],
    )
    def test_every_role_on_an_admin_action(
        self, console: ConsoleClient, role: str, allowed: bool
    ) -> None:
        from tallybook.webhooks import service

        with console.db.transaction() as tx:
            endpoint = service.create_endpoint(tx, service.EndpointInput(url="https://x.test/h"))
            service.disable_endpoint(tx, endpoint.id, reason="410 Gone", by="failures")
        console.as_role(role)
        response = console.act(f"/console/webhooks/{endpoint.id}/enable")
        assert response.status_code == (303 if allowed else 403)
        [entry] = audit_entries(console.db, action="webhook_endpoint.enable")
        assert entry.outcome == ("succeeded" if allowed else "refused")

    def test_missing_or_wrong_csrf_token_is_refused_and_logged(self, client: ConsoleClient) -> None:
        customer = make_customer(client.db)
        client.as_role("finance")
        for csrf in ("", "forged"):
            response = client.act(f"/console/_test/customers/{customer.id}/credit", csrf=csrf)
            assert response.status_code == 403
        assert effects(client.db, "test.credit_issued") == 0
        entries = audit_entries(client.db, action="grant.issue_credit")
        assert [(e.outcome, e.error_code) for e in entries] == [
            ("refused", "console_csrf_invalid")
        ] * 2

    def test_a_reason_is_required(self, client: ConsoleClient) -> None:
        customer = make_customer(client.db)
        client.as_role("support")
        response = client.act(f"/console/_test/customers/{customer.id}/credit", reason="   ")
        assert response.status_code == 400
        assert "give a reason" in response.text
        assert effects(client.db, "test.credit_issued") == 0
        assert audit_entries(client.db, action="grant.issue_credit") == []

    def test_signed_out_posts_go_to_sign_in(self, client: ConsoleClient) -> None:
        response = client.act("/console/_test/invoices/in_1/void", csrf="x")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/sign-in")


class TestOneEffect:
    def test_double_submit_does_it_once(self, client: ConsoleClient) -> None:
        customer = make_customer(client.db)
        email = client.as_role("support")
        token = secrets.token_urlsafe(18)
        first = client.act(f"/console/_test/customers/{customer.id}/credit", token=token)
        second = client.act(f"/console/_test/customers/{customer.id}/credit", token=token)
        assert first.status_code == second.status_code == 303
        assert first.headers["location"] == second.headers["location"]
        assert effects(client.db, "test.credit_issued") == 1
        [entry] = audit_entries(client.db, action="grant.issue_credit")
        assert (entry.actor_name, entry.role, entry.outcome) == (email, "support", "succeeded")
        assert entry.reason == "customer asked"
        assert entry.details == {"amount": {"amount_minor": 2500, "currency": "USD"}}
        assert entry.customer_id == customer.id
        assert entry.request_id and entry.request_id.startswith("req_")
        page = client.get(first.headers["location"])
        assert "Issued 25.00 USD" in page.text

    @pytest.mark.pg_only
    def test_concurrent_double_submit_does_it_once(self, pg_db: Database) -> None:
        from tallybook.api.app import create_app

        app = create_app(pg_db)
        fastapi_of(app).include_router(_test_router())
        customer = make_customer(pg_db)
        email = make_user(pg_db, "finance")
        clients = [ConsoleClient(app, base_url="http://testserver") for _ in range(2)]
        clients[0].db = pg_db
        clients[0].sign_in(email)
        csrf = clients[0].csrf()
        clients[1].cookies = clients[0].cookies  # the same browser, two clicks
        token = secrets.token_urlsafe(18)
        results: list[str] = []

        def click(client: ConsoleClient) -> None:
            response = client.act(
                f"/console/_test/customers/{customer.id}/credit", csrf=csrf, token=token
            )
            results.append(response.headers["location"])

        threads = [threading.Thread(target=click, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results) == 2 and results[0] == results[1]
        assert effects(pg_db, "test.credit_issued") == 1
        assert len(audit_entries(pg_db, action="grant.issue_credit")) == 1


class TestTokens:
    def test_a_token_reused_for_another_action_is_refused(self, client: ConsoleClient) -> None:
        customer = make_customer(client.db)
        client.as_role("finance")
        token = secrets.token_urlsafe(18)
        client.act(f"/console/_test/customers/{customer.id}/credit", token=token)
        other = client.act("/console/_test/invoices/in_1/void", token=token)
        assert other.status_code == 409
        assert "console_action_token_reused" in other.text
        assert effects(client.db, "test.invoice_voided") == 0
        assert audit_entries(client.db, action="invoice.void") == []

    def test_a_malformed_token_is_refused(self, client: ConsoleClient) -> None:
        client.as_role("finance")
        response = client.act("/console/_test/invoices/in_1/void", token="short")
        assert response.status_code == 400
        assert "console_action_token_invalid" in response.text


class TestFailures:
    def test_a_domain_error_rolls_back_and_is_recorded(self, client: ConsoleClient) -> None:
        client.as_role("finance")
        response = client.act("/console/_test/conflict", reason="customer disputes")
        assert response.status_code == 303
        assert effects(client.db, "test.half_done") == 0
        [entry] = audit_entries(client.db, action="grant.void")
        assert (entry.outcome, entry.error_code) == ("failed", "grant_already_void")
        page = client.get(response.headers["location"])
        assert "this grant is already void" in page.text

    def test_a_crash_changes_nothing_and_is_still_recorded(self, client: ConsoleClient) -> None:
        client.as_role("support")
        response = client.act("/console/_test/crash")
        assert response.status_code == 500
        [entry] = audit_entries(client.db, action="payment.retry")
        assert (entry.outcome, entry.error_code, entry.action_token) == (
            "failed",
            "internal_error",
            None,
        )


class TestAppendOnly:
    def test_the_database_refuses_updates_and_deletes(self, client: ConsoleClient) -> None:
        client.as_role("viewer")
        client.act("/console/_test/invoices/in_1/void")  # refused, so recorded
        for statement in (
            "UPDATE console_audit_log SET outcome = 'succeeded'",
            "UPDATE console_audit_log SET reason = 'nothing to see'",
            "DELETE FROM console_audit_log",
        ):
            with pytest.raises(DBAPIError, match="append-only"):
                with client.db.engine.begin() as conn:
                    conn.execute(text(statement))
        assert [e.outcome for e in audit_entries(client.db, action="invoice.void")] == ["refused"]
