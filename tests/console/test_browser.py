"""The console's main journeys in a real browser (Chromium, headless) against a real
``tallybook serve``: find a customer and read their timeline; re-enable a failed webhook
endpoint with a reason and find it in the audit log; a viewer is refused."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tallybook.db import Database
from tallybook.webhooks import service as webhooks
from tests.console.conftest import PASSWORD, audit_entries, make_customer, make_user
from tests.console.test_pages import plant_failed_webhook

pytestmark = pytest.mark.browser


def sign_in(page: Any, email: str) -> None:
    page.goto("/console")
    assert "/console/sign-in" in page.url
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in", exact=True).click()
    page.wait_for_url(re.compile(r".*/console$"))


def test_find_a_customer_and_open_their_page(page: Any, db: Database) -> None:
    acme = make_customer(db, name="Acme Corp", email="billing@acme.test", external_id="org_acme")
    make_customer(db, name="Acme Labs", email="ap@acmelabs.test")
    make_customer(db, name="Globex", email="billing@globex.test")
    email = make_user(db, "support", name="Sam Support")
    shot = page.shots

    page.goto("/console")
    shot("sign-in")
    sign_in(page, email)
    shot("overview")

    search = page.get_by_role("searchbox", name="Find a customer").first
    search.fill("acme")
    search.press("Enter")
    page.wait_for_url(re.compile(r".*/console/customers\?q=acme"))
    results = page.get_by_test_id("search-results")
    assert results.get_by_role("link", name="Acme Corp").is_visible()
    assert results.get_by_role("link", name="Acme Labs").is_visible()
    assert "Globex" not in results.inner_text()
    shot("search-results")

    # Sort by name, descending, through the column header (a shareable URL).
    results.get_by_role("link", name="Name").click()
    page.wait_for_url(re.compile(r".*sort=name.*"))
    results.get_by_role("link", name="Acme Corp").click()
    page.wait_for_url(re.compile(rf".*/console/customers/{acme.id}$"))
    assert page.get_by_test_id("customer-name").inner_text() == "Acme Corp"
    timeline = page.get_by_test_id("timeline")
    assert "customer.created" in timeline.inner_text()
    assert page.locator('[data-panel="invoices"]').is_visible()
    shot("customer-page")

    # The search box finds an exact external id straight away.
    search = page.get_by_role("searchbox", name="Find a customer").first
    search.fill("org_acme")
    search.press("Enter")
    page.wait_for_url(re.compile(rf".*/console/customers/{acme.id}$"))


def test_reenable_a_failed_webhook_with_a_reason_and_see_it_audited(
    page: Any, db: Database
) -> None:
    endpoint_id, _ = plant_failed_webhook(db)
    email = make_user(db, "admin", name="Ada Admin")
    shot = page.shots
    sign_in(page, email)

    # The nav says something is wrong; the anomaly page says what.
    assert page.get_by_test_id("anomaly-total").inner_text() == "1"
    page.locator(".alertbar").get_by_role("link", name=re.compile("Failed webhooks")).click()
    page.wait_for_url(re.compile(r".*/console/anomalies/failed-webhooks$"))
    endpoints = page.get_by_test_id("disabled-endpoints")
    assert "https://hooks.example.com/billing" in endpoints.inner_text()
    assert "HTTP 500" in page.get_by_test_id("failing-deliveries").inner_text()
    shot("failed-webhooks")

    endpoints.get_by_label("Reason for re-enable").fill("Receiver fixed in deploy 4411")
    endpoints.get_by_role("button", name="Re-enable").dblclick()  # a double click, on purpose
    page.wait_for_url(re.compile(r".*done=aud_.*"))
    notice = page.get_by_test_id("notice")
    assert "Re-enabled https://hooks.example.com/billing" in notice.inner_text()
    shot("re-enabled")
    with db.read() as tx:
        assert webhooks.get_endpoint(tx, endpoint_id).status == "enabled"
    assert len(audit_entries(db, action="webhook_endpoint.enable")) == 1

    page.get_by_role("link", name="Audit log").click()
    log = page.get_by_test_id("audit-log")
    row = log.locator("tr", has_text="webhook_endpoint.enable")
    assert row.count() == 1
    text = row.inner_text()
    assert "Receiver fixed in deploy 4411" in text
    assert email in text and "succeeded" in text
    shot("audit-log")


def test_a_viewer_is_refused_and_the_refusal_is_audited(page: Any, db: Database) -> None:
    endpoint_id, _ = plant_failed_webhook(db)
    email = make_user(db, "viewer", name="Vic Viewer")
    shot = page.shots
    sign_in(page, email)

    page.goto("/console/webhooks")
    row = page.locator(f'tr[data-endpoint="{endpoint_id}"]')
    assert "Re-enable: needs admin" in row.inner_text()
    assert row.get_by_role("button", name="Re-enable").count() == 0
    shot("no-button-for-viewers")

    # The server refuses even a hand-made request that carries the viewer's own CSRF token.
    csrf = page.locator('input[name="csrf_token"]').first.get_attribute("value")
    response = page.request.post(
        f"/console/webhooks/{endpoint_id}/enable",
        form={"csrf_token": csrf, "action_token": "A" * 24, "reason": "let me in"},
        max_redirects=0,
    )
    assert response.status == 403
    assert "needs the admin role" in response.text()
    with db.read() as tx:
        assert webhooks.get_endpoint(tx, endpoint_id).status == "disabled"

    page.goto("/console/audit?outcome=refused")
    log = page.get_by_test_id("audit-log")
    text = log.inner_text()
    assert "webhook_endpoint.enable" in text and "let me in" in text and "refused" in text
    shot("refusal-in-audit-log")
