"""payments: provider accounts, collections and attempts, refunds, disputes, payouts, webhook inbox

Revision ID: 0007_payments
Revises: 0006_invoicing
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0007_payments"
down_revision = "0006_invoicing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payments_payouts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_payout_id", sa.String(length=255), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("arrival_at", UTCDateTime(), nullable=True),
        sa.Column("failure_code", sa.String(length=100), nullable=True),
        sa.Column("provider_state_at", UTCDateTime(), nullable=True),
        sa.Column("paid_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_payouts")),
        sa.UniqueConstraint(
            "provider",
            "provider_payout_id",
            name=op.f("uq_payments_payouts_provider_provider_payout_id"),
        ),
    )
    op.create_table(
        "payments_webhook_events",
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("api_version", sa.String(length=40), nullable=True),
        sa.Column("livemode", sa.Boolean(), nullable=False),
        sa.Column("object_type", sa.String(length=60), nullable=True),
        sa.Column("object_id", sa.String(length=255), nullable=True),
        sa.Column("provider_created_at", UTCDateTime(), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("processed_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'processed', 'ignored', 'parked')",
            name=op.f("ck_payments_webhook_events_status"),
        ),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_payments_webhook_events")),
    )
    op.create_index(
        "ix_payments_webhook_events_due",
        "payments_webhook_events",
        ["status", "next_attempt_at", "provider_created_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_webhook_events_object_id"),
        "payments_webhook_events",
        ["object_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_webhook_events_type"), "payments_webhook_events", ["type"], unique=False
    )
    op.create_table(
        "payments_accounts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_customer_id", sa.String(length=255), nullable=True),
        sa.Column("default_payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_present", sa.Boolean(), nullable=False),
        sa.Column("provider_deleted", sa.Boolean(), nullable=False),
        sa.Column("provider_state_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payments_accounts_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_accounts")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_payments_accounts_customer_id")),
        sa.UniqueConstraint(
            "provider",
            "provider_customer_id",
            name=op.f("uq_payments_accounts_provider_provider_customer_id"),
        ),
    )
    op.create_table(
        "payments_collections",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_number", sa.String(length=100), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_due_minor", sa.BigInteger(), nullable=False),
        sa.Column("amount_paid_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("retries_done", sa.Integer(), nullable=False),
        sa.Column("last_failed_attempt", sa.Integer(), nullable=False),
        sa.Column("first_failed_at", UTCDateTime(), nullable=True),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
        sa.Column("last_failure_code", sa.String(length=100), nullable=True),
        sa.Column("last_failure_message", sa.Text(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('collecting', 'retrying', 'awaiting_payment', 'exhausted', 'paid', 'uncollectible', 'voided')",
            name=op.f("ck_payments_collections_status"),
        ),
        sa.CheckConstraint(
            "amount_due_minor >= 0 AND amount_paid_minor >= 0",
            name=op.f("ck_payments_collections_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payments_collections_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_collections")),
        sa.UniqueConstraint("invoice_id", name=op.f("uq_payments_collections_invoice_id")),
    )
    op.create_index(
        op.f("ix_payments_collections_customer_id"),
        "payments_collections",
        ["customer_id"],
        unique=False,
    )
    op.create_index(
        "ix_payments_collections_due",
        "payments_collections",
        ["status", "next_attempt_at"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_collections_subscription_id"),
        "payments_collections",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "payments_payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("collection_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("attempt_number", sa.Integer(), nullable=True),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("provider_status", sa.String(length=40), nullable=True),
        sa.Column("provider_payment_id", sa.String(length=255), nullable=True),
        sa.Column("provider_charge_id", sa.String(length=255), nullable=True),
        sa.Column("payment_method_id", sa.String(length=255), nullable=True),
        sa.Column("failure_code", sa.String(length=100), nullable=True),
        sa.Column("decline_code", sa.String(length=100), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("fee_minor", sa.BigInteger(), nullable=True),
        sa.Column("amount_refunded_minor", sa.BigInteger(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("provider_state_at", UTCDateTime(), nullable=True),
        sa.Column("succeeded_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'processing', 'requires_action', 'awaiting_transfer', 'succeeded', 'failed', 'canceled')",
            name=op.f("ck_payments_payments_status"),
        ),
        sa.CheckConstraint(
            "amount_minor >= 0 AND amount_refunded_minor >= 0 AND amount_refunded_minor <= amount_minor",
            name=op.f("ck_payments_payments_amounts"),
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["payments_collections.id"],
            name=op.f("fk_payments_payments_collection_id_payments_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payments_payments_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_payments")),
        sa.UniqueConstraint(
            "invoice_id",
            "attempt_number",
            name=op.f("uq_payments_payments_invoice_id_attempt_number"),
        ),
        sa.UniqueConstraint(
            "provider",
            "provider_payment_id",
            name=op.f("uq_payments_payments_provider_provider_payment_id"),
        ),
    )
    op.create_index(
        op.f("ix_payments_payments_collection_id"),
        "payments_payments",
        ["collection_id"],
        unique=False,
    )
    op.create_index(
        op.f("ix_payments_payments_customer_id"), "payments_payments", ["customer_id"], unique=False
    )
    op.create_index(
        op.f("ix_payments_payments_invoice_id"), "payments_payments", ["invoice_id"], unique=False
    )
    op.create_index(
        op.f("ix_payments_payments_provider_charge_id"),
        "payments_payments",
        ["provider_charge_id"],
        unique=False,
    )
    op.create_index(
        "ix_payments_payments_status", "payments_payments", ["status", "updated_at"], unique=False
    )
    op.create_table(
        "payments_disputes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("customer_id", sa.String(length=40), nullable=True),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_dispute_id", sa.String(length=255), nullable=False),
        sa.Column("provider_charge_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("reason", sa.String(length=100), nullable=True),
        sa.Column("funds_withdrawn", sa.Boolean(), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=True),
        sa.Column("provider_state_at", UTCDateTime(), nullable=True),
        sa.Column("closed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments_payments.id"],
            name=op.f("fk_payments_disputes_payment_id_payments_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_disputes")),
        sa.UniqueConstraint(
            "provider",
            "provider_dispute_id",
            name=op.f("uq_payments_disputes_provider_provider_dispute_id"),
        ),
    )
    op.create_index(
        op.f("ix_payments_disputes_payment_id"), "payments_disputes", ["payment_id"], unique=False
    )
    op.create_table(
        "payments_refunds",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_refund_id", sa.String(length=255), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=True),
        sa.Column("failure_reason", sa.String(length=200), nullable=True),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("provider_state_at", UTCDateTime(), nullable=True),
        sa.Column("succeeded_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'succeeded', 'failed', 'canceled')",
            name=op.f("ck_payments_refunds_status"),
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_payments_refunds_amount")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_payments_refunds_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments_payments.id"],
            name=op.f("fk_payments_refunds_payment_id_payments_payments"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments_refunds")),
        sa.UniqueConstraint(
            "provider",
            "provider_refund_id",
            name=op.f("uq_payments_refunds_provider_provider_refund_id"),
        ),
    )
    op.create_index(
        op.f("ix_payments_refunds_invoice_id"), "payments_refunds", ["invoice_id"], unique=False
    )
    op.create_index(
        op.f("ix_payments_refunds_payment_id"), "payments_refunds", ["payment_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("payments_refunds")
    op.drop_table("payments_disputes")
    op.drop_table("payments_payments")
    op.drop_table("payments_collections")
    op.drop_table("payments_accounts")
    op.drop_table("payments_webhook_events")
    op.drop_table("payments_payouts")
