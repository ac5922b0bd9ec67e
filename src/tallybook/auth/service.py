"""API keys: create (secret shown once), verify, revoke, list."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from sqlalchemy import select

from tallybook.auth.models import ApiKey
from tallybook.auth.scopes import parse_scope, scope_allows
from tallybook.db import Tx
from tallybook.kit.errors import (
    AuthenticationFailed,
    CommonCode,
    InvalidRequest,
    NotFound,
    PermissionDenied,
)
from tallybook.kit.ids import new_id

SECRET_PREFIX: Final = "tbk_"
SECRET_RANDOM_BYTES: Final = 32


class AuthCode(StrEnum):
    SCOPES_INVALID = "scopes_invalid"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: an API key (``key_…``), a console user, or the system."""

    id: str
    name: str
    scopes: frozenset[str]

    def allows(self, scope: str) -> bool:
        return scope_allows(self.scopes, scope)

    def require(self, scope: str) -> None:
        if not self.allows(scope):
            raise PermissionDenied(
                CommonCode.SCOPE_MISSING,
                f"this key lacks the '{scope}' scope",
                param=None,
            )

    @property
    def actor(self) -> str:
        return f"{self.id}"


SYSTEM_CALLER: Final = Caller(id="system", name="system", scopes=frozenset({"admin"}))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(tx: Tx, *, name: str, scopes: list[str]) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the secret, which is never stored or shown again."""
    if not scopes:
        raise InvalidRequest(AuthCode.SCOPES_INVALID, "give at least one scope", param="scopes")
    try:
        parsed = sorted({parse_scope(s) for s in scopes})
    except ValueError as exc:
        raise InvalidRequest(AuthCode.SCOPES_INVALID, str(exc), param="scopes") from None
    secret = SECRET_PREFIX + secrets.token_urlsafe(SECRET_RANDOM_BYTES)
    key = ApiKey(
        id=new_id("key"),
        name=name,
        secret_prefix=secret[:12],
        secret_sha256=hash_secret(secret),
        scopes=parsed,
        created_at=tx.now(),
        created_by=tx.actor,
    )
    tx.session.add(key)
    tx.session.flush()
    return key, secret


def verify_secret(tx: Tx, secret: str) -> Caller:
    if not secret.startswith(SECRET_PREFIX):
        raise AuthenticationFailed(CommonCode.API_KEY_INVALID, "invalid API key")
    key = tx.session.scalar(select(ApiKey).where(ApiKey.secret_sha256 == hash_secret(secret)))
    if key is None or key.revoked_at is not None:
        raise AuthenticationFailed(CommonCode.API_KEY_INVALID, "invalid or revoked API key")
    return Caller(id=key.id, name=key.name, scopes=frozenset(key.scopes))


def caller_for_key(tx: Tx, key_id: str) -> Caller | None:
    """The caller of a live key by its id (None when unknown or revoked): for sessions that
    signed in with a key and must notice its revocation."""
    key = tx.session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return Caller(id=key.id, name=key.name, scopes=frozenset(key.scopes))


def revoke_api_key(tx: Tx, key_id: str) -> ApiKey:
    key = tx.session.get(ApiKey, key_id)
    if key is None:
        raise NotFound("api key", key_id)
    if key.revoked_at is None:
        key.revoked_at = tx.now()
    return key


def list_api_keys(tx: Tx) -> list[ApiKey]:
    return list(tx.session.scalars(select(ApiKey).order_by(ApiKey.id.desc())))
