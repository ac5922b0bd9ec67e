"""Ledger tables.

- ``ledger_accounts``: who owns money of one currency, of one kind, with limit flags.
- ``ledger_balances``: the running totals, one row per (account, shard). Normal accounts have
  shard 0 only; hot system accounts have N shards so concurrent writers don't queue on one row.
- ``ledger_transfers`` and ``ledger_entries``: the journal. Append-only (database triggers
  refuse UPDATE and DELETE); a hold's post/void/expiry and a correction are new transfers that
  reference the original.
- ``ledger_transfer_failures``: transfers that failed for a transient state reason (not enough
  balance), kept under their id so a retry can never turn the failure into a success.
- ``ledger_open_holds``: the index of pending transfers not yet posted, voided or expired, so the
  expiry job reads only what is open. A row is deleted when its hold is resolved.

The check constraints are the database half of the ledger's pair assertions: the domain checks
before writing, the database refuses what slipped through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, JSONType, UTCDateTime
from tallybook.kit.assets import ASSET_CODE_LENGTH_MAX

#: Client-chosen transfer ids are at most 64 characters; system ids (``~expire:<id>``) add a
#: prefix outside the client alphabet, hence the wider column.
TRANSFER_ID_COLUMN_LENGTH = 80

_ENTRY_ID_TYPE = BigInteger().with_variant(Integer(), "sqlite")


class LedgerAccount(Base):
    __tablename__ = "ledger_accounts"
    __table_args__ = (
        # Get-or-create identity: (code, currency, owner, reference). Two partial indexes because
        # NULL owners (system accounts) never collide in a plain unique index on either backend.
        Index(
            "uq_ledger_accounts_customer_identity",
            "owner_id",
            "code",
            "currency",
            "reference",
            unique=True,
            postgresql_where=text("owner_id IS NOT NULL"),
            sqlite_where=text("owner_id IS NOT NULL"),
        ),
        Index(
            "uq_ledger_accounts_system_identity",
            "code",
            "currency",
            "reference",
            unique=True,
            postgresql_where=text("owner_id IS NULL"),
            sqlite_where=text("owner_id IS NULL"),
        ),
        CheckConstraint(
            "kind IN ('asset', 'liability', 'revenue', 'expense', 'equity')", name="kind"
        ),
        CheckConstraint("owner_type IN ('customer', 'system')", name="owner_type"),
        CheckConstraint("(owner_type = 'customer') = (owner_id IS NOT NULL)", name="owner"),
        CheckConstraint(
            "NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)",
            name="limits_exclusive",
        ),
        CheckConstraint("balance_shards BETWEEN 1 AND 64", name="balance_shards"),
        CheckConstraint(
            "balance_shards = 1 OR NOT (debits_must_not_exceed_credits "
            "OR credits_must_not_exceed_debits)",
            name="sharded_unlimited",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: What the account is for: ``customer_credit``, ``revenue_usage``, ``stripe_clearing``…
    code: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(ASSET_CODE_LENGTH_MAX))
    #: asset | liability | revenue | expense | equity; decides the sign of ``net``.
    kind: Mapped[str] = mapped_column(String(16))
    owner_type: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[str | None] = mapped_column(
        String(40), ForeignKey("customers.id"), nullable=True
    )
    #: Tells apart several accounts with the same code, owner and currency (one wallet per
    #: credit grant: ``grt_…``). Empty when there is only one.
    reference: Mapped[str] = mapped_column(String(120), server_default="")
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    debits_must_not_exceed_credits: Mapped[bool] = mapped_column(Boolean)
    credits_must_not_exceed_debits: Mapped[bool] = mapped_column(Boolean)
    balance_shards: Mapped[int] = mapped_column(SmallInteger)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerBalance(Base):
    __tablename__ = "ledger_balances"
    __table_args__ = (
        CheckConstraint("debits_posted >= 0", name="debits_posted"),
        CheckConstraint("credits_posted >= 0", name="credits_posted"),
        CheckConstraint("debits_pending >= 0", name="debits_pending"),
        CheckConstraint("credits_pending >= 0", name="credits_pending"),
        # The limit flags are copied from the account (they never change) so that the database
        # itself refuses a balance past its limit, whatever code wrote it.
        CheckConstraint(
            "NOT debits_must_not_exceed_credits "
            "OR debits_posted + debits_pending <= credits_posted",
            name="debits_within_credits",
        ),
        CheckConstraint(
            "NOT credits_must_not_exceed_debits "
            "OR credits_posted + credits_pending <= debits_posted",
            name="credits_within_debits",
        ),
    )

    account_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("ledger_accounts.id"), primary_key=True
    )
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    debits_posted: Mapped[int] = mapped_column(BigInteger)
    credits_posted: Mapped[int] = mapped_column(BigInteger)
    debits_pending: Mapped[int] = mapped_column(BigInteger)
    credits_pending: Mapped[int] = mapped_column(BigInteger)
    debits_must_not_exceed_credits: Mapped[bool] = mapped_column(Boolean)
    credits_must_not_exceed_debits: Mapped[bool] = mapped_column(Boolean)
    #: Copied from the account when it closes: the transfer path locks this row (not the account
    #: row), and a transfer that waited for a concurrent close must see the close when it gets in.
    closed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class LedgerTransfer(Base):
    __tablename__ = "ledger_transfers"
    __table_args__ = (
        # One resolution per hold: post, void or expiry, whichever commits first.
        Index(
            "uq_ledger_transfers_pending_id",
            "pending_id",
            unique=True,
            postgresql_where=text("pending_id IS NOT NULL"),
            sqlite_where=text("pending_id IS NOT NULL"),
        ),
        Index(
            "ix_ledger_transfers_reverses_id",
            "reverses_id",
            postgresql_where=text("reverses_id IS NOT NULL"),
            sqlite_where=text("reverses_id IS NOT NULL"),
        ),
        CheckConstraint(
            "kind IN ('standard', 'pending', 'post_pending', 'void_pending', "
            "'expire_pending', 'reversal')",
            name="kind",
        ),
        CheckConstraint(
            "(kind IN ('post_pending', 'void_pending', 'expire_pending')) "
            "= (pending_id IS NOT NULL)",
            name="pending_link",
        ),
        CheckConstraint("(kind = 'reversal') = (reverses_id IS NOT NULL)", name="reversal_link"),
        CheckConstraint("kind = 'pending' OR expires_at IS NULL", name="expiry_on_holds"),
    )

    id: Mapped[str] = mapped_column(String(TRANSFER_ID_COLUMN_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    reason_code: Mapped[str] = mapped_column(String(64))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    pending_id: Mapped[str | None] = mapped_column(
        String(TRANSFER_ID_COLUMN_LENGTH), ForeignKey("ledger_transfers.id"), nullable=True
    )
    reverses_id: Mapped[str | None] = mapped_column(
        String(TRANSFER_ID_COLUMN_LENGTH), ForeignKey("ledger_transfers.id"), nullable=True
    )
    #: When a hold stops being postable (None: never). Only on ``pending`` transfers.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Set on every member of a linked (all-or-nothing) batch.
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: The request as the caller sent it, compared field by field when the id is reused.
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    actor: Mapped[str] = mapped_column(String(200))


class LedgerEntry(Base):
    __tablename__ = "ledger_entries"
    __table_args__ = (
        # An account's history, newest first (cursor pagination on id).
        Index("ix_ledger_entries_account_id", "account_id", "id"),
        # Balances as of a past instant.
        Index("ix_ledger_entries_account_effective", "account_id", "effective_at"),
        CheckConstraint("direction IN ('debit', 'credit')", name="direction"),
        CheckConstraint("phase IN ('posted', 'pending')", name="phase"),
        CheckConstraint("amount_minor <> 0", name="amount_nonzero"),
        # Only pending amounts are ever released (negative); posted amounts only accumulate.
        CheckConstraint("phase = 'pending' OR amount_minor > 0", name="posted_positive"),
    )

    id: Mapped[int] = mapped_column(_ENTRY_ID_TYPE, primary_key=True, autoincrement=True)
    transfer_id: Mapped[str] = mapped_column(
        String(TRANSFER_ID_COLUMN_LENGTH), ForeignKey("ledger_transfers.id"), index=True
    )
    account_id: Mapped[str] = mapped_column(String(40), ForeignKey("ledger_accounts.id"))
    #: The balance row this entry moved (0 unless the account is sharded).
    shard: Mapped[int] = mapped_column(SmallInteger)
    currency: Mapped[str] = mapped_column(String(ASSET_CODE_LENGTH_MAX))
    direction: Mapped[str] = mapped_column(String(6))
    phase: Mapped[str] = mapped_column(String(7))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class LedgerTransferFailure(Base):
    __tablename__ = "ledger_transfer_failures"

    id: Mapped[str] = mapped_column(String(TRANSFER_ID_COLUMN_LENGTH), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(String(500))
    param: Mapped[str | None] = mapped_column(String(120), nullable=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSONType)
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))


class LedgerOpenHold(Base):
    __tablename__ = "ledger_open_holds"

    transfer_id: Mapped[str] = mapped_column(
        String(TRANSFER_ID_COLUMN_LENGTH), ForeignKey("ledger_transfers.id"), primary_key=True
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True, index=True)
