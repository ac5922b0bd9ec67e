"""Tables that sort and page on the server, through query parameters, so every view of a
table is a URL someone can share.

Parameters are ``<prefix>sort`` (a column key), ``<prefix>dir`` (``asc``/``desc``) and
``<prefix>page`` (1-based); the prefix lets one page hold several tables. Two sources:

- :func:`from_list`: a bounded list a service returned (search results, failing deliveries):
  sorted and sliced in Python.
- :func:`from_query`: a function that sorts and pages in SQL (the audit log); it is asked for
  one row more than a page to learn whether a next page exists, so no ``COUNT(*)`` is needed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request

T = TypeVar("T")

PER_PAGE_DEFAULT: Final = 25
PAGE_MAX: Final = 10_000
#: Query parameters never carried into table links (one-off notices).
TRANSIENT_PARAMS: Final = frozenset({"done"})


@dataclass(frozen=True, slots=True)
class Column(Generic[T]):
    key: str
    label: str
    #: For :func:`from_list`: the value to sort by (None sorts last). Unsortable when absent.
    value: Callable[[T], Any] | None = None
    #: For :func:`from_query`: sortable even without ``value`` (the query sorts).
    sortable: bool = False
    numeric: bool = False

    @property
    def can_sort(self) -> bool:
        return self.sortable or self.value is not None


@dataclass(frozen=True, slots=True)
class Sort:
    key: str
    descending: bool = True


@dataclass(frozen=True, slots=True)
class Table(Generic[T]):
    columns: Sequence[Column[T]]
    rows: list[T]
    sort: Sort
    page: int
    per_page: int
    has_next: bool
    path: str
    params: Mapping[str, str]
    prefix: str = ""
    #: Known for lists; unknown (None) for query tables.
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def _url(self, changes: Mapping[str, str | None]) -> str:
        params = {k: v for k, v in self.params.items() if k not in TRANSIENT_PARAMS}
        for key, value in changes.items():
            if value is None:
                params.pop(key, None)
            else:
                params[key] = value
        query = urlencode(sorted(params.items()))
        return f"{self.path}?{query}" if query else self.path

    def sort_url(self, key: str) -> str:
        descending = not self.sort.descending if key == self.sort.key else False
        return self._url(
            {
                f"{self.prefix}sort": key,
                f"{self.prefix}dir": "desc" if descending else "asc",
                f"{self.prefix}page": None,
            }
        )

    def page_url(self, page: int) -> str:
        return self._url({f"{self.prefix}page": str(page) if page > 1 else None})

    def aria_sort(self, key: str) -> str:
        if key != self.sort.key:
            return "none"
        return "descending" if self.sort.descending else "ascending"

    @property
    def first_number(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.rows else 0

    @property
    def last_number(self) -> int:
        return (self.page - 1) * self.per_page + len(self.rows)

    @property
    def page_count(self) -> int | None:
        if self.total is None:
            return None
        return max(1, -(-self.total // self.per_page))


def _state(
    request: Request, columns: Sequence[Column[Any]], default: Sort, prefix: str
) -> tuple[Sort, int]:
    params = request.query_params
    key = params.get(f"{prefix}sort", default.key)
    sortable = {c.key for c in columns if c.can_sort}
    if key not in sortable:
        key = default.key
    direction = params.get(f"{prefix}dir")
    descending = default.descending if direction not in ("asc", "desc") else direction == "desc"
    try:
        page = int(params.get(f"{prefix}page", "1"))
    except ValueError:
        page = 1
    return Sort(key, descending), min(max(page, 1), PAGE_MAX)


def from_list(
    request: Request,
    items: Sequence[T],
    *,
    columns: Sequence[Column[T]],
    default_sort: Sort,
    prefix: str = "",
    per_page: int = PER_PAGE_DEFAULT,
) -> Table[T]:
    sort, page = _state(request, columns, default_sort, prefix)
    column = next(c for c in columns if c.key == sort.key)
    rows = list(items)
    if column.value is not None:
        value = column.value
        present = [r for r in rows if value(r) is not None]
        missing = [r for r in rows if value(r) is None]
        present.sort(key=value, reverse=sort.descending)
        rows = present + missing  # blanks last either way
    last_page = max(1, -(-len(rows) // per_page))
    page = min(page, last_page)
    start = (page - 1) * per_page
    return Table(
        columns=columns,
        rows=rows[start : start + per_page],
        sort=sort,
        page=page,
        per_page=per_page,
        has_next=start + per_page < len(rows),
        path=request.url.path,
        params=dict(request.query_params),
        prefix=prefix,
        total=len(rows),
    )


def from_query(
    request: Request,
    fetch: Callable[[Sort, int, int], Sequence[T]],
    *,
    columns: Sequence[Column[T]],
    default_sort: Sort,
    prefix: str = "",
    per_page: int = PER_PAGE_DEFAULT,
) -> Table[T]:
    """``fetch(sort, offset, limit)`` returns up to ``limit`` rows in order."""
    sort, page = _state(request, columns, default_sort, prefix)
    rows = list(fetch(sort, (page - 1) * per_page, per_page + 1))
    return Table(
        columns=columns,
        rows=rows[:per_page],
        sort=sort,
        page=page,
        per_page=per_page,
        has_next=len(rows) > per_page,
        path=request.url.path,
        params=dict(request.query_params),
        prefix=prefix,
    )
