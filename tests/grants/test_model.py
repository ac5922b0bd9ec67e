"""Random sequences of grants, usage, expiries and voids against a plain model: the burn-down
the service applies is the model's, and every grant's ledger balance is the model's balance."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.db import Database
from tallybook.grants import service as grants
from tallybook.kit.clock import TestClock
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.ledger import service as ledger
from tests.fixtures.factories import create_customer
from tests.fixtures.grants_factories import issue

issue_op = st.tuples(
    st.just("issue"),
    st.integers(1, 500),
    st.sampled_from([0, 10, 50, 50, 90]),
    st.one_of(st.none(), st.integers(1, 72)),
    st.sampled_from(["promotion", "goodwill", "purchase"]),
)
consume_op = st.tuples(st.just("consume"), st.integers(1, 900))
advance_op = st.tuples(st.just("advance"), st.integers(1, 48))
void_op = st.tuples(st.just("void"), st.integers(0, 7))
operations = st.lists(st.one_of(issue_op, consume_op, advance_op, void_op), min_size=1, max_size=14)


@dataclass
class ModelGrant:
    id: str
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    order: int
    remaining: int
    live: bool = True


def model_burn(grants_: list[ModelGrant], amount: int, now: datetime) -> dict[str, int]:
    far = datetime.max.replace(tzinfo=now.tzinfo)
    usable = [
        g
        for g in grants_
        if g.live and g.remaining > 0 and (g.expires_at is None or g.expires_at > now)
    ]
    usable.sort(key=lambda g: (g.priority, g.expires_at or far, g.effective_at, g.order))
    taken: dict[str, int] = {}
    for g in usable:
        if amount == 0:
            break
        take = min(amount, g.remaining)
        g.remaining -= take
        amount -= take
        taken[g.id] = take
    return taken


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=operations)
def test_burn_down_and_ledger_balances_follow_the_model(
    db: Database,
    clock: TestClock,
    ops: list[tuple],  # type: ignore[type-arg]
) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
    model: list[ModelGrant] = []
    for op in ops:
        kind = op[0]
        if kind == "issue":
            _, amount, priority, hours, source = op
            now = clock.now()
            expires = now + timedelta(hours=int(hours)) if hours is not None else None
            with db.transaction() as tx:
                grant = issue(
                    tx, customer, int(amount), priority=priority, expires_at=expires, source=source
                )
            model.append(ModelGrant(grant.id, int(priority), now, expires, len(model), int(amount)))
        elif kind == "consume":
            amount = int(op[1])
            expected = model_burn(model, amount, clock.now())
            with db.transaction() as tx:
                sources = grants.credit_sources(tx, customer.id, at=tx.now(), currency="USD")
                applications = grants.burn_down(
                    sources, [grants.Demand.money(Money(amount, "USD"), key="due")]
                )
                grants.apply_credits(tx, applications, invoice_id=new_id("in"))
            assert {a.grant_id: a.amount_minor for a in applications} == expected
        elif kind == "advance":
            clock.advance(hours=int(op[1]))
            now = clock.now()
            with db.transaction() as tx:
                for g in model:
                    if g.live and g.expires_at is not None and g.expires_at <= now:
                        assert grants.expire_grant(tx, g.id)
                        g.live, g.remaining = False, 0
        else:
            index = int(op[1])
            if index < len(model) and model[index].live:
                g = model[index]
                with db.transaction() as tx:
                    grants.void_grant(tx, g.id, reason="model")
                g.live, g.remaining = False, 0
        with db.read() as tx:
            for g in model:
                balance = ledger.balance(tx, grants.get_grant(tx, g.id).account_id)
                assert balance.available.amount_minor == g.remaining, g
                assert balance.posted.amount_minor == g.remaining
    with db.read() as tx:
        report = ledger.check_invariants(tx)
    assert report.ok, report.breaches
