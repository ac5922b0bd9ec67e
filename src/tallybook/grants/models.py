"""Grants tables: credit grants, recurring grants, plan credit rules, promotion codes and
their redemptions.

A grant's remaining balance is **not** stored here: every grant is a ledger wallet
(``credit_grant`` or ``usage_credit_grant`` with ``reference = grant id``) and its balance is the
ledger's. These rows hold what the ledger does not: who issued the grant and why, when it is
usable, its burn-down priority and its lifecycle.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from tallybook.db import Base, DecimalType, JSONType, UTCDateTime
from tallybook.kit.assets import ASSET_CODE_LENGTH_MAX


class Grant(Base):
    """One credit grant: money in a currency (``monetary``) or units of a meter (``usage``)."""

    __tablename__ = "grants"
    __table_args__ = (
        # credit_sources: a customer's live grants of one asset.
        Index("ix_grants_customer_asset_status", "customer_id", "asset", "status"),
        # The expiry job: active grants whose expiry passed.
        Index("ix_grants_status_expires_at", "status", "expires_at"),
        # One instance per (recurring grant, period): the job may run twice or resume.
        UniqueConstraint("recurring_grant_id", "period_index"),
        CheckConstraint("kind IN ('monetary', 'usage')", name="kind"),
        CheckConstraint("source IN ('promotion', 'purchase', 'goodwill', 'plan')", name="source"),
        CheckConstraint("status IN ('active', 'voided', 'expired')", name="status"),
        CheckConstraint("amount_minor > 0", name="amount"),
        CheckConstraint("rollover_minor >= 0", name="rollover"),
        CheckConstraint("priority BETWEEN 0 AND 100", name="priority"),
        CheckConstraint("expires_at IS NULL OR expires_at > effective_at", name="window"),
        CheckConstraint(
            "(kind = 'monetary' AND currency IS NOT NULL AND meter_id IS NULL) OR "
            "(kind = 'usage' AND currency IS NULL AND meter_id IS NOT NULL)",
            name="shape",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(8))
    #: The ledger asset: the ISO currency, or ``U_<METER KEY>`` for usage credits.
    asset: Mapped[str] = mapped_column(String(ASSET_CODE_LENGTH_MAX))
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    #: Everything the wallet received when issued, in the asset's minor units (micro-units for
    #: usage credits), rollover from the previous instance of a recurring grant included.
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    rollover_minor: Mapped[int] = mapped_column(BigInteger)
    #: promotion | purchase | goodwill | plan: decides the funding and expiry accounts.
    source: Mapped[str] = mapped_column(String(16))
    #: Burn-down order: lower first (then soonest expiry, then oldest).
    priority: Mapped[int] = mapped_column(Integer)
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: active → voided | expired. "Not yet effective" is derived from ``effective_at``.
    status: Mapped[str] = mapped_column(String(8))
    #: The ledger wallet (``credit_grant`` / ``usage_credit_grant``, reference = this id).
    account_id: Mapped[str] = mapped_column(String(40))
    #: Who issued it (the API key's actor, ``cli``, ``system:grants.recurring``…) and why.
    issued_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    recurring_grant_id: Mapped[str | None] = mapped_column(
        ForeignKey("grants_recurring.id"), nullable=True
    )
    #: The instance number within the recurring grant (0, 1, 2…).
    period_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    promotion_redemption_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    voided_by: Mapped[str | None] = mapped_column(String(200), nullable=True)
    void_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    expired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Remainders released into the wallet after it was voided or expired (a money
    #: reservation's hold released later) are swept back to the source; this counts the sweeps
    #: so each one has its own deterministic transfer id.
    sweeps: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RecurringGrant(Base):
    """Issues a grant every N days/weeks/months/years from an anchor, independent of any
    billing interval (monthly credits on a yearly plan)."""

    __tablename__ = "grants_recurring"
    __table_args__ = (
        # The issuing job: active schedules with an instance due.
        Index("ix_grants_recurring_status_next_issue_at", "status", "next_issue_at"),
        Index("ix_grants_recurring_customer", "customer_id", "id"),
        # Included-in-plan credits: one schedule per (subscription, rule).
        UniqueConstraint("subscription_id", "plan_credit_rule_id"),
        CheckConstraint("kind IN ('monetary', 'usage')", name="kind"),
        CheckConstraint("source IN ('promotion', 'purchase', 'goodwill', 'plan')", name="source"),
        CheckConstraint("status IN ('active', 'canceled', 'ended')", name="status"),
        CheckConstraint("interval_unit IN ('day', 'week', 'month', 'year')", name="interval"),
        CheckConstraint("interval_count >= 1", name="interval_count"),
        CheckConstraint("amount_minor > 0", name="amount"),
        CheckConstraint("rollover IN ('none', 'capped')", name="rollover"),
        CheckConstraint(
            "(rollover = 'none' AND rollover_cap_minor IS NULL) OR "
            "(rollover = 'capped' AND rollover_cap_minor IS NOT NULL AND rollover_cap_minor >= 0)",
            name="rollover_cap",
        ),
        CheckConstraint("expiry IN ('next_instance', 'after_days', 'never')", name="expiry"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    kind: Mapped[str] = mapped_column(String(8))
    asset: Mapped[str] = mapped_column(String(ASSET_CODE_LENGTH_MAX))
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    #: Each instance's amount (before rollover).
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    source: Mapped[str] = mapped_column(String(16))
    priority: Mapped[int] = mapped_column(Integer)
    interval_unit: Mapped[str] = mapped_column(String(8))
    interval_count: Mapped[int] = mapped_column(Integer)
    #: Instance k is issued at ``anchor + k × interval`` (computed from the anchor each time,
    #: like billing periods, so month ends stay put).
    anchor_at: Mapped[datetime] = mapped_column(UTCDateTime())
    #: No instance is issued at or after this instant (NULL: until canceled).
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: next_instance: an instance expires when the next one is issued; after_days: N days
    #: after it is issued; never.
    expiry: Mapped[str] = mapped_column(String(16))
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: none: each instance stands alone; capped: at each issue, up to the cap of what the
    #: previous instance still holds moves into the new one (a ledger transfer).
    rollover: Mapped[str] = mapped_column(String(8))
    rollover_cap_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(8))
    #: The next instance to issue and when it is due (NULL when the schedule is over).
    next_index: Mapped[int] = mapped_column(Integer)
    next_issue_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: Included-in-plan credits: the subscription and rule that created this schedule.
    subscription_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    plan_credit_rule_id: Mapped[str | None] = mapped_column(
        ForeignKey("grants_plan_credit_rules.id"), nullable=True
    )
    issued_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PlanCreditRule(Base):
    """Credits included in a plan version: every subscription on the version gets a recurring
    grant following this rule (kept on the grants side, so the catalog does not change)."""

    __tablename__ = "grants_plan_credit_rules"
    __table_args__ = (
        Index("ix_grants_plan_credit_rules_version", "plan_version_id", "status"),
        CheckConstraint("kind IN ('monetary', 'usage')", name="kind"),
        CheckConstraint("status IN ('active', 'archived')", name="status"),
        CheckConstraint("amount_minor > 0", name="amount"),
        CheckConstraint("interval_unit IN ('day', 'week', 'month', 'year')", name="interval"),
        CheckConstraint("rollover IN ('none', 'capped')", name="rollover"),
        CheckConstraint("expiry IN ('next_instance', 'after_days', 'never')", name="expiry"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    plan_version_id: Mapped[str] = mapped_column(ForeignKey("catalog_plan_versions.id"))
    kind: Mapped[str] = mapped_column(String(8))
    asset: Mapped[str] = mapped_column(String(ASSET_CODE_LENGTH_MAX))
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    meter_id: Mapped[str | None] = mapped_column(ForeignKey("meters.id"), nullable=True)
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(Integer)
    interval_unit: Mapped[str] = mapped_column(String(8))
    interval_count: Mapped[int] = mapped_column(Integer)
    expiry: Mapped[str] = mapped_column(String(16))
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rollover: Mapped[str] = mapped_column(String(8))
    rollover_cap_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    status: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class PromotionCode(Base):
    """A code customers redeem: a discount on a subscription's invoices, or a credit grant."""

    __tablename__ = "grants_promotion_codes"
    __table_args__ = (
        CheckConstraint("kind IN ('percent_off', 'amount_off', 'credit')", name="kind"),
        CheckConstraint("duration IN ('once', 'repeating', 'forever')", name="duration"),
        CheckConstraint("status IN ('active', 'inactive')", name="status"),
        CheckConstraint("times_redeemed >= 0", name="times_redeemed"),
        CheckConstraint(
            "max_redemptions IS NULL OR times_redeemed <= max_redemptions",
            name="redemptions_within_max",
        ),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    #: As customers type it; matched case-insensitively (stored upper-case).
    code: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    #: percent_off: 0 < p ≤ 100, up to 4 decimal places.
    percent_off: Mapped[Decimal | None] = mapped_column(DecimalType(), nullable=True)
    #: amount_off: minor units of ``currency`` per billed period.
    amount_off_minor: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    currency: Mapped[str | None] = mapped_column(String(3), nullable=True)
    #: once | repeating (``duration_periods`` billed periods) | forever
    duration: Mapped[str] = mapped_column(String(16))
    duration_periods: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Plan ids whose subscriptions may redeem it (empty: every plan).
    eligible_plan_ids: Mapped[list[str]] = mapped_column(JSONType)
    #: No redemption at or after this instant.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    max_redemptions: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_redemptions_per_customer: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Incremented under the code's row lock; a check constraint refuses passing the maximum.
    times_redeemed: Mapped[int] = mapped_column(Integer)
    #: credit codes: the grant each redemption issues.
    credit: Mapped[dict[str, Any] | None] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(String(8))
    created_by: Mapped[str] = mapped_column(String(200))
    metadata_: Mapped[dict[str, str]] = mapped_column("metadata", JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromotionRedemption(Base):
    """One redemption of a code by a customer (on a subscription for discount codes)."""

    __tablename__ = "grants_promotion_redemptions"
    __table_args__ = (
        Index("ix_grants_promotion_redemptions_code_customer", "promotion_code_id", "customer_id"),
        Index("ix_grants_promotion_redemptions_subscription", "subscription_id"),
        CheckConstraint("status IN ('active', 'ended')", name="status"),
        CheckConstraint("periods_used >= 0", name="periods_used"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    promotion_code_id: Mapped[str] = mapped_column(ForeignKey("grants_promotion_codes.id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    subscription_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    grant_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    #: Billed periods that took this discount (counted by ``record_discount_use``).
    periods_used: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(8))
    redeemed_by: Mapped[str] = mapped_column(String(200))
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PromotionDiscountUse(Base):
    """A billed period that took a redemption's discount: one row per (redemption, period), so
    invoicing a period twice never counts it twice."""

    __tablename__ = "grants_promotion_discount_uses"

    redemption_id: Mapped[str] = mapped_column(
        ForeignKey("grants_promotion_redemptions.id"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    invoice_id: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
