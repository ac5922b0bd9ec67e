"""The check's mirror: each API process keeps the state rows of the checks it answered,
kept current by the database's notices, so a repeated check needs no statement of its own.

Why: the check's state statement (``fast_pg.STATE_SQL``) cost each check about 130 µs of
PostgreSQL CPU and 250 µs of the server's, a round trip and its place in the queue, and it
reads the same rows again and again: a customer's subscriptions, override and limits change
rarely; their usage changes by known amounts.

**Notices.** Triggers (migration ``0011_entitlement_notices``) announce on the
``tb_entitlements`` channel, inside the transaction that writes, every change to what the
statement reads:

- ``u <customer> <meter> <hour> <old> <new> <n>``: a rollup row of that meter, customer and
  hour (Unix seconds) went from ``old`` (``-``: a new row) to ``new``;
- ``c <customer>``: anything else of that customer changed (the customer, a subscription, an
  override, a reservation, a spend limit, a grant, a deleted rollup);
- ``a``: the catalog changed, or a table was truncated: forget everything.

A usage notice updates the rows of that customer whose usage window reads the meter's
rollups for that hour (sum and count add the difference; max and min take the new value when
it only grew, or shrank); one on the window's partial edge hours (read from raw events) or
one that cannot be applied drops the row; one outside the window changes nothing. ``c`` drops
the customer's rows, ``a`` all of them.

**Read your writes.** Before a kept row is used, :meth:`Mirror.state` waits for a barrier of
the listener (``db.listen``): every notice of a transaction committed before the check
arrived (an ingestion call that has returned) has been applied. A barrier is one
``pg_notify`` round trip on the listener's connection, shared by every check waiting for it.

**Keeping a row.** A check that finds no row reads it (the state statement, as without a
mirror) and answers with it; the row is kept only if no notice about its customer arrives
from before its statement was sent until a barrier sent after its answer came back. Every
notice of a transaction the statement did not see arrives after the statement was sent; every
notice of one it saw arrives before that barrier. So a kept row plus the notices applied to
it is what the statement would read now.

**Time.** A row holds for the instant it was read until the first instant something in it
changes by the clock alone (``valid_until`` in the statement: a period's start or end, an
override's start or expiry, a reservation's or usage grant's expiry, the next calendar
month); outside that range it is read again.

If the listener is lost, every row is dropped and checks read the database until it listens
again. SQLite has no notices: no mirror there.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, NamedTuple

from sqlalchemy.engine import URL

from tallybook.catalog.meter_models import Aggregation
from tallybook.db.listen import Listener, ListenerLost
from tallybook.entitlements import catalog_cache
from tallybook.entitlements.domain import calendar_month
from tallybook.entitlements.fast_pg import (
    ROW_CUSTOMER_ID,
    ROW_FEATURE_ID,
    ROW_ROLLUP,
    ROW_VALID_UNTIL,
    ROW_WINDOW_END,
    ROW_WINDOW_METER,
    ROW_WINDOW_START,
)
from tallybook.observability.metrics import counter

CHANNEL: Final = "tb_entitlements"
#: Rows kept per process at most (the oldest kept go first).
ROWS_MAX: Final = 200_000
#: Customers remembered as noticed while rows are being read, at most; past it, every row
#: being read is treated as noticed.
NOTICED_MAX: Final = 100_000

CHECKS: Final = counter(
    "tallybook_entitlements_mirror_total",
    "Entitlement state rows by where they came from (kept: the mirror; read: the database)",
    ("source",),
)
_BARRIERS: Final = counter(
    "tallybook_entitlements_mirror_barriers_total",
    "Barriers the mirror's listener sent (each a PostgreSQL transaction: it uses an xid)",
)
_KEPT = CHECKS.labels("kept")
_READ = CHECKS.labels("read")

_HOUR_US: Final = 3_600_000_000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def _epoch_us(instant: datetime) -> int:
    """Microseconds since the Unix epoch, exactly."""
    return (instant - _EPOCH) // _MICROSECOND


def _frozen(value: Any) -> Any:
    """``value`` with its lists as tuples (see :class:`_Kept`: a full collection, during which
    the event loop waits, walked 20,000 rows of lists for about 60 ms)."""
    return tuple(value) if isinstance(value, list) else value


class _Kept(NamedTuple):
    """One kept row; a change replaces it. Its row holds only atomic values and tuples of
    them (no list, no enum member), so the garbage collector stops tracking the row: 20,000
    kept rows add 20,000 objects to a full collection's walk, not ten times as many."""

    customer_id: str
    #: The row as the state statement returned it, lists as tuples, the rollup's
    #: (sum, max, min) as Decimals with the notices applied.
    row: tuple[Any, ...]
    valid_from: datetime
    valid_until: datetime
    meter_id: str | None = None
    #: The meter's aggregation (its value), if the meter was cached.
    aggregation: str | None = None
    #: The window's full hours [first, end) read from rollups, and the window's edges
    #: (microseconds since the Unix epoch).
    first_hour: int = 0
    end_hour: int = 0
    window_start: int = 0
    window_end: int = 0


