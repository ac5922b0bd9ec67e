"""grants and entitlements: credit grants, recurring grants, plan credit rules, promotion codes,
entitlement overrides, reservations, spend limits and limit alerts

Revision ID: 0005_grants
Revises: 0004_catalog
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from tallybook.db.types import DecimalType, JSONType, UTCDateTime


revision = "0005_grants"
down_revision = "0004_catalog"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entitlements_reservation_locks",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("feature_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "customer_id",
            "feature_id",
            "period_start",
            name=op.f("pk_entitlements_reservation_locks"),
        ),
    )
    op.create_table(
        "grants_promotion_codes",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("percent_off", DecimalType(), nullable=True),
        sa.Column("amount_off_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("duration", sa.String(length=16), nullable=False),
        sa.Column("duration_periods", sa.Integer(), nullable=True),
        sa.Column("eligible_plan_ids", JSONType, nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("max_redemptions", sa.Integer(), nullable=True),
        sa.Column("max_redemptions_per_customer", sa.Integer(), nullable=True),
        sa.Column("times_redeemed", sa.Integer(), nullable=False),
        sa.Column("credit", JSONType, nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "duration IN ('once', 'repeating', 'forever')",
            name=op.f("ck_grants_promotion_codes_duration"),
        ),
        sa.CheckConstraint(
            "kind IN ('percent_off', 'amount_off', 'credit')",
            name=op.f("ck_grants_promotion_codes_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'inactive')", name=op.f("ck_grants_promotion_codes_status")
        ),
        sa.CheckConstraint(
            "max_redemptions IS NULL OR times_redeemed <= max_redemptions",
            name=op.f("ck_grants_promotion_codes_redemptions_within_max"),
        ),
        sa.CheckConstraint(
            "times_redeemed >= 0", name=op.f("ck_grants_promotion_codes_times_redeemed")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants_promotion_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_grants_promotion_codes_code")),
    )
    op.create_table(
        "entitlements_limit_alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subject", sa.String(length=40), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("threshold_percent", sa.Integer(), nullable=False),
        sa.Column("measured", sa.String(length=64), nullable=False),
        sa.Column("limit_value", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('threshold', 'exceeded')", name=op.f("ck_entitlements_limit_alerts_kind")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_entitlements_limit_alerts_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlements_limit_alerts")),
        sa.UniqueConstraint(
            "customer_id",
            "subject",
            "period_start",
            "kind",
            "threshold_percent",
            name=op.f(
                "uq_entitlements_limit_alerts_customer_id_subject_period_start_kind_threshold_percent"
            ),
        ),
    )
    op.create_table(
        "entitlements_spend_limits",
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("thresholds", JSONType, nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint("amount_minor >= 0", name=op.f("ck_entitlements_spend_limits_amount")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_entitlements_spend_limits_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_entitlements_spend_limits")),
    )
    op.create_table(
        "grants_promotion_redemptions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("promotion_code_id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("grant_id", sa.String(length=40), nullable=True),
        sa.Column("periods_used", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("redeemed_by", sa.String(length=200), nullable=False),
        sa.Column("redeemed_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "status IN ('active', 'ended')", name=op.f("ck_grants_promotion_redemptions_status")
        ),
        sa.CheckConstraint(
            "periods_used >= 0", name=op.f("ck_grants_promotion_redemptions_periods_used")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_grants_promotion_redemptions_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["promotion_code_id"],
            ["grants_promotion_codes.id"],
            name=op.f("fk_grants_promotion_redemptions_promotion_code_id_grants_promotion_codes"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants_promotion_redemptions")),
    )
    op.create_index(
        "ix_grants_promotion_redemptions_code_customer",
        "grants_promotion_redemptions",
        ["promotion_code_id", "customer_id"],
        unique=False,
    )
    op.create_index(
        "ix_grants_promotion_redemptions_subscription",
        "grants_promotion_redemptions",
        ["subscription_id"],
        unique=False,
    )
    op.create_table(
        "entitlements_overrides",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("feature_id", sa.String(length=40), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=True),
        sa.Column("config", JSONType, nullable=True),
        sa.Column("limit_quantity", DecimalType(), nullable=True),
        sa.Column("unlimited", sa.Boolean(), nullable=False),
        sa.Column("enforcement", sa.String(length=8), nullable=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ended_at", UTCDateTime(), nullable=True),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "enforcement IS NULL OR enforcement IN ('hard', 'soft')",
            name=op.f("ck_entitlements_overrides_enforcement"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'revoked', 'replaced')",
            name=op.f("ck_entitlements_overrides_status"),
        ),
        sa.CheckConstraint(
            "expires_at IS NULL OR expires_at > starts_at",
            name=op.f("ck_entitlements_overrides_window"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_entitlements_overrides_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["catalog_features.id"],
            name=op.f("fk_entitlements_overrides_feature_id_catalog_features"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlements_overrides")),
    )
    op.create_index(
        "ix_entitlements_overrides_customer_feature",
        "entitlements_overrides",
        ["customer_id", "feature_id", "status"],
        unique=False,
    )
    op.create_table(
        "entitlements_reservations",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("feature_id", sa.String(length=40), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("period_start", UTCDateTime(), nullable=True),
        sa.Column("period_end", UTCDateTime(), nullable=True),
        sa.Column("quantity", DecimalType(), nullable=True),
        sa.Column("settled_quantity", DecimalType(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("settled_amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("holds", JSONType, nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=False),
        sa.Column("event_data", JSONType, nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'settled', 'released', 'expired')",
            name=op.f("ck_entitlements_reservations_status"),
        ),
        sa.CheckConstraint(
            "amount_minor IS NULL OR amount_minor > 0",
            name=op.f("ck_entitlements_reservations_amount"),
        ),
        sa.CheckConstraint(
            "quantity IS NOT NULL OR amount_minor IS NOT NULL",
            name=op.f("ck_entitlements_reservations_something_reserved"),
        ),
        sa.CheckConstraint(
            "settled_amount_minor IS NULL OR (settled_amount_minor >= 0 AND settled_amount_minor <= amount_minor)",
            name=op.f("ck_entitlements_reservations_settled_amount"),
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_entitlements_reservations_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["feature_id"],
            ["catalog_features.id"],
            name=op.f("fk_entitlements_reservations_feature_id_catalog_features"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_entitlements_reservations")),
    )
    op.create_index(
        "ix_entitlements_reservations_customer_feature",
        "entitlements_reservations",
        ["customer_id", "feature_id", "status"],
        unique=False,
    )
    op.create_index(
        "ix_entitlements_reservations_status_expires_at",
        "entitlements_reservations",
        ["status", "expires_at"],
        unique=False,
    )
    op.create_table(
        "grants_plan_credit_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("plan_version_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("asset", sa.String(length=102), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("interval_unit", sa.String(length=8), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("expiry", sa.String(length=16), nullable=False),
        sa.Column("expires_after_days", sa.Integer(), nullable=True),
        sa.Column("rollover", sa.String(length=8), nullable=False),
        sa.Column("rollover_cap_minor", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("archived_at", UTCDateTime(), nullable=True),
        sa.CheckConstraint(
            "expiry IN ('next_instance', 'after_days', 'never')",
            name=op.f("ck_grants_plan_credit_rules_expiry"),
        ),
        sa.CheckConstraint(
            "interval_unit IN ('day', 'week', 'month', 'year')",
            name=op.f("ck_grants_plan_credit_rules_interval"),
        ),
        sa.CheckConstraint(
            "kind IN ('monetary', 'usage')", name=op.f("ck_grants_plan_credit_rules_kind")
        ),
        sa.CheckConstraint(
            "rollover IN ('none', 'capped')", name=op.f("ck_grants_plan_credit_rules_rollover")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'archived')", name=op.f("ck_grants_plan_credit_rules_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_grants_plan_credit_rules_amount")),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_grants_plan_credit_rules_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["plan_version_id"],
            ["catalog_plan_versions.id"],
            name=op.f("fk_grants_plan_credit_rules_plan_version_id_catalog_plan_versions"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants_plan_credit_rules")),
    )
    op.create_index(
        "ix_grants_plan_credit_rules_version",
        "grants_plan_credit_rules",
        ["plan_version_id", "status"],
        unique=False,
    )
    op.create_table(
        "grants_promotion_discount_uses",
        sa.Column("redemption_id", sa.String(length=40), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("invoice_id", sa.String(length=40), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["redemption_id"],
            ["grants_promotion_redemptions.id"],
            name=op.f(
                "fk_grants_promotion_discount_uses_redemption_id_grants_promotion_redemptions"
            ),
        ),
        sa.PrimaryKeyConstraint(
            "redemption_id", "period_start", name=op.f("pk_grants_promotion_discount_uses")
        ),
    )
    op.create_table(
        "grants_recurring",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("asset", sa.String(length=102), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("interval_unit", sa.String(length=8), nullable=False),
        sa.Column("interval_count", sa.Integer(), nullable=False),
        sa.Column("anchor_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=True),
        sa.Column("expiry", sa.String(length=16), nullable=False),
        sa.Column("expires_after_days", sa.Integer(), nullable=True),
        sa.Column("rollover", sa.String(length=8), nullable=False),
        sa.Column("rollover_cap_minor", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("next_index", sa.Integer(), nullable=False),
        sa.Column("next_issue_at", UTCDateTime(), nullable=True),
        sa.Column("subscription_id", sa.String(length=40), nullable=True),
        sa.Column("plan_credit_rule_id", sa.String(length=40), nullable=True),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("canceled_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(rollover = 'none' AND rollover_cap_minor IS NULL) OR (rollover = 'capped' AND rollover_cap_minor IS NOT NULL AND rollover_cap_minor >= 0)",
            name=op.f("ck_grants_recurring_rollover_cap"),
        ),
        sa.CheckConstraint(
            "expiry IN ('next_instance', 'after_days', 'never')",
            name=op.f("ck_grants_recurring_expiry"),
        ),
        sa.CheckConstraint(
            "interval_unit IN ('day', 'week', 'month', 'year')",
            name=op.f("ck_grants_recurring_interval"),
        ),
        sa.CheckConstraint("kind IN ('monetary', 'usage')", name=op.f("ck_grants_recurring_kind")),
        sa.CheckConstraint(
            "rollover IN ('none', 'capped')", name=op.f("ck_grants_recurring_rollover")
        ),
        sa.CheckConstraint(
            "source IN ('promotion', 'purchase', 'goodwill', 'plan')",
            name=op.f("ck_grants_recurring_source"),
        ),
        sa.CheckConstraint(
            "status IN ('active', 'canceled', 'ended')", name=op.f("ck_grants_recurring_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_grants_recurring_amount")),
        sa.CheckConstraint("interval_count >= 1", name=op.f("ck_grants_recurring_interval_count")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_grants_recurring_customer_id_customers"),
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_grants_recurring_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["plan_credit_rule_id"],
            ["grants_plan_credit_rules.id"],
            name=op.f("fk_grants_recurring_plan_credit_rule_id_grants_plan_credit_rules"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants_recurring")),
        sa.UniqueConstraint(
            "subscription_id",
            "plan_credit_rule_id",
            name=op.f("uq_grants_recurring_subscription_id_plan_credit_rule_id"),
        ),
    )
    op.create_index(
        "ix_grants_recurring_customer", "grants_recurring", ["customer_id", "id"], unique=False
    )
    op.create_index(
        "ix_grants_recurring_status_next_issue_at",
        "grants_recurring",
        ["status", "next_issue_at"],
        unique=False,
    )
    op.create_table(
        "grants",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("asset", sa.String(length=102), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("meter_id", sa.String(length=40), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("rollover_minor", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("effective_at", UTCDateTime(), nullable=False),
        sa.Column("expires_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("issued_by", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("recurring_grant_id", sa.String(length=40), nullable=True),
        sa.Column("period_index", sa.Integer(), nullable=True),
        sa.Column("promotion_redemption_id", sa.String(length=40), nullable=True),
        sa.Column("metadata", JSONType, nullable=False),
        sa.Column("voided_at", UTCDateTime(), nullable=True),
        sa.Column("voided_by", sa.String(length=200), nullable=True),
        sa.Column("void_reason", sa.Text(), nullable=True),
        sa.Column("expired_at", UTCDateTime(), nullable=True),
        sa.Column("sweeps", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.CheckConstraint(
            "(kind = 'monetary' AND currency IS NOT NULL AND meter_id IS NULL) OR (kind = 'usage' AND currency IS NULL AND meter_id IS NOT NULL)",
            name=op.f("ck_grants_shape"),
        ),
        sa.CheckConstraint("kind IN ('monetary', 'usage')", name=op.f("ck_grants_kind")),
        sa.CheckConstraint(
            "source IN ('promotion', 'purchase', 'goodwill', 'plan')", name=op.f("ck_grants_source")
        ),
        sa.CheckConstraint(
            "status IN ('active', 'voided', 'expired')", name=op.f("ck_grants_status")
        ),
        sa.CheckConstraint("amount_minor > 0", name=op.f("ck_grants_amount")),
        sa.CheckConstraint(
            "expires_at IS NULL OR expires_at > effective_at", name=op.f("ck_grants_window")
        ),
        sa.CheckConstraint("priority BETWEEN 0 AND 100", name=op.f("ck_grants_priority")),
        sa.CheckConstraint("rollover_minor >= 0", name=op.f("ck_grants_rollover")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_grants_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["meter_id"], ["meters.id"], name=op.f("fk_grants_meter_id_meters")
        ),
        sa.ForeignKeyConstraint(
            ["recurring_grant_id"],
            ["grants_recurring.id"],
            name=op.f("fk_grants_recurring_grant_id_grants_recurring"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_grants")),
        sa.UniqueConstraint(
            "recurring_grant_id",
            "period_index",
            name=op.f("uq_grants_recurring_grant_id_period_index"),
        ),
    )
    op.create_index(
        "ix_grants_customer_asset_status",
        "grants",
        ["customer_id", "asset", "status"],
        unique=False,
    )
    op.create_index("ix_grants_status_expires_at", "grants", ["status", "expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_grants_status_expires_at", table_name="grants")
    op.drop_index("ix_grants_customer_asset_status", table_name="grants")
    op.drop_index("ix_grants_recurring_status_next_issue_at", table_name="grants_recurring")
    op.drop_index("ix_grants_recurring_customer", table_name="grants_recurring")
    op.drop_index("ix_grants_plan_credit_rules_version", table_name="grants_plan_credit_rules")
    op.drop_index(
        "ix_entitlements_reservations_status_expires_at", table_name="entitlements_reservations"
    )
    op.drop_index(
        "ix_entitlements_reservations_customer_feature", table_name="entitlements_reservations"
    )
    op.drop_index("ix_entitlements_overrides_customer_feature", table_name="entitlements_overrides")
    op.drop_index(
        "ix_grants_promotion_redemptions_subscription", table_name="grants_promotion_redemptions"
    )
    op.drop_index(
        "ix_grants_promotion_redemptions_code_customer", table_name="grants_promotion_redemptions"
    )
    op.drop_table("grants")
    op.drop_table("grants_recurring")
    op.drop_table("grants_promotion_discount_uses")
    op.drop_table("grants_plan_credit_rules")
    op.drop_table("entitlements_reservations")
    op.drop_table("entitlements_overrides")
    op.drop_table("grants_promotion_redemptions")
    op.drop_table("entitlements_spend_limits")
    op.drop_table("entitlements_limit_alerts")
    op.drop_table("grants_promotion_codes")
    op.drop_table("entitlements_reservation_locks")
