"""The grants domain's error codes (documented under "Grants and promotions" in
``docs/errors.md``)."""

from __future__ import annotations

from enum import StrEnum


class GrantCode(StrEnum):
    # Issuing (400 unless noted)
    KIND_INVALID = "grant_kind_invalid"
    SOURCE_INVALID = "grant_source_invalid"
    AMOUNT_INVALID = "grant_amount_invalid"
    CURRENCY_MISMATCH = "grant_currency_mismatch"
    METER_REQUIRED = "grant_meter_required"
    METER_NOT_ALLOWED = "grant_meter_not_allowed"
    METER_NOT_FOUND = "grant_meter_not_found"
    METER_NOT_COUNTABLE = "grant_meter_not_countable"
    PRIORITY_INVALID = "grant_priority_invalid"
    WINDOW_INVALID = "grant_window_invalid"
    REASON_REQUIRED = "grant_reason_required"
    # State (409)
    NOT_ACTIVE = "grant_not_active"
    BALANCE_INSUFFICIENT = "grant_balance_insufficient"
    # Applying credits
    APPLICATION_INVALID = "grant_application_invalid"
    # Recurring grants and plan credit rules
    SCHEDULE_INVALID = "recurring_grant_schedule_invalid"
    ROLLOVER_INVALID = "recurring_grant_rollover_invalid"
    EXPIRY_INVALID = "recurring_grant_expiry_invalid"
    PLAN_VERSION_NOT_FOUND = "plan_credit_rule_version_not_found"


class PromotionCodeError(StrEnum):
    # Defining a code (400 unless noted)
    CODE_INVALID = "promotion_code_invalid"
    CODE_TAKEN = "promotion_code_taken"
    DISCOUNT_INVALID = "promotion_discount_invalid"
    DURATION_INVALID = "promotion_duration_invalid"
    LIMITS_INVALID = "promotion_limits_invalid"
    PLAN_NOT_FOUND = "promotion_plan_not_found"
    CREDIT_INVALID = "promotion_credit_invalid"
    # Redeeming
    NOT_FOUND = "promotion_code_not_found"
    EXPIRED = "promotion_code_expired"
    INACTIVE = "promotion_code_inactive"
    EXHAUSTED = "promotion_code_exhausted"
    CUSTOMER_LIMIT_REACHED = "promotion_code_customer_limit_reached"
    SUBSCRIPTION_REQUIRED = "promotion_code_subscription_required"
    SUBSCRIPTION_MISMATCH = "promotion_code_subscription_mismatch"
    PLAN_NOT_ELIGIBLE = "promotion_code_plan_not_eligible"
    CURRENCY_MISMATCH = "promotion_code_currency_mismatch"
    # Invoicing's use of a discount
    DISCOUNT_EXHAUSTED = "promotion_discount_exhausted"
