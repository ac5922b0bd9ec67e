"""invoicing: invoices, lines, credit notes, numbering

Revision ID: 0006_invoicing
Revises: 0005_grants
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0006_invoicing"
down_revision = "0005_grants"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "invoicing_number_series",
        sa.Column("series", sa.String(length=40), nullable=False),
        sa.Column("next_number", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("series", name=op.f("pk_invoicing_number_series")),
    )
    op.create_table(
        "invoicing_billing_thresholds",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoicing_billing_thresholds_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_invoicing_billing_thresholds")),
    )
    op.create_table(
        "invoicing_invoices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("period_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=True),
        sa.Column("period_start_at", UTCDateTime(), nullable=False),
        sa.Column("period_end_at", UTCDateTime(), nullable=False),
        sa.Column("subtotal_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("credits_applied_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_applied_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_carried_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_credited_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_written_off_minor", sa.BigInteger(), nullable=False),
        sa.Column("discounts", JSONType, nullable=False),
        sa.Column("credits", JSONType, nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("late_events", JSONType, nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("finalized_at", UTCDateTime(), nullable=True),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column("marked_uncollectible_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('opening', 'cycle', 'threshold', 'update')",
            name=op.f("ck_invoicing_invoices_kind"),
        ),
        sa.CheckConstraint(
            "status = 'draft' OR number IS NOT NULL", name=op.f("ck_invoicing_invoices_numbered")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')",
            name=op.f("ck_invoicing_invoices_status"),
        ),
        sa.CheckConstraint(
            "amount_due_minor >= 0 AND credits_applied_minor >= 0 AND balance_carried_minor >= 0",
            name=op.f("ck_invoicing_invoices_amounts"),
        ),
        sa.CheckConstraint(
            "total_minor = subtotal_minor - discount_minor AND amount_due_minor = total_minor + balance_carried_minor - credits_applied_minor",
            name=op.f("ck_invoicing_invoices_totals"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoicing_invoices_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoicing_invoices")),
        sa.UniqueConstraint("number", name=op.f("uq_invoicing_invoices_number")),
        sa.UniqueConstraint(
            "subscription_id",
            "period_id",
            "kind",
            "sequence",
            name=op.f("uq_invoicing_invoices_subscription_id_period_id_kind_sequence"),
        ),
    )
    op.create_index(
        "ix_invoicing_invoices_customer", "invoicing_invoices", ["customer_id", "id"], unique=False
    )
    op.create_index(
        "ix_invoicing_invoices_period", "invoicing_invoices", ["period_id"], unique=False
    )
    op.create_index(
        "ix_invoicing_invoices_status", "invoicing_invoices", ["status", "id"], unique=False
    )
    op.create_index(
        "ix_invoicing_invoices_subscription",
        "invoicing_invoices",
        ["subscription_id", "id"],
        unique=False,
    )
    op.create_table(
        "invoicing_credit_notes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("receivable_minor", sa.BigInteger(), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(length=40), nullable=False),
        sa.Column("memo", sa.String(length=500), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "amount_minor > 0 AND receivable_minor >= 0 AND balance_minor >= 0 AND amount_minor = receivable_minor + balance_minor",
            name=op.f("ck_invoicing_credit_notes_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_invoicing_credit_notes_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoicing_invoices.id"],
            name=op.f("fk_invoicing_credit_notes_invoice_id_invoicing_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoicing_credit_notes")),
        sa.UniqueConstraint("number", name=op.f("uq_invoicing_credit_notes_number")),
    )
    op.create_index(
        "ix_invoicing_credit_notes_customer",
        "invoicing_credit_notes",
        ["customer_id", "id"],
        unique=False,
    )
    op.create_index(
        "ix_invoicing_credit_notes_invoice",
        "invoicing_credit_notes",
        ["invoice_id", "id"],
        unique=False,
    )
    op.create_table(
        "invoicing_invoice_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("line_key", sa.String(length=200), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("quantity", DecimalType(), nullable=True),
        sa.Column("usage_credit_quantity", DecimalType(), nullable=False),
        sa.Column("price_id", sa.String(length=40), nullable=True),
        sa.Column("price_key", sa.String(length=100), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("plan_version_id", sa.String(length=40), nullable=True),
        sa.Column("phase_id", sa.String(length=40), nullable=True),
        sa.Column("period_id", sa.String(length=40), nullable=True),
        sa.Column("charge_id", sa.String(length=40), nullable=True),
        sa.Column("service_start_at", UTCDateTime(), nullable=False),
        sa.Column("service_end_at", UTCDateTime(), nullable=False),
        sa.Column("breakdown", JSONType, nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoicing_invoices.id"],
            name=op.f("fk_invoicing_invoice_lines_invoice_id_invoicing_invoices"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoicing_invoice_lines")),
    )
    op.create_index(
        "ix_invoicing_invoice_lines_invoice",
        "invoicing_invoice_lines",
        ["invoice_id", "position"],
        unique=False,
    )
    op.create_index(
        "ix_invoicing_invoice_lines_period_key",
        "invoicing_invoice_lines",
        ["period_id", "line_key"],
        unique=False,
    )
    op.create_table(
        "invoicing_payments",
        sa.Column("payment_id", sa.String(length=100), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("paid_at", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoicing_invoices.id"],
            name=op.f("fk_invoicing_payments_invoice_id_invoicing_invoices"),
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_invoicing_payments")),
    )
    op.create_index(
        op.f("ix_invoicing_payments_invoice_id"), "invoicing_payments", ["invoice_id"], unique=False
    )
    op.create_table(
        "invoicing_credit_note_lines",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("credit_note_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_line_id", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.ForeignKeyConstraint(
            ["credit_note_id"],
            ["invoicing_credit_notes.id"],
            name=op.f("fk_invoicing_credit_note_lines_credit_note_id_invoicing_credit_notes"),
        ),
        sa.ForeignKeyConstraint(
            ["invoice_line_id"],
            ["invoicing_invoice_lines.id"],
            name=op.f("fk_invoicing_credit_note_lines_invoice_line_id_invoicing_invoice_lines"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_invoicing_credit_note_lines")),
    )
    op.create_index(
        op.f("ix_invoicing_credit_note_lines_credit_note_id"),
        "invoicing_credit_note_lines",
        ["credit_note_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_invoicing_credit_note_lines_invoice_line_id"),
        "invoicing_credit_note_lines",
        ["invoice_line_id"],
        unique=False,
    )
    _create_frozen_line_triggers()


def downgrade() -> None:
    _drop_frozen_line_triggers()
    op.drop_table("invoicing_credit_note_lines")
    op.drop_table("invoicing_payments")
    op.drop_table("invoicing_invoice_lines")
    op.drop_table("invoicing_credit_notes")
    op.drop_table("invoicing_invoices")
    op.drop_table("invoicing_billing_thresholds")
    op.drop_table("invoicing_number_series")


# A finalized invoice's lines never change, whatever code runs (the service only ever writes
# lines of drafts; this is the database's half of the rule). TRUNCATE is not a row operation.
_LINE_IS_FROZEN = "(SELECT status FROM invoicing_invoices WHERE id = OLD.invoice_id) <> 'draft'"


def _create_frozen_line_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION invoicing_refuse_frozen_line() RETURNS trigger AS $$
            BEGIN
                IF (SELECT status FROM invoicing_invoices WHERE id = OLD.invoice_id) <> 'draft' THEN
                    RAISE EXCEPTION 'lines of finalized invoice % are immutable', OLD.invoice_id;
                END IF;
                IF TG_OP = 'DELETE' THEN
                    RETURN OLD;
                END IF;
                RETURN NEW;
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER invoicing_invoice_lines_frozen BEFORE UPDATE OR DELETE "
            "ON invoicing_invoice_lines FOR EACH ROW EXECUTE FUNCTION invoicing_refuse_frozen_line()"
        )
        return
    for operation in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER invoicing_invoice_lines_frozen_{operation.lower()} BEFORE {operation} "
            f"ON invoicing_invoice_lines WHEN {_LINE_IS_FROZEN} "
            "BEGIN SELECT RAISE(ABORT, 'lines of a finalized invoice are immutable'); END"
        )


def _drop_frozen_line_triggers() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "DROP TRIGGER IF EXISTS invoicing_invoice_lines_frozen ON invoicing_invoice_lines"
        )
        op.execute("DROP FUNCTION IF EXISTS invoicing_refuse_frozen_line()")
        return
    for operation in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS invoicing_invoice_lines_frozen_{operation}")