def _with_rollup(kept: _Kept, rollup: tuple[Decimal | None, ...]) -> _Kept:
    row = kept.row
    return kept._replace(row=(*row[:ROW_ROLLUP], rollup, *row[ROW_ROLLUP + 1 :]))


class Mirror:
    """One process's kept state rows (see the module docstring). Belongs to one event loop:
    the API opens it with its hot-read pool and closes it when it stops serving."""

    def __init__(self, url: str | URL) -> None:
        self._listener = Listener(
            url, (CHANNEL,), self._on_notice, self._forget_all, on_barrier=_BARRIERS.inc
        )
        self._kept: dict[tuple[str, str], _Kept] = {}
        #: The keys of each customer's kept rows.
        self._by_customer: dict[str, tuple[tuple[str, str], ...]] = {}
        #: Notices handled so far, and the count at the last time everything was forgotten.
        self._notices = 0
        self._floor = 0
        #: While rows are being read: each customer noticed, with the count at its notice.
        self._reading = 0
        self._noticed: dict[str, int] = {}

    async def open(self) -> None:
        await self._listener.open()

    async def close(self) -> None:
        await self._listener.close()

    @property
    def listening(self) -> bool:
        return self._listener.listening

    async def state(self, customer: str, feature: str, now: datetime) -> tuple[Any, ...] | None:
        """The kept state row of this check, current as of now, or ``None`` (read it)."""
        key = (customer, feature)
        if key not in self._kept:
            return None
        try:
            await self._listener.barrier()
        except ListenerLost:
            return None
        kept = self._kept.get(key)
        if kept is None:
            return None
        if not kept.valid_from <= now < kept.valid_until:
            self._drop(key)
            return None
        _KEPT.inc()
        return kept.row

    async def settle(self) -> None:
        """Wait for a barrier: every row read before the call is kept (or not) by then, and
        every notice committed before it applied. (Not listening: nothing to wait for.)"""
        try:
            await self._listener.barrier()
        except ListenerLost:
            pass

    def reading(self) -> int | None:
        """Call before sending the state statement: a token for :meth:`read` (``None``: not
        listening, nothing will be kept)."""
        if not self._listener.listening:
            return None
        self._reading += 1
        return self._notices

    def read(
        self,
        token: int | None,
        customer: str,
        feature: str,
        now: datetime,
        row: tuple[Any, ...] | None,
    ) -> None:
        """The state statement answered (``row``; ``None``: it failed or found nothing):
        keep the row if it stays true (see the module docstring)."""
        _READ.inc()
        if token is None:
            return
        if row is None or row[ROW_FEATURE_ID] is None:
            self._done_reading()
            return
        self._listener.barrier().add_done_callback(
            lambda done: self._after_barrier(done, token, (customer, feature), now, row)
        )

    def _after_barrier(
        self,
        done: asyncio.Future[None],
        token: int,
        key: tuple[str, str],
        now: datetime,
        row: tuple[Any, ...],
    ) -> None:
        stays = (
            not done.cancelled()
            and done.exception() is None
            and token >= self._floor
            and not self._noticed_since(row[ROW_CUSTOMER_ID], token)
        )
        self._done_reading()
        if stays:
            self._keep(key, now, row)

    def _noticed_since(self, customer_id: str, token: int) -> bool:
        noticed = self._noticed.get(customer_id)
        return noticed is not None and noticed > token

    def _done_reading(self) -> None:
        self._reading -= 1
        if self._reading <= 0:
            self._reading = 0
            self._noticed.clear()

    def _keep(self, key: tuple[str, str], now: datetime, row: tuple[Any, ...]) -> None:
        valid_until = calendar_month(now)[1]
        if row[ROW_VALID_UNTIL] is not None:
            valid_until = min(valid_until, row[ROW_VALID_UNTIL])
        kept = _Kept(row[ROW_CUSTOMER_ID], tuple(_frozen(value) for value in row), now, valid_until)
        meter_id = row[ROW_WINDOW_METER]
        if meter_id is not None:
            meter = catalog_cache.cached_meter(meter_id)
            window_start = _epoch_us(row[ROW_WINDOW_START])
            window_end = _epoch_us(row[ROW_WINDOW_END])
            kept = kept._replace(
                meter_id=meter_id,
                aggregation=meter.aggregation.value if meter is not None else None,
                first_hour=-(-window_start // _HOUR_US) * _HOUR_US,
                end_hour=window_end // _HOUR_US * _HOUR_US,
                window_start=window_start,
                window_end=window_end,
            )
            rollup = row[ROW_ROLLUP] or (None, None, None)
            kept = _with_rollup(kept, tuple(Decimal(v) if v is not None else None for v in rollup))
        self._drop(key)
        if len(self._kept) >= ROWS_MAX:
            self._drop(next(iter(self._kept)))
        self._kept[key] = kept
        self._by_customer[kept.customer_id] = (*self._by_customer.get(kept.customer_id, ()), key)

    # -- Notices ---------------------------------------------------------------------------

    def _on_notice(self, channel: str, payload: str) -> None:
        self._notices += 1
        kind = payload[:1]
        if kind == "a":
            self._forget_all()
            return
        parts = payload.split(" ")
        customer_id = parts[1]
        if self._reading:
            if len(self._noticed) >= NOTICED_MAX:
                self._noticed.clear()
                self._floor = self._notices
            self._noticed[customer_id] = self._notices
        keys = self._by_customer.get(customer_id)
        if not keys:
            return
        if kind == "u":
            meter_id, hour = parts[2], int(parts[3]) * 1_000_000
            old = None if parts[4] == "-" else Decimal(parts[4])
            new = Decimal(parts[5])
            for key in keys:
                kept = self._kept[key]
                if kept.meter_id != meter_id:
                    continue
                applied = _applied(kept, hour, old, new)
                if applied is None:
                    self._drop(key)
                elif applied is not kept:
                    self._kept[key] = applied
            return
        for key in keys:
            self._drop(key)

    def _drop(self, key: tuple[str, str]) -> None:
        kept = self._kept.pop(key, None)
        if kept is None:
            return
        keys = self._by_customer[kept.customer_id]
        rest = tuple(other for other in keys if other != key)
        if rest:
            self._by_customer[kept.customer_id] = rest
        else:
            del self._by_customer[kept.customer_id]

    def _forget_all(self) -> None:
        """Forget every row, and every row being read (their tokens fall below the floor)."""
        self._kept.clear()
        self._by_customer.clear()
        self._noticed.clear()
        self._notices += 1
        self._floor = self._notices


def _applied(kept: _Kept, hour: int, old: Decimal | None, new: Decimal) -> _Kept | None:
    """A kept row with one rollup row's change applied (``kept`` itself if the change is
    outside its window), or ``None``: it cannot be, read the row again."""
    if hour + _HOUR_US <= kept.window_start or hour >= kept.window_end:
        return kept  # outside the window
    if not kept.first_hour <= hour < kept.end_hour:
        return None  # a partial edge hour: read from raw events
    total, high, low = kept.row[ROW_ROLLUP]
    aggregation = kept.aggregation
    if aggregation is None:  # the meter was not cached yet when the row was kept
        meter = catalog_cache.cached_meter(kept.meter_id or "")
        if meter is None:
            return None
        aggregation = meter.aggregation.value
        kept = kept._replace(aggregation=aggregation)
    if aggregation in (Aggregation.SUM, Aggregation.COUNT):
        total = (total or 0) + new - (old or 0)
    elif aggregation == Aggregation.MAX:
        if old is not None and new < old:
            return None
        high = new if high is None or new > high else high
    elif aggregation == Aggregation.MIN:
        if old is not None and new > old:
            return None
        low = new if low is None or new < low else low
    else:
        return None
    return _with_rollup(kept, (total, high, low))
