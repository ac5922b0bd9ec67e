"""Metering's named codes: per-event rejections (in batch answers and dead letters) and the
errors of the usage and dead-letter APIs. Each is documented in ``docs/errors.md``."""

from __future__ import annotations

from enum import StrEnum


class EventCode(StrEnum):
    """Why an event was rejected (or, for ``event_conflict``, not accepted). Ordered roughly by
    the validation ladder: the first failing check names the event's code."""

    #: The batch element is not a JSON object, or the event is bigger than the per-event limit.
    EVENT_INVALID = "event_invalid"
    EVENT_TOO_LARGE = "event_too_large"
    #: A required attribute is absent (param: ``id``, ``source``, ``type``, ``specversion``,
    #: ``subject``).
    FIELD_MISSING = "field_missing"
    #: An attribute has the wrong type, is empty or too long (param names it).
    FIELD_INVALID = "field_invalid"
    SPECVERSION_UNSUPPORTED = "specversion_unsupported"
    TIME_INVALID = "time_invalid"
    TIME_IN_FUTURE = "time_in_future"
    TIME_TOO_OLD = "time_too_old"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    VALUE_MISSING = "value_missing"
    VALUE_NOT_NUMBER = "value_not_number"
    VALUE_INVALID = "value_invalid"
    DIMENSION_INVALID = "dimension_invalid"
    #: Same (source, id) as a stored event, different content. Not dead-lettered: the stored
    #: event stands.
    EVENT_CONFLICT = "event_conflict"


class MeteringCode(StrEnum):
    """Request-level errors of the metering API."""

    BATCH_TOO_LARGE = "batch_too_large"
    BATCH_INVALID = "batch_invalid"
    USAGE_RANGE_INVALID = "usage_range_invalid"
    USAGE_WINDOW_INVALID = "usage_window_invalid"
    USAGE_TOO_MANY_WINDOWS = "usage_too_many_windows"
    USAGE_GROUP_BY_INVALID = "usage_group_by_invalid"
    USAGE_NOT_ADDITIVE = "usage_not_additive"
    DEAD_LETTER_NOT_PENDING = "dead_letter_not_pending"
    INGEST_UNAVAILABLE = "ingest_unavailable"
