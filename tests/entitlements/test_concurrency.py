"""Fifty parallel requests on PostgreSQL reserving against one customer's hard limit and one
credit grant never exceed either; settling and reserving at once never double-count usage."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

from tallybook.db import Database, Tx
from tallybook.entitlements import service as entitlements
from tallybook.grants import service as grants
from tallybook.kit.errors import TallybookError
from tallybook.ledger import service as ledger
from tests.entitlements.conftest import checked
from tests.fixtures.grants_factories import in_parallel, issue, metered_setup, send_usage

REQUESTS = 50
#: PostgreSQL's connections are shared with other suites on the machine: 50 parallel requests
#: go through at most this many connections at once, as requests share a server's pool.
CONNECTIONS_MAX = 30
_connections = threading.BoundedSemaphore(CONNECTIONS_MAX)


@contextmanager
def transaction(db: Database, actor: str = "test") -> Iterator[Tx]:
    with _connections, db.transaction(actor=actor) as tx:
        yield tx


def test_fifty_reservations_never_pass_the_limit_or_the_grant(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=1000)
        grant = issue(tx, setup.customer, 2000)
    send_usage(pg_db, setup.customer, 100)  # 900 units left
    customer, feature = setup.customer.id, setup.feature.key

    def reserve(n: int) -> tuple[str, Decimal, int]:
        quantity, amount = Decimal(20 + n % 7), 50 + (n % 5) * 10
        try:
            with transaction(pg_db, f"request-{n}") as tx:
                outcome = entitlements.reserve(
                    tx,
                    entitlements.ReservationInput(
                        customer=customer, feature=feature, quantity=quantity, amount_minor=amount
                    ),
                )
        except TallybookError as error:
            return error.code, Decimal(0), 0
        if outcome.refused:
            assert outcome.check is not None
            return str(outcome.check.reason), Decimal(0), 0
        return "ok", quantity, amount

    outcomes = in_parallel(REQUESTS, reserve)
    units = sum(q for _, q, _ in outcomes)
    money = sum(a for _, _, a in outcomes)
    codes = {code for code, _, _ in outcomes}
    assert codes <= {"ok", "limit_exceeded", "credit_insufficient"}
    assert "limit_exceeded" in codes or "credit_insufficient" in codes, "the test must overshoot"
    assert units <= 900 and money <= 2000
    with pg_db.read() as tx:
        view = grants.get_view(tx, grant.id)
        assert view.held_minor == money and view.remaining_minor == 2000 - money
        assert ledger.check_invariants(tx).ok
    state = checked(pg_db, customer, feature)
    assert (state.used, state.reserved) == (Decimal(100), units)


def test_parallel_money_reservations_on_one_grant_never_overdraw_it(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx)
        grant = issue(tx, setup.customer, 1000)

    def reserve(n: int) -> int | str:
        try:
            with transaction(pg_db) as tx:
                outcome = entitlements.reserve(
                    tx,
                    entitlements.ReservationInput(
                        customer=setup.customer.id, amount_minor=70, grant=grant.id
                    ),
                )
        except TallybookError as error:
            return error.code
        assert outcome.reservation is not None
        return 70

    outcomes = in_parallel(REQUESTS, reserve)
    assert set(outcomes) == {70, "credit_insufficient"}
    held = sum(o for o in outcomes if isinstance(o, int))
    assert held == 980  # fourteen holds of 70 fit in 1,000; the fifteenth never does
    with pg_db.read() as tx:
        assert grants.get_view(tx, grant.id).remaining_minor == 20


def test_settling_while_others_reserve_counts_usage_once(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        setup = metered_setup(tx, limit=600)
    customer, feature = setup.customer.id, setup.feature.key
    opened = []
    for _ in range(10):
        with pg_db.transaction() as tx:
            outcome = entitlements.reserve(
                tx, entitlements.ReservationInput(customer=customer, feature=feature, quantity=30)
            )
            assert outcome.reservation is not None
            opened.append(outcome.reservation.id)

    def work(n: int) -> Decimal:
        if n < len(opened):
            with transaction(pg_db) as tx:
                entitlements.settle(tx, opened[n], quantity=30)
            return Decimal(0)
        with transaction(pg_db) as tx:
            outcome = entitlements.reserve(
                tx, entitlements.ReservationInput(customer=customer, feature=feature, quantity=20)
            )
        return Decimal(20) if outcome.reservation is not None else Decimal(0)

    reserved = sum(in_parallel(40, work))
    state = checked(pg_db, customer, feature)
    assert state.used == Decimal(300)
    assert state.reserved == reserved
    assert state.used + reserved <= 600
