"""Invariants that survive ``python -O``.

A failed invariant is a programmer error, not bad input: it raises
:class:`InvariantViolation`, which nothing below a request or job boundary catches. The
boundary turns it into a 500 ``api_error`` and a log line, never into a quiet wrong number.
"""

from __future__ import annotations

from typing import NoReturn


class InvariantViolation(AssertionError):
    """A condition the code guarantees did not hold. Never caught by domain code."""


def invariant(condition: object, message: str) -> None:
    """Raise :class:`InvariantViolation` unless ``condition`` is truthy.

    Unlike ``assert``, this runs under ``python -O``. Keep the message specific: it is what the
    on-call engineer reads.
    """
    if not condition:
        raise InvariantViolation(message)


def unreachable(message: str) -> NoReturn:
    raise InvariantViolation(f"unreachable: {message}")
