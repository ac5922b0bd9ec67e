"""entitlements: notices on the ``tb_entitlements`` channel (PostgreSQL) for the check's mirror

Every change to what an entitlement check reads is announced, in the transaction that makes
it, by triggers (so no write path can forget one): a rollup's new quantity (``u``), any other
change to a customer's state (``c``), a catalog change (``a``: everything). See
``entitlements.mirror`` for the payloads and what the API does with them.

Revision ID: 0011_entitlement_notices
Revises: 0010_rollups_quantity_index
"""

from __future__ import annotations

from alembic import op

revision = "0011_entitlement_notices"
down_revision = "0010_rollups_quantity_index"
branch_labels = None
depends_on = None

#: Tables holding a customer's state, with the column naming the customer.
_CUSTOMER_TABLES = (
    ("customers", "id"),
    ("subscriptions", "customer_id"),
    ("entitlements_overrides", "customer_id"),
    ("entitlements_reservations", "customer_id"),
    ("entitlements_spend_limits", "customer_id"),
    ("grants", "customer_id"),
)
#: Catalog tables the check reads: any change empties every mirror.
_CATALOG_TABLES = ("catalog_features", "catalog_entitlements", "meters")
#: Truncating any table the check reads empties every mirror.
_TRUNCATED_TABLES = (
    "metering_rollups",
    "metering_events",
    *(table for table, _ in _CUSTOMER_TABLES),
    *_CATALOG_TABLES,
)

_FUNCTIONS = r"""
CREATE SEQUENCE tb_entitlements_notice_seq CACHE 100;

-- A rollup row's quantity before and after, with a number that keeps two notices of one
-- transaction distinct (PostgreSQL folds identical payloads of one transaction into one).
CREATE FUNCTION tb_entitlements_rollup_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('tb_entitlements', 'c ' || OLD.customer_id);
    ELSE
        PERFORM pg_notify('tb_entitlements', concat_ws(' ', 'u', NEW.customer_id, NEW.meter_id,
            extract(epoch FROM NEW.window_start)::bigint,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.quantity::text ELSE '-' END,
            NEW.quantity::text, nextval('tb_entitlements_notice_seq')));
    END IF;
    RETURN NULL;
END $$;

-- TG_ARGV[0]: the column naming the customer.
CREATE FUNCTION tb_entitlements_customer_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('tb_entitlements', 'c ' || (to_jsonb(OLD) ->> TG_ARGV[0]));
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('tb_entitlements', 'c ' || (to_jsonb(NEW) ->> TG_ARGV[0]));
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION tb_entitlements_all_notice() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tb_entitlements', 'a');
    RETURN NULL;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no notifications: its checks always read the database
    op.execute(_FUNCTIONS)
    # Events need none: they are never updated or deleted, and every event stored changes its
    # rollup rows in the same transaction.
    op.execute(
        "CREATE TRIGGER tb_entitlements_notice AFTER INSERT OR UPDATE OR DELETE"
        " ON metering_rollups FOR EACH ROW EXECUTE FUNCTION tb_entitlements_rollup_notice()"
    )
    for table, column in _CUSTOMER_TABLES:
        op.execute(
            f"CREATE TRIGGER tb_entitlements_notice AFTER INSERT OR UPDATE OR DELETE ON {table}"
            f" FOR EACH ROW EXECUTE FUNCTION tb_entitlements_customer_notice('{column}')"
        )
    for table in _CATALOG_TABLES:
        op.execute(
            f"CREATE TRIGGER tb_entitlements_notice AFTER INSERT OR UPDATE OR DELETE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION tb_entitlements_all_notice()"
        )
    for table in _TRUNCATED_TABLES:
        op.execute(
            f"CREATE TRIGGER tb_entitlements_truncate_notice AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION tb_entitlements_all_notice()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TRUNCATED_TABLES:
        op.execute(f"DROP TRIGGER IF EXISTS tb_entitlements_truncate_notice ON {table}")
        if table != "metering_events":
            op.execute(f"DROP TRIGGER IF EXISTS tb_entitlements_notice ON {table}")
    op.execute("DROP FUNCTION IF EXISTS tb_entitlements_all_notice()")
    op.execute("DROP FUNCTION IF EXISTS tb_entitlements_customer_notice()")
    op.execute("DROP FUNCTION IF EXISTS tb_entitlements_rollup_notice()")
    op.execute("DROP SEQUENCE IF EXISTS tb_entitlements_notice_seq")
