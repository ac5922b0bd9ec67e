"""Console fixtures: users of each role, a browser-like client that signs in and submits
forms the way the pages do (CSRF token and one-time action token included)."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app
from tallybook.console import users
from tallybook.console.models import ConsoleAuditEntry
from tallybook.customers import service as customers
from tallybook.customers.models import Customer
from tallybook.db import Database
from tallybook.http.edge import clear_caller_cache

PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "support", "finance", "admin")


def make_user(db: Database, role: str, email: str | None = None, name: str | None = None) -> str:
    email = email or f"{role}-{secrets.token_hex(3)}@example.com"
    with db.transaction(actor="test") as tx:
        users.create_user(
            tx, email=email, display_name=name or role.title(), role=role, password=PASSWORD
        )
    return email


def make_customer(db: Database, **fields: Any) -> Customer:
    values: dict[str, Any] = {"external_id": f"ext-{secrets.token_hex(4)}", "currency": "USD"}
    values.update(fields)
    with db.transaction(actor="test") as tx:
        return customers.create(tx, customers.CustomerInput(**values))


def field(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no {name} field in the page"
    return match.group(1)


def audit_entries(db: Database, **where: Any) -> list[ConsoleAuditEntry]:
    from sqlalchemy import select

    with db.read() as tx:
        query = select(ConsoleAuditEntry).order_by(ConsoleAuditEntry.id)
        for key, value in where.items():
            query = query.where(getattr(ConsoleAuditEntry, key) == value)
        rows = list(tx.session.scalars(query))
        for row in rows:
            tx.session.expunge(row)
        return rows


class ConsoleClient(TestClient):
    db: Database

    def sign_in(self, email: str, password: str = PASSWORD, *, next_path: str = "/console") -> Any:
        page = self.get("/console/sign-in")
        return self.post(
            "/console/sign-in",
            data={
                "email": email,
                "password": password,
                "next": next_path,
                "sign_in_token": field(page.text, "sign_in_token"),
            },
            follow_redirects=False,
        )

    def sign_in_with_key(self, secret: str) -> Any:
        page = self.get("/console/sign-in")
        return self.post(
            "/console/sign-in",
            data={"api_key": secret, "sign_in_token": field(page.text, "sign_in_token")},
            follow_redirects=False,
        )

    def as_role(self, role: str) -> str:
        email = make_user(self.db, role)
        response = self.sign_in(email)
        assert response.status_code == 303, response.text
        return email

    def csrf(self) -> str:
        return field(self.get("/console").text, "csrf_token")

    def act(
        self,
        url: str,
        *,
        reason: str = "customer asked",
        csrf: str | None = None,
        token: str | None = None,
        **extra: str,
    ) -> Any:
        """Submit an action form as the page would (a fresh one-time token unless given)."""
        data = {
            "csrf_token": self.csrf() if csrf is None else csrf,
            "action_token": token or secrets.token_urlsafe(18),
            "reason": reason,
            **extra,
        }
        return self.post(url, data=data, follow_redirects=False)


@pytest.fixture
def console(db: Database) -> Iterator[ConsoleClient]:
    clear_caller_cache()
    client = ConsoleClient(create_app(db), base_url="http://testserver")
    client.db = db
    with client:
        yield client


# The browser fixtures live in one place: a session-scoped Playwright imported into two test
# modules would be two fixtures, and the second sync_playwright() would start inside the first
# one's event loop ("Sync API inside the asyncio loop").
from tests.console import browser as _browser  # noqa: E402

chromium = _browser.chromium
server = _browser.server
page = _browser.page
