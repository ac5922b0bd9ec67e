"""A small billed world for reconciliation tests: a customer on a plan with a monthly fee and
metered tokens, a month of usage, the month closed and its invoices collected (a scripted
provider standing in for Stripe's answers), and helpers to run reconciliation and plant
corruption directly in the tables (what a bug or a hand edit would leave behind)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import pytest

from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.payments.tasks import outbox_handlers
from tallybook.reconciliation import service
from tallybook.reconciliation.domain import Options
from tallybook.reconciliation.models import Discrepancy
from tallybook.work.outbox import relay_once
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import Billing, per_unit, setup_billing
from tests.payments.scripted import SUCCEED, ScriptedProvider, scripted_context

NOV, DEC = utc(2026, 11, 1), utc(2026, 12, 1)
OPTIONS = Options(rollup_window_start=NOV, rollup_window_end=DEC)


@dataclass
class World:
    billing: Billing

    @property
    def db(self) -> Database:
        return self.billing.db

    def reconcile(self, day: date | None = None) -> service.RunOutcome:
        return service.run_reconciliation(self.db, day=day, options=OPTIONS, owner="test")

    def open_discrepancies(self) -> list[Discrepancy]:
        with self.db.read() as tx:
            rows = service.list_discrepancies(tx, open_only=True, limit=500)
            for row in rows:
                tx.session.expunge(row)
            return rows

    def open_kinds(self) -> set[str]:
        return {d.kind for d in self.open_discrepancies()}

    def advance_to(self, instant: datetime) -> None:
        self.billing.at(instant)


def relay_payments(db: Database) -> None:
    handlers = outbox_handlers(scripted_context(ScriptedProvider(default=SUCCEED)))
    for _ in range(20):
        if not any(relay_once(db, handlers).values()):
            return


@pytest.fixture
def world(db: Database) -> World:
    billing = setup_billing(
        db,
        start=NOV,
        prices=lambda m: [flat_price(2000), per_unit(m["tokens"], "0.01", key="tokens")],
    )
    billing.run_jobs()
    billing.usage("tokens", 1200, utc(2026, 11, 3, 10, 15))
    billing.usage("tokens", 800, utc(2026, 11, 20, 16, 40))
    billing.run_jobs(utc(2026, 12, 1, 3))
    relay_payments(billing.db)
    billing.at(utc(2026, 12, 1, 6))
    invoices = billing.invoices()
    assert invoices and all(i.status == "paid" for i in invoices), [
        (i.kind, i.status) for i in invoices
    ]
    return World(billing)
