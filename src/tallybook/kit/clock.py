"""Time comes from a :class:`Clock`, never from ``datetime.now()`` in domain code.

All datetimes are timezone-aware UTC; periods are half-open ``[start, end)``.
:class:`TestClock` lets tests and simulations move time the way Stripe's test clocks do.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

from tallybook.kit.invariant import invariant


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def __repr__(self) -> str:
        return "SystemClock()"


class TestClock:
    """A clock that only moves when told to. Thread-safe."""

    __test__ = False  # not a pytest test class

    def __init__(self, start: datetime) -> None:
        invariant(start.tzinfo is not None, "TestClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta | None = None, /, **kwargs: float) -> datetime:
        """Move forward by ``delta`` or by ``timedelta(**kwargs)``; never backwards."""
        step = delta if delta is not None else timedelta(**kwargs)
        invariant(step >= timedelta(0), "TestClock never moves backwards")
        with self._lock:
            self._now = self._now + step
            return self._now

    def set(self, instant: datetime) -> datetime:
        invariant(instant.tzinfo is not None, "TestClock needs an aware datetime")
        with self._lock:
            invariant(instant >= self._now, "TestClock never moves backwards")
            self._now = instant.astimezone(UTC)
            return self._now

    def __repr__(self) -> str:
        return f"TestClock({self._now.isoformat()})"


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    """Shorthand for an aware UTC datetime (handy in tests and scenario tables)."""
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def ensure_utc(value: datetime, *, param: str = "time") -> datetime:
    """Return ``value`` in UTC; naive datetimes are refused (they are ambiguous)."""
    from tallybook.kit.errors import CommonCode, InvalidRequest

    if value.tzinfo is None:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID, f"{param} must carry a timezone offset", param=param
        )
    return value.astimezone(UTC)


def isoformat_z(value: datetime) -> str:
    """RFC 3339 text in UTC with a ``Z`` suffix."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")
