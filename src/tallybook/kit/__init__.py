"""Framework-free primitives shared by every domain: money, quantities, ids, clock, errors."""

from tallybook.kit.clock import Clock, SystemClock, TestClock, utc
from tallybook.kit.errors import (
    AuthenticationFailed,
    CommonCode,
    Conflict,
    ErrorType,
    IdempotencyError,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    TallybookError,
)
from tallybook.kit.ids import new_id
from tallybook.kit.invariant import InvariantViolation, invariant
from tallybook.kit.money import ROUNDING_RULE, Money, round_to_minor
from tallybook.kit.pagination import Page, PageRequest

__all__ = [
    "ROUNDING_RULE",
    "AuthenticationFailed",
    "Clock",
    "CommonCode",
    "Conflict",
    "ErrorType",
    "IdempotencyError",
    "InvalidRequest",
    "InvariantViolation",
    "Money",
    "NotFound",
    "Page",
    "PageRequest",
    "PermissionDenied",
    "SystemClock",
    "TallybookError",
    "TestClock",
    "invariant",
    "new_id",
    "round_to_minor",
    "utc",
]
