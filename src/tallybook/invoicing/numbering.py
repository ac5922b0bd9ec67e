"""Gap-free invoice numbers: ``TB-2026-000123`` (a series per prefix and year).

Numbers are taken at finalization from the series' counter row, updated in the finalizing
transaction: the row stays locked until that transaction ends, so numbers are handed out in
commit order and a rolled-back finalization gives its numbers back (no gap). Drafts have no
number. Credit notes have their own series (``TB-CN-2026-000007``).

Lock order: the counter is the last lock a finalization takes (after subscriptions, customers
and ledger balances), and it is held only from there to the commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite

from tallybook.db import Tx
from tallybook.invoicing.models import NumberSeries
from tallybook.kit.invariant import invariant

NUMBER_DIGITS: Final = 6
CREDIT_NOTE_INFIX: Final = "CN"


def invoice_series(prefix: str, at: datetime) -> str:
    return f"{prefix}-{at.year}"


def credit_note_series(prefix: str, at: datetime) -> str:
    return f"{prefix}-{CREDIT_NOTE_INFIX}-{at.year}"


def format_number(series: str, number: int) -> str:
    return f"{series}-{number:0{NUMBER_DIGITS}d}"


def take_numbers(tx: Tx, series: str, count: int) -> list[str]:
    """Reserve ``count`` consecutive numbers of ``series`` in this transaction."""
    invariant(count > 0, "take_numbers needs a positive count")
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    tx.session.execute(
        insert(NumberSeries)
        .values(series=series, next_number=1, updated_at=tx.now())
        .on_conflict_do_nothing(index_elements=["series"])
    )
    # UPDATE … RETURNING locks the row until commit: concurrent finalizations queue here.
    first_next = tx.session.execute(
        update(NumberSeries)
        .where(NumberSeries.series == series)
        .values(next_number=NumberSeries.next_number + count, updated_at=tx.now())
        .returning(NumberSeries.next_number)
    ).scalar_one()
    start = int(first_next) - count
    invariant(start >= 1, "number series went below 1")
    return [format_number(series, n) for n in range(start, start + count)]


def peek_next(tx: Tx, series: str) -> int:
    value = tx.session.scalar(select(NumberSeries.next_number).where(NumberSeries.series == series))
    return int(value) if value is not None else 1
