"""Payment metrics count what was committed: a state change rolled back is not counted."""

from __future__ import annotations

import pytest

from tallybook.db import Database
from tallybook.payments.metrics import PAYMENT_STATES
from tallybook.payments.providers.base import PaymentSnapshot, PaymentState
from tallybook.payments.service import collections
from tests.payments.conftest import make_world, offline_stripe_ctx, start_offline_attempt


class Abandon(Exception):
    pass


def test_a_payment_state_change_rolled_back_is_not_counted(db: Database) -> None:
    world = make_world(db, offline_stripe_ctx(retry_on_new_payment_method=False))
    started = start_offline_attempt(world)
    succeeded = PaymentSnapshot(
        started.intent_id,
        PaymentState.SUCCEEDED,
        2000,
        "USD",
        "succeeded",
        charge_id=started.charge_id,
    )
    counted = PAYMENT_STATES.labels("stripe", "succeeded")
    before = counted._value.get()

    def change_then_abandon() -> None:
        with world.db.transaction(actor="test") as tx:
            assert collections.apply_payment_state(tx, started.payment_id, succeeded, world.ctx)
            raise Abandon

    with pytest.raises(Abandon):
        change_then_abandon()
    assert counted._value.get() == before
    with world.db.transaction(actor="test") as tx:
        assert collections.apply_payment_state(tx, started.payment_id, succeeded, world.ctx)
    assert counted._value.get() == before + 1
