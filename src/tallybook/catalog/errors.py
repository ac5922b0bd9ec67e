"""Error codes of the catalog (features, plans, plan versions, prices, entitlement definitions).

Documented in ``docs/errors.md`` under "Catalog".
"""

from __future__ import annotations

from enum import StrEnum


class CatalogCode(StrEnum):
    # Features
    FEATURE_KEY_INVALID = "feature_key_invalid"
    FEATURE_KEY_TAKEN = "feature_key_taken"
    FEATURE_METER_REQUIRED = "feature_meter_required"
    FEATURE_METER_NOT_ALLOWED = "feature_meter_not_allowed"
    FEATURE_METER_NOT_FOUND = "feature_meter_not_found"
    FEATURE_ARCHIVED = "feature_archived"
    # Plans and versions
    PLAN_KEY_INVALID = "plan_key_invalid"
    PLAN_KEY_TAKEN = "plan_key_taken"
    PLAN_ARCHIVED = "plan_archived"
    PLAN_HAS_NO_PUBLISHED_VERSION = "plan_has_no_published_version"
    PLAN_INTERVAL_INVALID = "plan_interval_invalid"
    PLAN_VERSION_IMMUTABLE = "plan_version_immutable"
    PLAN_VERSION_NOT_PUBLISHED = "plan_version_not_published"
    PLAN_VERSION_ARCHIVED = "plan_version_archived"
    PLAN_VERSION_COPY_PLAN_MISMATCH = "plan_version_copy_plan_mismatch"
    PLAN_TRIAL_INVALID = "plan_trial_invalid"
    # Prices
    PRICE_INVALID = "price_invalid"
    PRICE_NEGATIVE = "price_negative"
    PRICE_PRECISION_EXCEEDED = "price_precision_exceeded"
    PRICE_FIELD_NOT_ALLOWED = "price_field_not_allowed"
    PRICE_FIELD_MISSING = "price_field_missing"
    PRICE_TIERS_MISSING = "price_tiers_missing"
    PRICE_TIERS_TOO_MANY = "price_tiers_too_many"
    PRICE_TIER_GAP = "price_tier_gap"
    PRICE_TIER_OVERLAP = "price_tier_overlap"
    PRICE_PACKAGE_SIZE_INVALID = "price_package_size_invalid"
    PRICE_KEY_DUPLICATE = "price_key_duplicate"
    PRICE_METER_DUPLICATE = "price_meter_duplicate"
    PRICE_METER_NOT_FOUND = "price_meter_not_found"
    PRICE_GROUP_FILTER_INVALID = "price_group_filter_invalid"
    PRICES_TOO_MANY = "prices_too_many"
    # Entitlement definitions
    ENTITLEMENT_FEATURE_NOT_FOUND = "entitlement_feature_not_found"
    ENTITLEMENT_DUPLICATE = "entitlement_duplicate"
    ENTITLEMENT_VALUE_INVALID = "entitlement_value_invalid"
    ENTITLEMENTS_TOO_MANY = "entitlements_too_many"
