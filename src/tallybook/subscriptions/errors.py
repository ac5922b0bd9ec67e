"""Error codes of subscriptions. Documented in ``docs/errors.md`` under "Subscriptions"."""

from __future__ import annotations

from enum import StrEnum


class SubscriptionCode(StrEnum):
    CURRENCY_MISMATCH = "subscription_currency_mismatch"
    CANCELED = "subscription_canceled"
    TRANSITION_INVALID = "subscription_transition_invalid"
    CHANGE_NOOP = "subscription_change_noop"
    CHANGE_ALREADY_SCHEDULED = "subscription_change_already_scheduled"
    CANCEL_SCHEDULED = "subscription_cancel_scheduled"
    NOTHING_TO_RESUME = "subscription_nothing_to_resume"
    NO_SCHEDULED_CHANGE = "subscription_no_scheduled_change"
    TRIAL_INVALID = "subscription_trial_invalid"
    ANCHOR_INVALID = "subscription_anchor_invalid"
    CHARGE_ALREADY_INVOICED = "subscription_charge_already_invoiced"
    MIGRATION_PLAN_MISMATCH = "subscription_migration_plan_mismatch"
