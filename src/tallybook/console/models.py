"""The console's tables: users, sessions, the append-only audit log and the server secret."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime


class ConsoleUser(Base):
    """A person who signs in to the console. The password is stored as an scrypt hash with a
    per-user salt (``scrypt$n$r$p$salt_hex$hash_hex``), never in clear."""

    __tablename__ = "console_users"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: Lower-cased; the sign-in name.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    #: viewer | support | finance | admin
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(300))
    #: active | disabled
    status: Mapped[str] = mapped_column(String(16))
    #: Consecutive failed sign-ins; the account locks for a while past a threshold.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    last_sign_in_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConsoleSession(Base):
    """A signed-in browser. The cookie carries a random token (signed with the server
    secret); only its SHA-256 is stored, so a copy of the table cannot sign anyone in."""

    __tablename__ = "console_sessions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    #: Exactly one of ``user_id`` and ``api_key_id`` is set.
    user_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    api_key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    remote_addr: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_agent: Mapped[str | None] = mapped_column(String(300), nullable=True)


class ConsoleAuditEntry(Base):
    """One console action (or sign-in) and its outcome. Append-only: database triggers refuse
    UPDATE and DELETE on both backends (see migration ``0008_tooling``)."""

    __tablename__ = "console_audit_log"
    __table_args__ = (
        Index("ix_console_audit_log_actor", "actor", "id"),
        Index("ix_console_audit_log_action", "action", "id"),
        Index("ix_console_audit_log_customer", "customer_id", "id"),
        Index("ix_console_audit_log_object", "object_type", "object_id"),
    )

    #: ``aud_…``: time-ordered, so ``ORDER BY id`` is the order things happened.
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: ``cusr_…`` (a console user), ``key_…`` (an API key), or ``cli``.
    actor: Mapped[str] = mapped_column(String(200))
    #: The actor's email or key name at the time, so the log reads well after renames.
    actor_name: Mapped[str] = mapped_column(String(320))
    #: The role the actor held when acting (``system`` for the command line).
    role: Mapped[str] = mapped_column(String(16))
    #: ``<object>.<verb>`` as in the permission table (``webhook_endpoint.enable``).
    action: Mapped[str] = mapped_column(String(100))
    object_type: Mapped[str] = mapped_column(String(50))
    object_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    customer_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    #: succeeded | failed | refused
    outcome: Mapped[str] = mapped_column(String(16))
    #: The error or refusal code when the outcome is not ``succeeded``.
    error_code: Mapped[str | None] = mapped_column(String(100), nullable=True)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The one-time token of the form that was submitted: a second submit of the same form
    #: finds this entry and does nothing again.
    action_token: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    #: What the action concerned (amounts as ``{"amount_minor", "currency"}``), JSON.
    details: Mapped[dict[str, Any]] = mapped_column(JSONType)


class ConsoleSecret(Base):
    """Server secrets generated once on first use (the session-signing key), unless
    ``TALLYBOOK_CONSOLE_SECRET`` provides one."""

    __tablename__ = "console_secrets"

    name: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
