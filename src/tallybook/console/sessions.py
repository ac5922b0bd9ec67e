"""Console sessions: the signing secret, the cookie, CSRF tokens.

The cookie holds ``<token>.<signature>``: a random token and its HMAC-SHA256 under the server
secret. The database keeps only the token's SHA-256, with the session's owner, expiry and
revocation, so signing out, disabling a user or revoking a key takes effect on the next
request. Every form carries the session's CSRF token, an HMAC of the session token that the
server recomputes (nothing to store).

The secret comes from ``TALLYBOOK_CONSOLE_SECRET`` (at least 32 characters) or is generated
once and kept in ``console_secrets``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import weakref
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine

from tallybook.auth.service import Caller, caller_for_key
from tallybook.console.models import ConsoleSecret, ConsoleSession, ConsoleUser
from tallybook.console.roles import Role, role_for_scopes
from tallybook.console.users import ACTIVE
from tallybook.db import Database, Tx
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import invariant

COOKIE_NAME: Final = "tb_console"
#: A pre-session cookie that ties the sign-in form to the browser (against login CSRF).
SIGN_IN_COOKIE_NAME: Final = "tb_console_signin"
COOKIE_PATH: Final = "/console"
SESSION_HOURS_MAX: Final = 12
TOKEN_BYTES: Final = 32
SECRET_ENV: Final = "TALLYBOOK_CONSOLE_SECRET"
SECRET_LENGTH_MIN: Final = 32
SECRET_NAME: Final = "session_hmac"
USER_AGENT_LENGTH_MAX: Final = 300


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is signed in to this session, and as what role (re-read on every request)."""

    session_id: str
    #: ``cusr_…`` or ``key_…``: the actor recorded on everything this session does.
    actor: str
    #: For the audit log: the user's email, or the key's name.
    actor_name: str
    display_name: str
    role: Role
    kind: str  # "user" | "api_key"


# The secret ----------------------------------------------------------------------------------

_secret_lock = threading.Lock()
_secrets: weakref.WeakKeyDictionary[Engine, bytes] = weakref.WeakKeyDictionary()


def server_secret(db: Database, configured: str | None) -> bytes:
    """The signing secret: ``configured`` (from the environment) or the database's, created
    on first use. Cached per database for the life of the process."""
    if configured:
        invariant(
            len(configured) >= SECRET_LENGTH_MIN,
            f"{SECRET_ENV} must be at least {SECRET_LENGTH_MIN} characters",
        )
        return configured.encode()
    key = db.engine
    cached = _secrets.get(key)
    if cached is not None:
        return cached
    with _secret_lock:
        if key not in _secrets:
            _secrets[key] = _load_or_create_secret(db)
        return _secrets[key]


def _load_or_create_secret(db: Database) -> bytes:
    with db.transaction(actor="system:console") as tx:
        insert = postgresql.insert if tx.is_postgres else sqlite.insert
        tx.session.execute(
            insert(ConsoleSecret)
            .values(name=SECRET_NAME, value=secrets.token_urlsafe(48), created_at=tx.now())
            .on_conflict_do_nothing(index_elements=["name"])
        )
        value = tx.session.scalar(
            select(ConsoleSecret.value).where(ConsoleSecret.name == SECRET_NAME)
        )
    invariant(value is not None, "console secret missing after insert")
    assert value is not None
    return value.encode()


def forget_cached_secrets() -> None:
    """For tests that recreate databases at the same address."""
    with _secret_lock:
        _secrets.clear()


# Signing ---------------------------------------------------------------------------------------


def _mac(secret: bytes, purpose: str, value: str) -> str:
    digest = hmac.new(secret, f"{purpose}:{value}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign_token(secret: bytes, token: str) -> str:
    return f"{token}.{_mac(secret, 'session', token)}"


def unsign_cookie(secret: bytes, cookie: str | None) -> str | None:
    """The token from a cookie whose signature is right, else None."""
    if not cookie or "." not in cookie:
        return None
    token, _, signature = cookie.rpartition(".")
    if not hmac.compare_digest(signature, _mac(secret, "session", token)):
        return None
    return token


def csrf_token(secret: bytes, session_token: str) -> str:
    return _mac(secret, "csrf", session_token)


def sign_in_form_token(secret: bytes, browser_nonce: str) -> str:
    return _mac(secret, "sign-in", browser_nonce)


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected, given or "")


def _token_sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# Sessions --------------------------------------------------------------------------------------


def start_session(
    tx: Tx,
    *,
    user_id: str | None = None,
    api_key_id: str | None = None,
    remote_addr: str | None = None,
    user_agent: str | None = None,
) -> tuple[str, str]:
    """Create a session; returns its id and its token (to sign into the cookie)."""
    invariant((user_id is None) != (api_key_id is None), "a session has one owner")
    token = secrets.token_urlsafe(TOKEN_BYTES)
    now = tx.now()
    session_id = new_id("cses")
    tx.session.add(
        ConsoleSession(
            id=session_id,
            token_sha256=_token_sha256(token),
            user_id=user_id,
            api_key_id=api_key_id,
            created_at=now,
            expires_at=now + timedelta(hours=SESSION_HOURS_MAX),
            remote_addr=remote_addr[:64] if remote_addr else None,
            user_agent=user_agent[:USER_AGENT_LENGTH_MAX] if user_agent else None,
        )
    )
    tx.session.flush()
    return session_id, token


def resolve(tx: Tx, token: str) -> Identity | None:
    """The identity behind a live session token, or None (unknown, expired, revoked, user
    disabled, key revoked, key lost its console scope)."""
    row = tx.session.execute(
        select(ConsoleSession, ConsoleUser)
        .outerjoin(ConsoleUser, ConsoleUser.id == ConsoleSession.user_id)
        .where(ConsoleSession.token_sha256 == _token_sha256(token))
    ).first()
    if row is None:
        return None
    session, user = row
    if session.revoked_at is not None or session.expires_at <= tx.now():
        return None
    if session.user_id is not None:
        if user is None or user.status != ACTIVE:
            return None
        return Identity(
            session_id=session.id,
            actor=user.id,
            actor_name=user.email,
            display_name=user.display_name,
            role=Role(user.role),
            kind="user",
        )
    assert session.api_key_id is not None
    caller = caller_for_key(tx, session.api_key_id)
    return identity_of_key(session.id, caller) if caller is not None else None


def identity_of_key(session_id: str, caller: Caller) -> Identity | None:
    role = role_for_scopes(caller.scopes)
    if role is None:
        return None
    return Identity(
        session_id=session_id,
        actor=caller.id,
        actor_name=caller.name,
        display_name=f"API key “{caller.name}”",
        role=role,
        kind="api_key",
    )


def end_session(tx: Tx, session_id: str) -> None:
    session = tx.session.get(ConsoleSession, session_id)
    if session is not None and session.revoked_at is None:
        session.revoked_at = tx.now()
