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

SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


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
        sa.Column("definition_seq", sa.Integer(), nullable=False),
        sa.Column("backfilled_through_seq", sa.BigInteger(), nullable=False),
        sa.Column("backfilled_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meters")),
        sa.UniqueConstraint("key", "version", name=op.f("uq_meters_key_version")),
        sa.UniqueConstraint("definition_seq", name=op.f("uq_meters_definition_seq")),
    )
    op.create_index(op.f("ix_meters_event_type"), "meters", ["event_type"], unique=False)
    op.create_table(
        "metering_events",
        sa.Column("seq", SEQ, autoincrement=True, nullable=False),
        sa.Column("source", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("data", sa.Text(), nullable=True),
        sa.Column("content_hash", sa.String(length=32), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("late", sa.Boolean(), nullable=False),
        sa.Column("meters_seen", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_metering_events")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_metering_events_source_event_id")),
    )
    op.create_index(
        "ix_metering_events_customer_type_time",
        "metering_events",
        ["customer_id", "type", "time"],
        unique=False,
    )
    op.create_table(
        "metering_rollups",
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("dims_key", sa.String(length=1200), nullable=False),
        sa.Column("shard", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("event_count", sa.BigInteger(), nullable=False),
        sa.Column("quantity", DecimalType(), nullable=False),
        sa.Column("latest_time", UTCDateTime(), nullable=True),
        sa.Column("latest_seq", sa.BigInteger(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "meter_id",
            "customer_id",
            "window_start",
            "dims_key",
            "shard",
            name=op.f("pk_metering_rollups"),
        ),
    )
    op.create_table(
        "metering_rollup_values",
        sa.Column("meter_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("dims_key", sa.String(length=1200), nullable=False),
        sa.Column("value_key", sa.String(length=300), nullable=False),
        sa.PrimaryKeyConstraint(
            "meter_id",
            "customer_id",
            "window_start",
            "dims_key",
            "value_key",
            name=op.f("pk_metering_rollup_values"),
        ),
    )
    op.create_table(
        "metering_dead_letters",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("event_id", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=200), nullable=True),
        sa.Column("subject", sa.String(length=200), nullable=True),
        sa.Column("code", sa.String(length=50), nullable=False),
        sa.Column("param", sa.String(length=300), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("last_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_metering_dead_letters")),
        sa.UniqueConstraint(
            "source", "event_id", name=op.f("uq_metering_dead_letters_source_event_id")
        ),
    )
    op.create_index(
        "ix_metering_dead_letters_status_code",
        "metering_dead_letters",
        ["status", "code"],
        unique=False,
    )
    op.create_table(
        "metering_late_events",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("type", sa.String(length=200), nullable=False),
        sa.Column("time", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("billed_at", UTCDateTime(), nullable=True),
        sa.Column("billed_ref", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_metering_late_events")),
    )
    op.create_index(
        "ix_metering_late_events_customer_billed",
        "metering_late_events",
        ["customer_id", "billed_at", "seq"],
        unique=False,
    )
    op.create_table(
        "metering_invoiced_through",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("invoiced_through", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_metering_invoiced_through")),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Rollup rows are updated in place by every batch: room on each page lets PostgreSQL
        # keep the new row version on the same page (a HOT update, no index insert).
        op.execute("ALTER TABLE metering_rollups SET (fillfactor = 70)")
    # Events are facts: PostgreSQL refuses UPDATE and DELETE on them (TRUNCATE, used by test
    # fixtures and operators, is a separate privilege and still works).
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            """
            CREATE FUNCTION metering_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'metering_events is append-only';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER metering_events_append_only BEFORE UPDATE OR DELETE ON "
            "metering_events FOR EACH ROW EXECUTE FUNCTION metering_events_append_only()"
        )
    else:
        op.execute(
            "CREATE TRIGGER metering_events_no_update BEFORE UPDATE ON metering_events "
            "BEGIN SELECT RAISE(ABORT, 'metering_events is append-only'); END"
        )
        op.execute(
            "CREATE TRIGGER metering_events_no_delete BEFORE DELETE ON metering_events "
            "BEGIN SELECT RAISE(ABORT, 'metering_events is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS metering_events_append_only ON metering_events")
        op.execute("DROP FUNCTION IF EXISTS metering_events_append_only()")
    for table in (
        "metering_invoiced_through",
        "metering_late_events",
        "metering_dead_letters",
        "metering_rollup_values",
        "metering_rollups",
        "metering_events",
        "meters",
    ):
        op.drop_table(table)
