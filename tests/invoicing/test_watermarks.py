"""The period close moves its batch's watermarks with ``metering.mark_invoiced_through_many``:
the same result as one ``mark_invoiced_through`` per customer (never backwards, unknown
customers refused), in a few statements."""

from __future__ import annotations

import pytest

from tallybook.customers import service as customers_service
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.kit.errors import NotFound
from tallybook.metering import service as metering


def _customers(db: Database, count: int) -> list[str]:
    with db.transaction() as tx:
        return [
            customers_service.create(
                tx, customers_service.CustomerInput(external_id=f"wm-{n}", currency="USD")
            ).id
            for n in range(count)
        ]


def test_many_equals_one_at_a_time(db: Database) -> None:
    a, b, c = _customers(db, 3)
    early, mid, late = utc(2027, 1, 1), utc(2027, 2, 1), utc(2027, 3, 1)
    with db.transaction() as tx:
        metering.mark_invoiced_through(tx, a, mid)
        metering.mark_invoiced_through(tx, b, early)
    with db.transaction() as tx:
        assert metering.invoiced_through(tx, b) == early  # held by the session from here on
        result = metering.mark_invoiced_through_many(tx, {a: early, b: late, c: mid})
        assert result == {a: mid, b: late, c: mid}
        assert metering.invoiced_through(tx, b) == late
    with db.read() as tx:
        assert [metering.invoiced_through(tx, x) for x in (a, b, c)] == [mid, late, mid]


def test_unknown_customer_is_refused(db: Database) -> None:
    (a,) = _customers(db, 1)
    with pytest.raises(NotFound), db.transaction() as tx:
        metering.mark_invoiced_through_many(
            tx, {a: utc(2027, 1, 1), "cus_missing": utc(2027, 1, 1)}
        )
    with db.read() as tx:
        assert metering.invoiced_through(tx, a) is None
