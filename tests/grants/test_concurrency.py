"""Concurrent redemptions on PostgreSQL never pass a code's limits: total and per customer."""

from __future__ import annotations

from tallybook.db import Database
from tallybook.grants import promotions
from tallybook.kit.errors import TallybookError
from tallybook.kit.pagination import PageRequest
from tests.fixtures.factories import create_customer
from tests.fixtures.grants_factories import in_parallel

WORKERS = 24


def test_concurrent_redemptions_never_exceed_the_limits(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code="LAUNCH",
                kind="credit",
                credit=promotions.CreditTemplate(amount_minor=500, currency="USD"),
                max_redemptions=10,
                max_redemptions_per_customer=2,
            ),
        )
        # Six customers, four racing requests each: per customer at most 2, in total 10.
        customers = [create_customer(tx).id for _ in range(WORKERS // 4)]

    def redeem(n: int) -> str:
        try:
            with pg_db.transaction(actor=f"racer-{n}") as tx:
                promotions.redeem(tx, "LAUNCH", customer=customers[n % len(customers)])
        except TallybookError as error:
            return error.code
        return "ok"

    outcomes = in_parallel(WORKERS, redeem)
    assert outcomes.count("ok") == 10
    assert set(outcomes) <= {
        "ok",
        "promotion_code_exhausted",
        "promotion_code_customer_limit_reached",
    }
    with pg_db.read() as tx:
        code = promotions.resolve_code(tx, "LAUNCH")
        assert code.times_redeemed == 10
        page = promotions.list_redemptions(tx, PageRequest(limit=100), code="LAUNCH")
        per_customer: dict[str, int] = {}
        for redemption in page.data:
            per_customer[redemption.customer_id] = per_customer.get(redemption.customer_id, 0) + 1
            assert redemption.grant_id is not None
    assert len(page.data) == 10
    assert max(per_customer.values()) <= 2
