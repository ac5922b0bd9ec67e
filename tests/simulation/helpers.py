"""A customer billed for three closed months, and draft versions to simulate against them."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from tallybook.all_models import load_all_models
from tallybook.catalog import plans
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.simulation import service as simulation
from tallybook.simulation.domain import SimulationReport
from tallybook.simulation.service import SimulationRequest
from tests.fixtures.catalog_factories import create_version, flat_price
from tests.fixtures.invoicing_factories import Billing, per_unit, setup_billing

NOV = utc(2026, 11, 1)
#: After the third month's close (Jan) and its grace window.
CLOSED = utc(2027, 2, 1, 2)
GRADUATED = [
    {"up_to": 1000, "unit_price": "0.01"},
    {"up_to": 5000, "unit_price": "0.008", "flat_fee_minor": 500},
    {"up_to": None, "unit_price": "0.005"},
]


def tokens_price(meter_id: str) -> dict[str, Any]:
    return {
        "type": "usage",
        "key": "tokens",
        "name": "Tokens",
        "meter_id": meter_id,
        "model": "graduated",
        "tiers": GRADUATED,
    }


def billed_customer(
    db: Database,
    usage: list[tuple[int, int]] | None = None,
    *,
    meters: tuple[str, ...] = ("tokens", "images"),
    **fields: Any,
) -> Billing:
    """A customer on fee 20.00 + graduated tokens (+ nothing on ``images``), with ``usage``
    as (day from Nov 1, tokens), billed through three closed months."""
    billing = setup_billing(
        db,
        start=NOV,
        meters=meters,
        prices=lambda m: [flat_price(2000), tokens_price(m["tokens"])],
        **fields,
    )
    events = usage if usage is not None else [(3, 1500), (20, 700), (35, 6000), (70, 200)]
    for day, tokens in sorted(events):
        at = NOV + timedelta(days=day, hours=12)
        billing.run_jobs(at)
        billing.usage("tokens", tokens, at)
        if "images" in billing.meters:
            billing.usage("images", 3, at)
    billing.run_jobs(CLOSED)
    return billing


def plan_id_of(db: Database, version_id: str) -> str:
    with db.read() as tx:
        return plans.get_version(tx, version_id).plan_id


def draft_version(
    db: Database, billing: Billing, prices: list[dict[str, Any]], **fields: Any
) -> str:
    """An unpublished version of the customer's plan."""
    with db.transaction(actor="test") as tx:
        plan = plans.get_plan(tx, plans.get_version(tx, billing.version_id).plan_id)
        version = create_version(tx, plan_key=plan.key, publish=False, prices=prices, **fields)
        return version.id


def cheaper_tokens(billing: Billing) -> list[dict[str, Any]]:
    """Fee 15.00, tokens per unit at 0.009, images (a meter the old version lacked) at 0.50."""
    return [
        flat_price(1500),
        per_unit(billing.meters["tokens"], "0.009", key="tokens"),
        per_unit(billing.meters["images"], "0.50", key="images"),
    ]


def run(db: Database, version_id: str, **request: Any) -> SimulationReport:
    with db.read(actor="test") as tx:
        return simulation.simulate(tx, SimulationRequest(version_id, **request))


def row_counts(db: Database) -> dict[str, int]:
    """Rows of every table (the proof that a simulation wrote nothing)."""
    tables = load_all_models().metadata.sorted_tables
    assert len(tables) > 30
    with db.read() as tx:
        return {
            table.name: tx.session.execute(
                sa.select(sa.func.count()).select_from(table)
            ).scalar_one()
            for table in tables
        }


def money(value: str) -> int:
    """Major units as text → minor units (tests only; exact)."""
    return int(Decimal(value) * 100)
