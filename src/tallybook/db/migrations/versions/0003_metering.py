"""metering: meters, events, rollups, dead letters

Revision ID: 0003_metering
Revises: 0002_ledger
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0003_metering"
down_revision = "0002_ledger"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "meters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("event_type", sa.String(length=200), nullable=False),
        sa.Column("aggregation", sa.String(length=20), nullable=False),
        sa.Column("value_path", sa.String(length=200), nullable=True),
        sa.Column("filters", JSONType, nullable=False),
        sa.Column("group_by", JSONType, nullable=False),
        sa.Column("unit", sa.String(length=50), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint("key", "version", name=op.f("uq_meters_key_version")),
    )
    op.create_index(op.f("ix_meters_event_type"), "meters", ["event_type"], unique=False)


def downgrade() -> None:
    op.drop_table("meters")
