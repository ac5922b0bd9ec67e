"""Console users: create, list, change role, disable, enable, reset password, sign in.

Passwords are hashed with ``hashlib.scrypt`` and a random per-user salt. The stored form
``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>`` names its parameters, so they can be raised later
without invalidating existing passwords. The edges record user management in the audit log
(the console through its actions, the command line with ``audit.record_system``).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import timedelta
from typing import Final

from sqlalchemy import select, update

from tallybook.console.errors import ConsoleCode
from tallybook.console.models import ConsoleSession, ConsoleUser
from tallybook.console.roles import Role, parse_role
from tallybook.db import Tx
from tallybook.kit.errors import (
    AuthenticationFailed,
    CommonCode,
    Conflict,
    InvalidRequest,
    NotFound,
)
from tallybook.kit.ids import new_id

ACTIVE: Final = "active"
DISABLED: Final = "disabled"

EMAIL_PATTERN: Final = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,100}$")
DISPLAY_NAME_LENGTH_MAX: Final = 200
PASSWORD_LENGTH_MIN: Final = 12
PASSWORD_LENGTH_MAX: Final = 1024

# scrypt cost: 2^14 × 8 × 128 B = 16 MiB of memory and ~50 ms per hash on one core.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SCRYPT_KEY_BYTES: Final = 32
SALT_BYTES: Final = 16

#: After this many consecutive failed sign-ins the account locks for LOCK_MINUTES.
FAILED_SIGN_INS_MAX: Final = 10
LOCK_MINUTES: Final = 15


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = _scrypt(password, bytes.fromhex(salt_hex), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=256 * n * r * p,
        dklen=SCRYPT_KEY_BYTES,
    )


# Spent on unknown emails so that a sign-in takes as long whether or not the user exists.
_DUMMY_HASH: Final = hash_password(secrets.token_urlsafe(16))


def normalize_email(email: str) -> str:
    value = email.strip().lower()
    if not EMAIL_PATTERN.match(value):
        raise InvalidRequest(
            ConsoleCode.USER_EMAIL_INVALID, f"'{email}' is not an email address", param="email"
        )
    return value


def _check_password(password: str) -> str:
    if not PASSWORD_LENGTH_MIN <= len(password) <= PASSWORD_LENGTH_MAX:
        raise InvalidRequest(
            ConsoleCode.PASSWORD_INVALID,
            f"a password has {PASSWORD_LENGTH_MIN} to {PASSWORD_LENGTH_MAX} characters",
            param="password",
        )
    return password


def create_user(
    tx: Tx, *, email: str, display_name: str, role: Role | str, password: str
) -> ConsoleUser:
    email = normalize_email(email)
    name = display_name.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_LENGTH_MAX:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"a display name has 1 to {DISPLAY_NAME_LENGTH_MAX} characters",
            param="display_name",
        )
    parsed_role = parse_role(str(role))
    if _by_email(tx, email) is not None:
        raise Conflict(
            ConsoleCode.USER_EMAIL_TAKEN, f"a console user '{email}' exists", param="email"
        )
    now = tx.now()
    user = ConsoleUser(
        id=new_id("cusr"),
        email=email,
        display_name=name,
        role=parsed_role.value,
        password_hash=hash_password(_check_password(password)),
        status=ACTIVE,
        failed_sign_ins=0,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(user)
    tx.session.flush()
    return user


def _by_email(tx: Tx, email: str) -> ConsoleUser | None:
    return tx.session.scalar(select(ConsoleUser).where(ConsoleUser.email == email))


def find_by_email(tx: Tx, email: str) -> ConsoleUser | None:
    return _by_email(tx, email.strip().lower())


def get_by_email(tx: Tx, email: str) -> ConsoleUser:
    user = _by_email(tx, normalize_email(email))
    if user is None:
        raise NotFound("console user", email, param="email")
    return user


def get(tx: Tx, user_id: str) -> ConsoleUser:
    user = tx.session.get(ConsoleUser, user_id)
    if user is None:
        raise NotFound("console user", user_id)
    return user


def list_users(tx: Tx) -> list[ConsoleUser]:
    return list(tx.session.scalars(select(ConsoleUser).order_by(ConsoleUser.email)))


def names_of(tx: Tx, user_ids: set[str]) -> dict[str, str]:
    """Display names for ids (one query), for rendering actors in lists."""
    if not user_ids:
        return {}
    rows = tx.session.execute(
        select(ConsoleUser.id, ConsoleUser.display_name, ConsoleUser.email).where(
            ConsoleUser.id.in_(sorted(user_ids))
        )
    )
    return {user_id: f"{name} <{email}>" for user_id, name, email in rows}


def set_role(tx: Tx, user: ConsoleUser, role: Role | str) -> ConsoleUser:
    user.role = parse_role(str(role)).value
    user.updated_at = tx.now()
    return user


def disable(tx: Tx, user: ConsoleUser) -> ConsoleUser:
    """Disable and sign out everywhere at once."""
    user.status = DISABLED
    user.updated_at = tx.now()
    _revoke_sessions(tx, user.id)
    return user


def enable(tx: Tx, user: ConsoleUser) -> ConsoleUser:
    user.status = ACTIVE
    user.failed_sign_ins = 0
    user.locked_until = None
    user.updated_at = tx.now()
    return user


def set_password(tx: Tx, user: ConsoleUser, password: str) -> ConsoleUser:
    """A new password; unlocks the account and signs the user out everywhere."""
    user.password_hash = hash_password(_check_password(password))
    user.failed_sign_ins = 0
    user.locked_until = None
    user.updated_at = tx.now()
    _revoke_sessions(tx, user.id)
    return user


def _revoke_sessions(tx: Tx, user_id: str) -> None:
    tx.session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.user_id == user_id, ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=tx.now())
    )


def authenticate(tx: Tx, email: str, password: str) -> ConsoleUser:
    """The active user with this email and password. Counts failures and locks the account
    for ``LOCK_MINUTES`` after ``FAILED_SIGN_INS_MAX`` in a row. Runs in a write
    transaction; the caller commits even when this raises, so failures are counted."""
    failed = AuthenticationFailed(ConsoleCode.SIGN_IN_FAILED, "wrong email or password")
    try:
        email = normalize_email(email)
    except InvalidRequest:
        verify_password(password, _DUMMY_HASH)
        raise failed from None
    user = _by_email(tx, email)
    if user is None:
        verify_password(password, _DUMMY_HASH)
        raise failed
    now = tx.now()
    if user.locked_until is not None and user.locked_until > now:
        raise AuthenticationFailed(
            ConsoleCode.USER_LOCKED,
            "too many failed sign-ins; try again later or ask an admin to reset the password",
        )
    if not verify_password(password, user.password_hash):
        user.failed_sign_ins += 1
        if user.failed_sign_ins >= FAILED_SIGN_INS_MAX:
            user.locked_until = now + timedelta(minutes=LOCK_MINUTES)
            user.failed_sign_ins = 0
        raise failed
    if user.status != ACTIVE:
        # Said only to someone who knows the password.
        raise AuthenticationFailed(
            ConsoleCode.SIGN_IN_FAILED, "this account is disabled; ask a console admin"
        )
    user.failed_sign_ins = 0
    user.locked_until = None
    user.last_sign_in_at = now
    return user
