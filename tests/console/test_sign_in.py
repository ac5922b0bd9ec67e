"""Signing in and out: console users (scrypt passwords, lockout) and API keys with a console
scope; the session cookie (signed, HttpOnly, SameSite=Lax, expiring); every sign-in recorded."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from tallybook.console import sessions, users
from tallybook.console.errors import ConsoleCode
from tallybook.console.models import ConsoleSession
from tallybook.console.roles import Role, role_for_scopes
from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.kit.errors import AuthenticationFailed, Conflict, InvalidRequest
from tests.console.conftest import PASSWORD, ConsoleClient, audit_entries, field, make_user


class TestPasswords:
    def test_scrypt_with_a_salt_per_user(self) -> None:
        first, second = (
            users.hash_password("same password 1"),
            users.hash_password("same password 1"),
        )
        assert first.startswith("scrypt$16384$8$1$")
        assert first != second  # different salts
        assert users.verify_password("same password 1", first)
        assert not users.verify_password("same password 2", first)
        assert not users.verify_password("x", "garbage")

    def test_create_validates(self, db: Database) -> None:
        with db.transaction() as tx, pytest.raises(InvalidRequest) as short:
            users.create_user(tx, email="a@b.co", display_name="A", role="viewer", password="short")
        assert short.value.code == ConsoleCode.PASSWORD_INVALID
        with db.transaction() as tx, pytest.raises(InvalidRequest) as role:
            users.create_user(tx, email="a@b.co", display_name="A", role="god", password=PASSWORD)
        assert role.value.param == "role"
        with db.transaction() as tx, pytest.raises(InvalidRequest) as email:
            users.create_user(tx, email="nope", display_name="A", role="viewer", password=PASSWORD)
        assert email.value.code == ConsoleCode.USER_EMAIL_INVALID
        make_user(db, "viewer", email="Same@Example.com")
        with db.transaction() as tx, pytest.raises(Conflict):
            users.create_user(
                tx, email="same@example.com", display_name="B", role="viewer", password=PASSWORD
            )

    def test_lockout_after_repeated_failures(self, db: Database, clock: TestClock) -> None:
        email = make_user(db, "support")
        for _ in range(users.FAILED_SIGN_INS_MAX):
            with db.transaction() as tx, pytest.raises(AuthenticationFailed):
                users.authenticate(tx, email, "wrong password!")
        with db.transaction() as tx, pytest.raises(AuthenticationFailed) as locked:
            users.authenticate(tx, email, PASSWORD)  # right password, but locked
        assert locked.value.code == ConsoleCode.USER_LOCKED
        clock.advance(minutes=users.LOCK_MINUTES + 1)
        with db.transaction() as tx:
            assert users.authenticate(tx, email, PASSWORD).email == email


class TestSignIn:
    def test_sign_in_sets_a_hardened_cookie_and_is_audited(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "support")
        assert console.get("/console", follow_redirects=False).headers["location"] == (
            "/console/sign-in?next=/console"
        )
        response = console.sign_in(email, next_path="/console/audit")
        assert response.status_code == 303
        assert response.headers["location"] == "/console/audit"
        cookie = response.headers["set-cookie"]
        assert "tb_console=" in cookie
        assert "HttpOnly" in cookie
        assert "SameSite=lax" in cookie or "SameSite=Lax" in cookie
        assert "Path=/console" in cookie
        assert "Max-Age=43200" in cookie
        page = console.get("/console")
        assert page.status_code == 200
        assert "Support" in page.text
        [entry] = audit_entries(console.db, action="console.sign_in")
        assert (entry.actor_name, entry.role, entry.outcome) == (email, "support", "succeeded")

    def test_wrong_password_is_refused_and_recorded(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "viewer")
        response = console.sign_in(email, "not the password")
        assert response.status_code == 401
        assert "Wrong email or password" in response.text
        assert console.get("/console", follow_redirects=False).status_code == 303
        unknown = console.sign_in("nobody@example.com", "whatever it is")
        assert unknown.status_code == 401
        entries = audit_entries(console.db, action="console.sign_in")
        assert [(e.actor_name, e.outcome, e.error_code) for e in entries] == [
            (email, "refused", "console_sign_in_failed"),
            ("nobody@example.com", "refused", "console_sign_in_failed"),
        ]

    def test_sign_in_form_is_bound_to_the_browser(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "viewer")
        # A form token from another browser (login CSRF) does not work here.
        other = ConsoleClient(console.app, base_url="http://testserver")
        token = field(other.get("/console/sign-in").text, "sign_in_token")
        console.get("/console/sign-in")
        response = console.post(
            "/console/sign-in",
            data={"email": email, "password": PASSWORD, "sign_in_token": token},
            follow_redirects=False,
        )
        assert response.status_code == 400
        assert "expired" in response.text

    def test_next_never_leaves_the_console(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "viewer")
        for target in ("https://evil.example/console", "//evil.example", "/v1/customers"):
            response = console.sign_in(email, next_path=target)
            assert response.headers["location"] == "/console"

    def test_forged_or_tampered_cookie_is_ignored(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "viewer")
        console.sign_in(email)
        value = console.cookies.get("tb_console", path="/console")
        assert value
        token, _, signature = value.rpartition(".")
        console.cookies.set("tb_console", f"{token}.{signature[:-2]}xx", path="/console")
        assert console.get("/console", follow_redirects=False).status_code == 303

    def test_sign_out_ends_the_session_on_the_server(self, console: ConsoleClient) -> None:
        email = make_user(console.db, "viewer")
        console.sign_in(email)
        stolen = console.cookies.get("tb_console", path="/console")
        response = console.post(
            "/console/sign-out", data={"csrf_token": console.csrf()}, follow_redirects=False
        )
        assert response.status_code == 303
        # Even a copy of the cookie no longer works.
        console.cookies.set("tb_console", stolen, path="/console")
        assert console.get("/console", follow_redirects=False).status_code == 303
        assert [e.outcome for e in audit_entries(console.db, action="console.sign_out")] == [
            "succeeded"
        ]

    def test_sessions_expire(self, console: ConsoleClient, clock: TestClock) -> None:
        console.sign_in(make_user(console.db, "viewer"))
        assert console.get("/console").status_code == 200
        clock.advance(timedelta(hours=sessions.SESSION_HOURS_MAX, seconds=1))
        assert console.get("/console", follow_redirects=False).status_code == 303

    def test_disabling_a_user_signs_them_out_and_role_changes_apply_at_once(
        self, console: ConsoleClient
    ) -> None:
        email = make_user(console.db, "admin")
        console.sign_in(email)
        assert console.get("/console/users").status_code == 200
        with console.db.transaction() as tx:
            users.set_role(tx, users.get_by_email(tx, email), Role.VIEWER)
        assert console.get("/console/users").status_code == 403
        with console.db.transaction() as tx:
            users.disable(tx, users.get_by_email(tx, email))
            revoked = tx.session.scalars(select(ConsoleSession.revoked_at)).all()
            assert all(revoked)
        assert console.get("/console", follow_redirects=False).status_code == 303
        again = console.sign_in(email)
        assert again.status_code == 401
        assert "disabled" in again.text


class TestApiKeys:
    @pytest.mark.parametrize(
        ("scopes", "role"),
        [
            ({"console:read"}, Role.VIEWER),
            ({"console:write"}, Role.SUPPORT),
            ({"admin"}, Role.ADMIN),
            ({"console:read", "admin"}, Role.ADMIN),
            ({"customers:write"}, None),
        ],
    )
    def test_scope_to_role(self, scopes: set[str], role: Role | None) -> None:
        assert role_for_scopes(frozenset(scopes)) == role

    def test_sign_in_with_a_key_until_it_is_revoked(self, console: ConsoleClient) -> None:
        from tallybook.auth.service import create_api_key, revoke_api_key

        with console.db.transaction() as tx:
            key, secret = create_api_key(tx, name="support bot", scopes=["console:write"])
        response = console.sign_in_with_key(secret)
        assert response.status_code == 303
        page = console.get("/console")
        assert "support bot" in page.text
        assert 'class="role role-support"' in page.text
        with console.db.transaction() as tx:
            revoke_api_key(tx, key.id)
        assert console.get("/console", follow_redirects=False).status_code == 303

    def test_a_key_without_a_console_scope_is_refused(self, console: ConsoleClient) -> None:
        from tallybook.auth.service import create_api_key

        with console.db.transaction() as tx:
            _, secret = create_api_key(tx, name="ingest", scopes=["events:write"])
        response = console.sign_in_with_key(secret)
        assert response.status_code == 401
        assert "no console scope" in response.text
        bad = console.sign_in_with_key("tbk_forged")
        assert bad.status_code == 401
        outcomes = [e.outcome for e in audit_entries(console.db, action="console.sign_in")]
        assert outcomes == ["refused", "refused"]


def test_secure_cookies_behind_a_tls_proxy(db: Database) -> None:
    from tallybook.api.app import create_app
    from tallybook.kit.settings import Settings

    settings = Settings(database_url="unused", extra={"TALLYBOOK_CONSOLE_SECURE_COOKIES": "1"})
    client = ConsoleClient(create_app(db, settings), base_url="http://testserver")
    client.db = db
    page = client.get("/console/sign-in")
    assert "Secure" in page.headers["set-cookie"]
    # A Secure cookie is not sent back over plain HTTP; hand it over as a proxy would.
    client.cookies.set("tb_console_signin", page.cookies["tb_console_signin"], path="/console")
    response = client.post(
        "/console/sign-in",
        data={
            "email": make_user(db, "viewer"),
            "password": PASSWORD,
            "sign_in_token": field(page.text, "sign_in_token"),
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert "Secure" in response.headers["set-cookie"]
