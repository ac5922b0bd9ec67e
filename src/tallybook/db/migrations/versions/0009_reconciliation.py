"""reconciliation: daily runs and the discrepancies they find

Revision ID: 0009_reconciliation
Revises: 0008_tooling
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime

revision = "0009_reconciliation"
down_revision = "0008_tooling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reconciliation_runs",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("run_date", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("checks", JSONType, nullable=False),
        sa.Column("discrepancies_found", sa.Integer(), nullable=False),
        sa.Column("discrepancies_new", sa.Integer(), nullable=False),
        sa.Column("discrepancies_resolved", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('running', 'completed')", name=op.f("ck_reconciliation_runs_status")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_runs")),
        sa.UniqueConstraint("run_date", name=op.f("uq_reconciliation_runs_run_date")),
    )
    op.create_table(
        "reconciliation_discrepancies",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("fingerprint", sa.String(length=300), nullable=False),
        sa.Column("objects", JSONType, nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=True),
        sa.Column("expected_minor", sa.BigInteger(), nullable=True),
        sa.Column("actual_minor", sa.BigInteger(), nullable=True),
        sa.Column("expected_quantity", DecimalType(), nullable=True),
        sa.Column("actual_quantity", DecimalType(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
        sa.Column("first_run_id", sa.String(length=40), nullable=False),
        sa.Column("last_run_id", sa.String(length=40), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_run_id", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_discrepancies")),
        sa.UniqueConstraint(
            "fingerprint", name=op.f("uq_reconciliation_discrepancies_fingerprint")
        ),
    )
    op.create_index(
        "ix_reconciliation_discrepancies_kind",
        "reconciliation_discrepancies",
        ["kind", "id"],
        unique=False,
    )
    op.create_index(
        "ix_reconciliation_discrepancies_open",
        "reconciliation_discrepancies",
        ["resolved_at", "kind", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_table("reconciliation_discrepancies")
    op.drop_table("reconciliation_runs")
