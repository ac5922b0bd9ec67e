"""Every pair of events out of order ends where the pair in order ends.

Stripe delivers at least once and in no guaranteed order. For each lifecycle below, every pair
of its events is processed both ways round (through the signed endpoint and the worker), and
the resulting state (payments, collection, invoice, subscription, refunds, disputes, payouts,
payment account, every ledger balance) must be identical. Whole sequences are also checked
reversed and shuffled.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import select

from tallybook.db import Database
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.payments.models import Dispute, PaymentAccount, Payout, Refund, WebhookEvent
from tallybook.payments.providers.base import PaymentSnapshot, PaymentState
from tallybook.payments.service import collections
from tallybook.subscriptions import service as subscriptions
from tests.payments import stripe_events as se
from tests.payments.conftest import (
    Started,
    World,
    make_world,
    offline_stripe_ctx,
    start_offline_attempt,
    webhooks_for,
)

T0 = 1_793_000_000  # provider time (Stripe's clock, not ours)

Events = Callable[[World, Started], list[dict[str, Any]]]


@dataclass(frozen=True)
class Lifecycle:
    name: str
    events: Events
    #: Something already true before these events (a payment that succeeded).
    paid_first: bool = False


def _id(s: Started, name: str) -> str:
    """Stripe ids are unique across customers; several worlds share one database here."""
    return f"{name}_{s.charge_id[-14:]}"


def _plain(value: Any, s: Started) -> Any:
    return value.replace(f"_{s.charge_id[-14:]}", "") if isinstance(value, str) else value


def _meta(world: World, s: Started) -> dict[str, str]:
    return {"tallybook_payment_id": s.payment_id, "tallybook_invoice_id": world.invoice_id}


def _intent(world: World, s: Started, status: str, t: int, **extra: Any) -> dict[str, Any]:
    return se.payment_intent(
        s.intent_id,
        status=status,
        amount=2000,
        created=T0,
        customer=s.stripe_customer_id,
        metadata=_meta(world, s),
        latest_charge=s.charge_id if status in ("succeeded", "requires_payment_method") else None,
        **extra,
    )


def payment_lifecycle(world: World, s: Started) -> list[dict[str, Any]]:
    refund = se.refund(
        _id(s, "re_A"),
        charge=s.charge_id,
        payment_intent=s.intent_id,
        amount=500,
        status="succeeded",
        created=T0 + 2,
    )
    return [
        se.event("payment_intent.processing", _intent(world, s, "processing", T0), created=T0),
        se.event(
            "payment_intent.succeeded", _intent(world, s, "succeeded", T0 + 1), created=T0 + 1
        ),
        se.event(
            "charge.refunded",
            se.charge(
                s.charge_id,
                payment_intent=s.intent_id,
                amount=2000,
                created=T0,
                amount_refunded=500,
                refunds=[refund],
            ),
            created=T0 + 2,
        ),
        se.event(
            "charge.dispute.created",
            se.dispute(
                _id(s, "dp_A"),
                charge=s.charge_id,
                payment_intent=s.intent_id,
                amount=1500,
                status="needs_response",
                created=T0 + 3,
                fee=1500,
            ),
            created=T0 + 3,
        ),
        se.event(
            "charge.dispute.closed",
            se.dispute(
                _id(s, "dp_A"),
                charge=s.charge_id,
                payment_intent=s.intent_id,
                amount=1500,
                status="lost",
                created=T0 + 3,
                fee=1500,
            ),
            created=T0 + 4,
        ),
    ]


def failed_then_authenticated(world: World, s: Started) -> list[dict[str, Any]]:
    error = se.card_declined(s.charge_id)
    return [
        se.event(
            "payment_intent.requires_action", _intent(world, s, "requires_action", T0), created=T0
        ),
        se.event(
            "payment_intent.payment_failed",
            _intent(world, s, "requires_payment_method", T0 + 1, last_payment_error=error),
            created=T0 + 1,
        ),
        se.event(
            "payment_intent.succeeded", _intent(world, s, "succeeded", T0 + 2), created=T0 + 2
        ),
    ]


def dispute_won(world: World, s: Started) -> list[dict[str, Any]]:
    def dp(status: str) -> dict[str, Any]:
        return se.dispute(
            _id(s, "dp_W"),
            charge=s.charge_id,
            payment_intent=s.intent_id,
            amount=2000,
            status=status,
            created=T0,
            fee=1500,
        )

    return [
        se.event("charge.dispute.created", dp("needs_response"), created=T0),
        se.event("charge.dispute.updated", dp("under_review"), created=T0 + 1),
        se.event("charge.dispute.closed", dp("won"), created=T0 + 2),
    ]


def refund_bounced(world: World, s: Started) -> list[dict[str, Any]]:
    def rf(status: str) -> dict[str, Any]:
        return se.refund(
            _id(s, "re_B"),
            charge=s.charge_id,
            payment_intent=s.intent_id,
            amount=700,
            status=status,
            created=T0,
        )

    return [
        se.event("refund.created", rf("pending"), created=T0),
        se.event("refund.updated", rf("succeeded"), created=T0 + 1),
        se.event("refund.failed", rf("failed"), created=T0 + 2),
    ]


def payout_lifecycle(world: World, s: Started) -> list[dict[str, Any]]:
    def po(status: str) -> dict[str, Any]:
        return se.payout(_id(s, "po_P"), amount=1800, status=status, created=T0)

    return [
        se.event("payout.created", po("pending"), created=T0),
        se.event("payout.updated", po("in_transit"), created=T0 + 1),
        se.event("payout.paid", po("paid"), created=T0 + 2),
        se.event("payout.failed", po("failed"), created=T0 + 3),
    ]


def customer_lifecycle(world: World, s: Started) -> list[dict[str, Any]]:
    cus = s.stripe_customer_id
    return [
        se.event(
            "customer.updated",
            se.customer(cus, created=T0, default_payment_method=_id(s, "pm_A")),
            created=T0,
        ),
        se.event(
            "payment_method.attached",
            se.payment_method(_id(s, "pm_B"), customer=cus, created=T0 + 1),
            created=T0 + 1,
        ),
        se.event(
            "customer.updated",
            se.customer(cus, created=T0, default_payment_method=_id(s, "pm_B")),
            created=T0 + 2,
        ),
        se.event("customer.deleted", se.deleted_customer(cus), created=T0 + 3),
    ]


def stripe_invoice_lifecycle(world: World, s: Started) -> list[dict[str, Any]]:
    def inv(status: str, paid: int) -> dict[str, Any]:
        return se.stripe_invoice(
            _id(s, "in_S"),
            status=status,
            amount_due=2000,
            amount_paid=paid,
            created=T0,
            customer=s.stripe_customer_id,
            metadata={"tallybook_invoice_id": world.invoice_id},
            payment_intent=_id(s, "pi_hosted_S"),
        )

    return [
        se.event("invoice.finalized", inv("open", 0), created=T0),
        se.event("invoice.payment_failed", inv("open", 0), created=T0 + 1),
        se.event("invoice.paid", inv("paid", 2000), created=T0 + 2),
    ]


LIFECYCLES = [
    Lifecycle("payment", payment_lifecycle),
    Lifecycle("failed_then_authenticated", failed_then_authenticated),
    Lifecycle("dispute_won", dispute_won, paid_first=True),
    Lifecycle("refund_bounced", refund_bounced, paid_first=True),
    Lifecycle("payout", payout_lifecycle),
    Lifecycle("customer", customer_lifecycle),
    Lifecycle("stripe_invoice", stripe_invoice_lifecycle),
]


def _count(lifecycle: Lifecycle) -> int:
    class Fake:
        invoice_id = "in_x"

    return len(lifecycle.events(Fake(), Started("pay_x", "pi_x", "ch_x", "cus_x")))  # type: ignore[arg-type]


PAIRS = [
    pytest.param(lifecycle, i, j, id=f"{lifecycle.name}-{i}-{j}")
    for lifecycle in LIFECYCLES
    for i, j in itertools.combinations(range(_count(lifecycle)), 2)
]


def _balances(world: World) -> dict[str, tuple[int, int]]:
    """Posted and pending balance of the customer's accounts and of the system accounts."""
    with world.db.read() as tx:
        out: dict[str, tuple[int, int]] = {}
        for account in ledger.list_accounts(tx, PageRequest(limit=100)).data:
            if account.owner_id not in (None, world.customer_id):
                continue
            balance = ledger.balance(tx, account.id)
            out[account.code] = (balance.posted.amount_minor, balance.pending.amount_minor)
        return out


