"""ledger: accounts, balances, transfers, entries, failures, open holds

Revision ID: 0002_ledger
Revises: 0001_spine

Besides the tables: triggers that make the journal append-only on both backends. Transfers,
entries and recorded failures refuse UPDATE and DELETE; corrections are new transfers.
(PostgreSQL's TRUNCATE fires no row triggers, which the test suite relies on between tests.)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0002_ledger"
down_revision = "0001_spine"
branch_labels = None
depends_on = None

#: The journal: written once, never changed.
APPEND_ONLY_TABLES = ("ledger_transfers", "ledger_entries", "ledger_transfer_failures")


def upgrade() -> None:
    op.create_table(
        "ledger_transfer_failures",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("param", sa.String(length=120), nullable=True),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("failed_at", UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfer_failures")),
    )
    op.create_table(
        "ledger_transfers",
        sa.Column("id", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason_code", sa.String(length=64), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("pending_id", sa.String(length=80), nullable=True),
        sa.Column("reverses_id", sa.String(length=80), nullable=True),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("batch_id", sa.String(length=40), nullable=True),
        sa.Column("request", JSONType, nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.CheckConstraint(
            "(kind = 'reversal') = (reverses_id IS NOT NULL)",
            name=op.f("ck_ledger_transfers_reversal_link"),
        ),
        sa.CheckConstraint(
            "(kind IN ('post_pending', 'void_pending', 'expire_pending')) = (pending_id IS NOT NULL)",
            name=op.f("ck_ledger_transfers_pending_link"),
        ),
        sa.CheckConstraint(
            "kind = 'pending' OR expires_at IS NULL",
            name=op.f("ck_ledger_transfers_expiry_on_holds"),
        ),
        sa.CheckConstraint(
            "kind IN ('standard', 'pending', 'post_pending', 'void_pending', 'expire_pending', 'reversal')",
            name=op.f("ck_ledger_transfers_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["pending_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_pending_id_ledger_transfers"),
        ),
        sa.ForeignKeyConstraint(
            ["reverses_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_transfers_reverses_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_transfers")),
    )
    op.create_index(
        "ix_ledger_transfers_reverses_id",
        "ledger_transfers",
        ["reverses_id"],
        unique=False,
        postgresql_where=sa.text("reverses_id IS NOT NULL"),
        sqlite_where=sa.text("reverses_id IS NOT NULL"),
    )
    op.create_index(
        "uq_ledger_transfers_pending_id",
        "ledger_transfers",
        ["pending_id"],
        unique=True,
        postgresql_where=sa.text("pending_id IS NOT NULL"),
        sqlite_where=sa.text("pending_id IS NOT NULL"),
    )
    op.create_table(
        "ledger_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("currency", sa.String(length=102), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("owner_type", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.String(length=40), nullable=True),
        sa.Column("reference", sa.String(length=120), server_default="", nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean(), nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean(), nullable=False),
        sa.Column("balance_shards", sa.SmallInteger(), nullable=False),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(owner_type = 'customer') = (owner_id IS NOT NULL)",
            name=op.f("ck_ledger_accounts_owner"),
        ),
        sa.CheckConstraint(
            "kind IN ('asset', 'liability', 'revenue', 'expense', 'equity')",
            name=op.f("ck_ledger_accounts_kind"),
        ),
        sa.CheckConstraint(
            "owner_type IN ('customer', 'system')", name=op.f("ck_ledger_accounts_owner_type")
        ),
        sa.CheckConstraint(
            "NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)",
            name=op.f("ck_ledger_accounts_limits_exclusive"),
        ),
        sa.CheckConstraint(
            "balance_shards = 1 OR NOT (debits_must_not_exceed_credits OR credits_must_not_exceed_debits)",
            name=op.f("ck_ledger_accounts_sharded_unlimited"),
        ),
        sa.CheckConstraint(
            "balance_shards BETWEEN 1 AND 64", name=op.f("ck_ledger_accounts_balance_shards")
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["customers.id"], name=op.f("fk_ledger_accounts_owner_id_customers")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_accounts")),
    )
    op.create_index(
        "uq_ledger_accounts_customer_identity",
        "ledger_accounts",
        ["owner_id", "code", "currency", "reference"],
        unique=True,
        postgresql_where=sa.text("owner_id IS NOT NULL"),
        sqlite_where=sa.text("owner_id IS NOT NULL"),
    )
    op.create_index(
        "uq_ledger_accounts_system_identity",
        "ledger_accounts",
        ["code", "currency", "reference"],
        unique=True,
        postgresql_where=sa.text("owner_id IS NULL"),
        sqlite_where=sa.text("owner_id IS NULL"),
    )
    op.create_table(
        "ledger_open_holds",
        sa.Column("transfer_id", sa.String(length=80), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_open_holds_transfer_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("transfer_id", name=op.f("pk_ledger_open_holds")),
    )
    op.create_index(
        op.f("ix_ledger_open_holds_expires_at"), "ledger_open_holds", ["expires_at"], unique=False
    )
    op.create_table(
        "ledger_balances",
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("debits_posted", sa.BigInteger(), nullable=False),
        sa.Column("credits_posted", sa.BigInteger(), nullable=False),
        sa.Column("debits_pending", sa.BigInteger(), nullable=False),
        sa.Column("credits_pending", sa.BigInteger(), nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean(), nullable=False),
        sa.Column("credits_must_not_exceed_debits", sa.Boolean(), nullable=False),
        sa.Column("closed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.CheckConstraint(
            "NOT credits_must_not_exceed_debits OR credits_posted + credits_pending <= debits_posted",
            name=op.f("ck_ledger_balances_credits_within_debits"),
        ),
        sa.CheckConstraint(
            "NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted",
            name=op.f("ck_ledger_balances_debits_within_credits"),
        ),
        sa.CheckConstraint("credits_pending >= 0", name=op.f("ck_ledger_balances_credits_pending")),
        sa.CheckConstraint("credits_posted >= 0", name=op.f("ck_ledger_balances_credits_posted")),
        sa.CheckConstraint("debits_pending >= 0", name=op.f("ck_ledger_balances_debits_pending")),
        sa.CheckConstraint("debits_posted >= 0", name=op.f("ck_ledger_balances_debits_posted")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_balances_account_id_ledger_accounts"),
        ),
        sa.PrimaryKeyConstraint("account_id", "shard", name=op.f("pk_ledger_balances")),
    )
    op.create_table(
        "ledger_entries",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("transfer_id", sa.String(length=80), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("currency", sa.String(length=102), nullable=False),
        sa.Column("direction", sa.String(length=6), nullable=False),
        sa.Column("phase", sa.String(length=7), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "direction IN ('debit', 'credit')", name=op.f("ck_ledger_entries_direction")
        ),
        sa.CheckConstraint(
            "phase = 'pending' OR amount_minor > 0", name=op.f("ck_ledger_entries_posted_positive")
        ),
        sa.CheckConstraint("phase IN ('posted', 'pending')", name=op.f("ck_ledger_entries_phase")),
        sa.CheckConstraint("amount_minor <> 0", name=op.f("ck_ledger_entries_amount_nonzero")),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["ledger_accounts.id"],
            name=op.f("fk_ledger_entries_account_id_ledger_accounts"),
        ),
        sa.ForeignKeyConstraint(
            ["transfer_id"],
            ["ledger_transfers.id"],
            name=op.f("fk_ledger_entries_transfer_id_ledger_transfers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger_entries")),
    )
    op.create_index(
        "ix_ledger_entries_account_effective",
        "ledger_entries",
        ["account_id", "effective_at"],
        unique=False,
    )
    op.create_index(
        "ix_ledger_entries_account_id", "ledger_entries", ["account_id", "id"], unique=False
    )
    op.create_index(
        op.f("ix_ledger_entries_transfer_id"), "ledger_entries", ["transfer_id"], unique=False
    )

    _create_append_only_triggers()


def _create_append_only_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION 'ledger: % is append-only; % refused', TG_TABLE_NAME, TG_OP
                    USING ERRCODE = 'restrict_violation';
            END
            $$
            """
        )
        for table in APPEND_ONLY_TABLES:
            op.execute(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()"
            )
        return
    for table in APPEND_ONLY_TABLES:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, 'ledger: {table} is append-only; {operation} refused'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
    for table in (
        "ledger_entries",
        "ledger_balances",
        "ledger_open_holds",
        "ledger_accounts",
        "ledger_transfers",
        "ledger_transfer_failures",
    ):
        op.drop_table(table)
