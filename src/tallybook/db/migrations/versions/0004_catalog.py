"""catalog and subscriptions: features, plans, versions, prices, subscriptions

Revision ID: 0004_catalog
Revises: 0003_metering
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0004_catalog"
down_revision = "0003_metering"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_features",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_catalog_features_meter_id_meters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_features")),
        sa.UniqueConstraint("key", name=op.f("uq_catalog_features_key")),
    )
    op.create_table(
        "catalog_plans",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_plans")),
        sa.UniqueConstraint("key", name=op.f("uq_catalog_plans_key")),
    )
    op.create_table(
        "catalog_plan_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("interval_unit", sa.String(length=8), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("minimum_commitment_minor", sa.BigInteger(), nullable=True),
        sa.Column("billing_threshold_minor", sa.BigInteger(), nullable=True),
        sa.Column("upgrade_policy", sa.String(length=32), nullable=False),
        sa.Column("downgrade_policy", sa.String(length=32), nullable=False),
        sa.Column("same_price_policy", sa.String(length=32), nullable=False),
        sa.Column("cancellation_credit", sa.String(length=16), nullable=False),
        sa.Column("trial_period_days", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("published_at", UTCDateTime(), nullable=True),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'published', 'archived')",
            name=op.f("ck_catalog_plan_versions_status"),
        ),
        sa.CheckConstraint(
            "billing_threshold_minor IS NULL OR billing_threshold_minor > 0",
            name=op.f("ck_catalog_plan_versions_billing_threshold"),
        ),
        sa.CheckConstraint(
            "interval_count >= 1", name=op.f("ck_catalog_plan_versions_interval_count")
        ),
        sa.CheckConstraint(
            "minimum_commitment_minor IS NULL OR minimum_commitment_minor >= 0",
            name=op.f("ck_catalog_plan_versions_minimum_commitment"),
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["catalog_plans.id"],
            name=op.f("fk_catalog_plan_versions_plan_id_catalog_plans"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_plan_versions")),
        sa.UniqueConstraint(
            "plan_id", "version", name=op.f("uq_catalog_plan_versions_plan_id_version")
        ),
    )
    op.create_index(
        op.f("ix_catalog_plan_versions_plan_id"), "catalog_plan_versions", ["plan_id"], unique=False
    )
    op.create_table(
        "catalog_prices",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=8), nullable=False),
        sa.Column("timing", sa.String(length=16), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("model", sa.String(length=16), nullable=True),
        sa.Column("unit_price", DecimalType(), nullable=True),
        sa.Column("tiers", JSONType, nullable=True),
        sa.Column("package_size", DecimalType(), nullable=True),
        sa.Column("package_price", DecimalType(), nullable=True),
        sa.Column("package_rounding", sa.String(length=8), nullable=True),
        sa.Column("included_quantity", DecimalType(), nullable=False),
        sa.Column("max_charge_minor", sa.BigInteger(), nullable=True),
        sa.Column("group_filter", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(type = 'flat' AND amount_minor IS NOT NULL AND timing IS NOT NULL) OR (type = 'usage' AND meter_id IS NOT NULL AND model IS NOT NULL)",
            name=op.f("ck_catalog_prices_shape"),
        ),
        sa.CheckConstraint("type IN ('flat', 'usage')", name=op.f("ck_catalog_prices_type")),
        sa.CheckConstraint(
            "amount_minor IS NULL OR amount_minor >= 0", name=op.f("ck_catalog_prices_amount")
        ),
        sa.CheckConstraint(
            "max_charge_minor IS NULL OR max_charge_minor >= 0",
            name=op.f("ck_catalog_prices_max_charge"),
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_catalog_prices_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_catalog_prices_plan_version_id_catalog_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_prices")),
        sa.UniqueConstraint(
            "plan_version_id", "key", name=op.f("uq_catalog_prices_plan_version_id_key")
        ),
    )
    op.create_index(
        op.f("ix_catalog_prices_meter_id"), "catalog_prices", ["meter_id"], unique=False
    )
    op.create_index(
        "ix_catalog_prices_version_position",
        "catalog_prices",
        ["plan_version_id", "position"],
        unique=False,
    )
    op.create_table(
        "catalog_entitlements",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("feature_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("config", JSONType, nullable=True),
        sa.Column("limit_quantity", DecimalType(), nullable=True),
        sa.Column("enforcement", sa.String(length=8), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "enforcement IS NULL OR enforcement IN ('hard', 'soft')",
            name=op.f("ck_catalog_entitlements_enforcement"),
        ),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["catalog_features.id"],
            name=op.f("fk_catalog_entitlements_feature_id_catalog_features"),
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_catalog_entitlements_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_catalog_entitlements_plan_version_id_catalog_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_entitlements")),
        sa.UniqueConstraint(
            "plan_version_id",
            "feature_id",
            name=op.f("uq_catalog_entitlements_plan_version_id_feature_id"),
        ),
    )
    op.create_index(
        op.f("ix_catalog_entitlements_feature_id"),
        "catalog_entitlements",
        ["feature_id"],
        unique=False,
    )
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("plan_id", sa.String(length=40), nullable=False),
        sa.Column("plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("current_phase_id", sa.String(length=40), nullable=True),
        sa.Column("billing_anchor_at", UTCDateTime(), nullable=True),
        sa.Column("anchor_is_explicit", sa.Boolean(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("trial_start_at", UTCDateTime(), nullable=True),
        sa.Column("trial_end_at", UTCDateTime(), nullable=True),
        sa.Column("trial_end_behavior", sa.String(length=16), nullable=False),
        sa.Column("current_period_id", sa.String(length=40), nullable=True),
        sa.Column("current_period_start_at", UTCDateTime(), nullable=True),
        sa.Column("current_period_end_at", UTCDateTime(), nullable=True),
        sa.Column("cancel_at_period_end", sa.Boolean(), nullable=False),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=32), nullable=True),
        sa.Column("next_action_at", UTCDateTime(), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('trialing', 'active', 'past_due', 'unpaid', 'paused', 'canceled')",
            name=op.f("ck_subscriptions_status"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_subscriptions_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["plan_id"], ["catalog_plans.id"], name=op.f("fk_subscriptions_plan_id_catalog_plans")
        ),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_subscriptions_plan_version_id_catalog_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    op.create_index(
        "ix_subscriptions_current_period_end_at",
        "subscriptions",
        ["current_period_end_at"],
        unique=False,
    )
    op.create_index(
        "ix_subscriptions_customer", "subscriptions", ["customer_id", "id"], unique=False
    )
    op.create_index(
        "ix_subscriptions_next_action_at", "subscriptions", ["next_action_at"], unique=False
    )
    op.create_index(op.f("ix_subscriptions_plan_id"), "subscriptions", ["plan_id"], unique=False)
    op.create_index(
        op.f("ix_subscriptions_plan_version_id"), "subscriptions", ["plan_version_id"], unique=False
    )
    op.create_table(
        "subscription_phases",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=True),
        sa.Column("billing_anchor_at", UTCDateTime(), nullable=True),
        sa.Column("change_id", sa.String(length=40), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "end_at IS NULL OR end_at >= start_at", name=op.f("ck_subscription_phases_window")
        ),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_subscription_phases_plan_version_id_catalog_plan_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_phases_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_phases")),
    )
    op.create_index(
        "ix_subscription_phases_subscription",
        "subscription_phases",
        ["subscription_id", "start_at"],
        unique=False,
    )
    op.create_table(
        "subscription_periods",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=False),
        sa.Column("end_at", UTCDateTime(), nullable=False),
        sa.Column("nominal_start_at", UTCDateTime(), nullable=False),
        sa.Column("nominal_end_at", UTCDateTime(), nullable=False),
        sa.Column("end_reason", sa.String(length=24), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('trial', 'regular')", name=op.f("ck_subscription_periods_kind")
        ),
        sa.CheckConstraint(
            "status IN ('current', 'ended')", name=op.f("ck_subscription_periods_status")
        ),
        sa.CheckConstraint(
            "nominal_start_at <= start_at AND start_at <= end_at AND end_at <= nominal_end_at",
            name=op.f("ck_subscription_periods_window"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_periods_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_periods")),
    )
    op.create_index(
        "ix_subscription_periods_ended", "subscription_periods", ["status", "end_at"], unique=False
    )
    op.create_index(
        "ix_subscription_periods_subscription",
        "subscription_periods",
        ["subscription_id", "start_at"],
        unique=False,
    )
    op.create_table(
        "subscription_changes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("from_plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("to_plan_version_id", sa.String(length=40), nullable=True),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("policy", sa.String(length=32), nullable=True),
        sa.Column("credit_unused", sa.Boolean(), nullable=True),
        sa.Column("invoice_now", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=24), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("requested_at", UTCDateTime(), nullable=False),
        sa.Column("applied_at", UTCDateTime(), nullable=True),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('plan_change', 'cancel')", name=op.f("ck_subscription_changes_kind")
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'applied', 'canceled')",
            name=op.f("ck_subscription_changes_status"),
        ),
        sa.ForeignKeyConstraint(
            ["from_plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_subscription_changes_from_plan_version_id_catalog_plan_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_changes_subscription_id_subscriptions"),
        ),
        sa.ForeignKeyConstraint(
            ["to_plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_subscription_changes_to_plan_version_id_catalog_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_changes")),
    )
    op.create_index(
        "ix_subscription_changes_subscription",
        "subscription_changes",
        ["subscription_id", "status"],
        unique=False,
    )
    op.create_table(
        "subscription_charges",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("period_id", sa.String(length=40), nullable=False),
        sa.Column("change_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("credited_minor", sa.BigInteger(), nullable=False),
        sa.Column("credited_from_at", UTCDateTime(), nullable=True),
        sa.Column("credits_charge_id", sa.String(length=40), nullable=True),
        sa.Column("price_id", sa.String(length=40), nullable=True),
        sa.Column("price_key", sa.String(length=100), nullable=True),
        sa.Column("plan_version_id", sa.String(length=40), nullable=True),
        sa.Column("service_start_at", UTCDateTime(), nullable=False),
        sa.Column("service_end_at", UTCDateTime(), nullable=False),
        sa.Column("breakdown", JSONType, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("invoice_now", sa.Boolean(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=True),
        sa.Column("invoiced_at", UTCDateTime(), nullable=True),
        sa.Column("dedup_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('pending', 'invoiced')", name=op.f("ck_subscription_charges_status")
        ),
        sa.CheckConstraint(
            "credited_minor >= 0 AND (credited_minor = 0 OR credited_minor <= amount_minor)",
            name=op.f("ck_subscription_charges_credited"),
        ),
        sa.CheckConstraint(
            "service_start_at <= service_end_at", name=op.f("ck_subscription_charges_window")
        ),
        sa.ForeignKeyConstraint(
            ["change_id"],
            ["subscription_changes.id"],
            name=op.f("fk_subscription_charges_change_id_subscription_changes"),
        ),
        sa.ForeignKeyConstraint(
            ["credits_charge_id"],
            ["subscription_charges.id"],
            name=op.f("fk_subscription_charges_credits_charge_id_subscription_charges"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_subscription_charges_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["period_id"],
            ["subscription_periods.id"],
            name=op.f("fk_subscription_charges_period_id_subscription_periods"),
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_subscription_charges_subscription_id_subscriptions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription_charges")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_subscription_charges_dedup_key")),
    )
    op.create_index(
        op.f("ix_subscription_charges_invoice_id"),
        "subscription_charges",
        ["invoice_id"],
        unique=False,
    )
    op.create_index(
        "ix_subscription_charges_pending",
        "subscription_charges",
        ["subscription_id", "status", "service_start_at"],
        unique=False,
    )
    op.create_index(
        "ix_subscription_charges_period", "subscription_charges", ["period_id"], unique=False
    )
    _install_immutability_triggers()


def downgrade() -> None:
    _drop_immutability_triggers()
    op.drop_table("subscription_charges")
    op.drop_table("subscription_changes")
    op.drop_table("subscription_periods")
    op.drop_table("subscription_phases")
    op.drop_table("subscriptions")
    op.drop_table("catalog_entitlements")
    op.drop_table("catalog_prices")
    op.drop_table("catalog_plan_versions")
    op.drop_table("catalog_plans")
    op.drop_table("catalog_features")


# A published plan version is immutable: its terms, prices and entitlements never change,
# whatever code runs (the service refuses first with plan_version_immutable; these triggers
# are the database's half of the rule). Archiving a published version is the one update allowed.
_FROZEN_VERSION_COLUMNS = (
    "plan_id",
    "version",
    "currency",
    "interval_unit",
    "interval_count",
    "minimum_commitment_minor",
    "billing_threshold_minor",
    "upgrade_policy",
    "downgrade_policy",
    "same_price_policy",
    "cancellation_credit",
    "trial_period_days",
    "description",
    "published_at",
)
_CHILD_TABLES = ("catalog_prices", "catalog_entitlements")


def _install_immutability_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        _install_pg()
    else:
        _install_sqlite()


def _install_sqlite() -> None:
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in _FROZEN_VERSION_COLUMNS)
    op.execute(
        "CREATE TRIGGER catalog_plan_versions_frozen BEFORE UPDATE ON catalog_plan_versions "
        f"WHEN OLD.status <> 'draft' AND (NEW.status = 'draft' OR {changed}) BEGIN "
        "SELECT RAISE(ABORT, 'plan_version_immutable: a published plan version cannot change'); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER catalog_plan_versions_undeletable BEFORE DELETE ON catalog_plan_versions "
        "WHEN OLD.status <> 'draft' BEGIN "
        "SELECT RAISE(ABORT, 'plan_version_immutable: a published plan version cannot be deleted'); "
        "END"
    )
    for table in _CHILD_TABLES:
        for operation, row in (("INSERT", "NEW"), ("UPDATE", "OLD"), ("DELETE", "OLD")):
            guard = (
                f"(SELECT status FROM catalog_plan_versions WHERE id = {row}.plan_version_id) "
                "<> 'draft'"
            )
            if operation == "UPDATE":
                guard += (
                    " OR (SELECT status FROM catalog_plan_versions "
                    "WHERE id = NEW.plan_version_id) <> 'draft'"
                )
            op.execute(
                f"CREATE TRIGGER {table}_frozen_{operation.lower()} BEFORE {operation} ON {table} "
                f"WHEN {guard} BEGIN "
                "SELECT RAISE(ABORT, 'plan_version_immutable: a published plan version cannot "
                "change'); END"
            )


def _install_pg() -> None:
    old_columns = ", ".join(f"OLD.{c}" for c in _FROZEN_VERSION_COLUMNS)
    new_columns = ", ".join(f"NEW.{c}" for c in _FROZEN_VERSION_COLUMNS)
    op.execute(
        f"""
        CREATE FUNCTION catalog_plan_versions_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          IF TG_OP = 'DELETE' THEN
            IF OLD.status <> 'draft' THEN
              RAISE EXCEPTION 'plan_version_immutable: plan version % is %', OLD.id, OLD.status;
            END IF;
            RETURN OLD;
          END IF;
          IF OLD.status <> 'draft' AND (
            NEW.status = 'draft' OR ROW({new_columns}) IS DISTINCT FROM ROW({old_columns})
          ) THEN
            RAISE EXCEPTION 'plan_version_immutable: plan version % is %', OLD.id, OLD.status;
          END IF;
          RETURN NEW;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER catalog_plan_versions_frozen BEFORE UPDATE OR DELETE "
        "ON catalog_plan_versions FOR EACH ROW EXECUTE FUNCTION catalog_plan_versions_frozen()"
    )
    op.execute(
        """
        CREATE FUNCTION catalog_version_children_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE
          checked text[];
          version_status text;
          version_id text;
        BEGIN
          IF TG_OP = 'INSERT' THEN
            checked := ARRAY[NEW.plan_version_id];
          ELSIF TG_OP = 'UPDATE' THEN
            checked := ARRAY[OLD.plan_version_id, NEW.plan_version_id];
          ELSE
            checked := ARRAY[OLD.plan_version_id];
          END IF;
          FOREACH version_id IN ARRAY checked LOOP
            SELECT status INTO version_status FROM catalog_plan_versions WHERE id = version_id;
            IF version_status IS NOT NULL AND version_status <> 'draft' THEN
              RAISE EXCEPTION 'plan_version_immutable: plan version % is %',
                version_id, version_status;
            END IF;
          END LOOP;
          IF TG_OP = 'DELETE' THEN
            RETURN OLD;
          END IF;
          RETURN NEW;
        END $$
        """
    )
    for table in _CHILD_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_frozen BEFORE INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION catalog_version_children_frozen()"
        )


def _drop_immutability_triggers() -> None:
    if op.get_context().dialect.name == "postgresql":
        for table in _CHILD_TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_frozen ON {table}")
        op.execute("DROP TRIGGER IF EXISTS catalog_plan_versions_frozen ON catalog_plan_versions")
        op.execute("DROP FUNCTION IF EXISTS catalog_version_children_frozen()")
        op.execute("DROP FUNCTION IF EXISTS catalog_plan_versions_frozen()")
        return
    op.execute("DROP TRIGGER IF EXISTS catalog_plan_versions_frozen")
    op.execute("DROP TRIGGER IF EXISTS catalog_plan_versions_undeletable")
    for table in _CHILD_TABLES:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_frozen_{operation}")
