"""metering: the rollups' quantity in an index (PostgreSQL), for the entitlement check's sums

Revision ID: 0010_rollups_quantity_index
Revises: 0009_reconciliation
"""

from __future__ import annotations

from alembic import op

revision = "0010_rollups_quantity_index"
down_revision = "0009_reconciliation"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite reads the primary key (see metering.models.Rollup)
    # Built without blocking ingestion on a live table: CONCURRENTLY, outside the transaction.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_metering_rollups_quantity",
            "metering_rollups",
            ["meter_id", "customer_id", "window_start"],
            postgresql_include=["quantity"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_metering_rollups_quantity",
            table_name="metering_rollups",
            postgresql_concurrently=True,
            if_exists=True,
        )
