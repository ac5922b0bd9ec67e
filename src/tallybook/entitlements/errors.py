"""The entitlements domain's error codes (documented under "Entitlements" in
``docs/errors.md``). Check *outcomes* (``limit_exceeded``…) are not errors: they are the
``reason`` of a check's answer, see ``domain.Reason``."""

from __future__ import annotations

from enum import StrEnum


class EntitlementCode(StrEnum):
    # Checks (400 unless noted)
    FEATURE_NOT_FOUND = "feature_not_found"  # 404
    CUSTOMER_NOT_FOUND = "customer_not_found"  # 404
    QUANTITY_NEGATIVE = "quantity_negative"
    # Overrides
    OVERRIDE_VALUE_INVALID = "override_value_invalid"
    OVERRIDE_WINDOW_INVALID = "override_window_invalid"
    OVERRIDE_REASON_REQUIRED = "override_reason_required"
    # Reservations
    RESERVATION_EMPTY = "reservation_empty"
    FEATURE_NOT_METERED = "feature_not_metered"
    FEATURE_NOT_RESERVABLE = "feature_not_reservable"
    RESERVATION_TIMEOUT_INVALID = "reservation_timeout_invalid"
    RESERVATION_QUANTITY_INVALID = "reservation_quantity_invalid"
    RESERVATION_CURRENCY_MISMATCH = "reservation_currency_mismatch"
    RESERVATION_EVENT_DATA_INVALID = "reservation_event_data_invalid"
    RESERVATION_SETTLE_EXCEEDS = "reservation_settle_exceeds_reserved"
    RESERVATION_NOT_OPEN = "reservation_not_open"  # 409
    RESERVATION_EXPIRED = "reservation_expired"  # 409
    RESERVATION_REFUSED = "reservation_refused"  # 409, with the check's reason in details
    CREDIT_INSUFFICIENT = "credit_insufficient"  # 409
    # Spend limits
    SPEND_LIMIT_INVALID = "spend_limit_invalid"
    SPEND_LIMIT_CURRENCY_MISMATCH = "spend_limit_currency_mismatch"
    SPEND_LIMIT_THRESHOLDS_INVALID = "spend_limit_thresholds_invalid"
