"""Cursor pagination in Stripe's shape: ``limit`` 1–100, ``starting_after`` / ``ending_before``.

Lists are newest first (ids are time-ordered, so "newest first" is ``ORDER BY id DESC``).
``starting_after`` gives the page after that object; ``ending_before`` the page before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

from tallybook.kit.errors import CommonCode, InvalidRequest

LIMIT_DEFAULT: Final = 10
LIMIT_MAX: Final = 100

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PageRequest:
    limit: int = LIMIT_DEFAULT
    starting_after: str | None = None
    ending_before: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= LIMIT_MAX:
            raise InvalidRequest(
                CommonCode.LIMIT_INVALID, f"limit must be between 1 and {LIMIT_MAX}", param="limit"
            )
        if self.starting_after and self.ending_before:
            raise InvalidRequest(
                CommonCode.PARAMETER_INVALID,
                "pass starting_after or ending_before, not both",
                param="ending_before",
            )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    data: Sequence[T]
    has_more: bool


def page_from_rows(rows: Sequence[T], request: PageRequest) -> Page[T]:
    """Build a page from up to ``limit + 1`` rows fetched in display order."""
    has_more = len(rows) > request.limit
    return Page(data=list(rows[: request.limit]), has_more=has_more)