def _moved(
    before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> dict[str, tuple[int, int]]:
    """What the events moved (several customers share the system accounts in one database)."""
    moved = {}
    for code, (posted, pending) in after.items():
        was_posted, was_pending = before.get(code, (0, 0))
        if (posted - was_posted, pending - was_pending) != (0, 0):
            moved[code] = (posted - was_posted, pending - was_pending)
    return moved


def state(world: World, started: Started, before: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """Everything the events can change, as plain values."""
    collection = world.collection()
    invoice = world.invoice()
    with world.db.transaction(actor="test") as tx:
        subscription = subscriptions.get(tx, world.billing.subscription_id).status
        mine = started.charge_id[-14:]
        refunds = sorted(
            (_plain(r.provider_refund_id, started), r.status, r.amount_minor)
            for r in tx.session.scalars(select(Refund))
            if (r.provider_refund_id or "").endswith(mine)
        )
        disputes = sorted(
            (_plain(d.provider_dispute_id, started), d.status, d.outcome, d.funds_withdrawn)
            for d in tx.session.scalars(select(Dispute))
            if d.provider_dispute_id.endswith(mine)
        )
        payouts = sorted(
            (_plain(p.provider_payout_id, started), p.status)
            for p in tx.session.scalars(select(Payout))
            if p.provider_payout_id.endswith(mine)
        )
        account = tx.session.scalar(
            select(PaymentAccount).where(PaymentAccount.customer_id == world.customer_id)
        )
        assert account is not None
        account_state = (
            _plain(account.default_payment_method_id, started),
            account.payment_method_present,
            account.provider_deleted,
        )
    return {
        "payments": sorted(
            (
                p.trigger,
                p.attempt_number or 0,
                "attempt"
                if p.provider_payment_id == started.intent_id
                else _plain(p.provider_payment_id, started),
                p.status,
                p.amount_refunded_minor,
            )
            for p in world.payments()
        ),
        "collection": (collection.status, collection.amount_paid_minor),
        "invoice": (invoice.status, invoice.amount_remaining_minor, invoice.amount_paid_minor),
        "subscription": subscription,
        "refunds": refunds,
        "disputes": disputes,
        "payouts": payouts,
        "account": account_state,
        "ledger": _moved(before, _balances(world)),
    }


def run(db: Database, lifecycle: Lifecycle, order: list[int]) -> dict[str, Any]:
    """A fresh customer, the lifecycle's events in ``order`` through the endpoint and worker."""
    world = make_world(db, offline_stripe_ctx(retry_on_new_payment_method=False))
    started = start_offline_attempt(world)
    if lifecycle.paid_first:
        with world.db.transaction(actor="test") as tx:
            collections.apply_payment_state(
                tx,
                started.payment_id,
                PaymentSnapshot(
                    started.intent_id,
                    PaymentState.SUCCEEDED,
                    2000,
                    "USD",
                    "succeeded",
                    charge_id=started.charge_id,
                ),
                world.ctx,
            )
    events = lifecycle.events(world, started)
    before = _balances(world)
    for hooks in webhooks_for(world):
        for index in order:
            response = hooks.send(events[index])
            assert response.status_code == 200, response.text
            # One at a time, so the worker really sees them in this order.
            outcome = hooks.process()
            assert set(outcome) <= {"processed", "ignored"}, outcome
    with world.db.read() as tx:
        assert ledger.check_invariants(tx).ok
        outcomes = [
            (e.type, e.outcome)
            for e in tx.session.scalars(select(WebhookEvent).order_by(WebhookEvent.processed_at))
        ]
    del outcomes  # kept at hand for debugging a failure
    return state(world, started, before)


@pytest.mark.parametrize(("lifecycle", "i", "j"), PAIRS)
def test_every_pair_out_of_order_ends_like_in_order(
    db: Database, lifecycle: Lifecycle, i: int, j: int
) -> None:
    assert run(db, lifecycle, [j, i]) == run(db, lifecycle, [i, j])


@pytest.mark.parametrize("lifecycle", LIFECYCLES, ids=[lc.name for lc in LIFECYCLES])
def test_whole_lifecycles_reversed_and_shuffled(sqlite_db: Database, lifecycle: Lifecycle) -> None:
    n = _count(lifecycle)
    in_order = run(sqlite_db, lifecycle, list(range(n)))
    assert run(sqlite_db, lifecycle, list(reversed(range(n)))) == in_order
    shuffled = list(range(n))
    random.Random(n).shuffle(shuffled)
    assert run(sqlite_db, lifecycle, shuffled) == in_order
    # Every event twice, the duplicates late: nothing changes.
    assert run(sqlite_db, lifecycle, list(range(n)) + list(range(n))) == in_order


def test_the_payment_lifecycle_books_what_happened(sqlite_db: Database) -> None:
    final = run(sqlite_db, LIFECYCLES[0], [0, 1, 2, 3, 4])
    assert final["invoice"] == ("paid", 0, 2000)
    assert final["refunds"] == [("re_A", "succeeded", 500)]
    assert final["disputes"] == [("dp_A", "lost", "lost", True)]
    ledger_state = final["ledger"]
    # 20.00 in; 5.00 refunded; 15.00 lost to the dispute; 15.00 dispute fee.
    # (What the events moved: the invoice's 20.00 was on the receivable before them.)
    assert ledger_state["stripe_clearing"] == (2000 - 500 - 1500 - 1500, 0)
    assert ledger_state["dispute_losses"] == (1500, 0)
    assert ledger_state["payment_fees"] == (1500, 0)
    # Paid 20.00 off the receivable; the refund had no credit note, so it reopened 5.00.
    assert ledger_state["accounts_receivable"] == (-2000 + 500, 0)


def test_a_won_dispute_returns_the_money_but_not_the_fee(sqlite_db: Database) -> None:
    final = run(sqlite_db, LIFECYCLES[2], [0, 1, 2])
    assert final["disputes"] == [("dp_W", "won", "won", True)]
    # The payment was in before the events: only the dispute fee left clearing for good.
    assert final["ledger"]["stripe_clearing"] == (-1500, 0)
    assert "dispute_losses" not in final["ledger"]
    open_only = run(sqlite_db, LIFECYCLES[2], [0])
    # While open the disputed amount is held: pending out of clearing, not yet a loss.
    assert open_only["ledger"]["stripe_clearing"] == (-1500, -2000)
    assert open_only["ledger"]["dispute_losses"] == (0, 2000)
