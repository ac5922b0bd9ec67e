"""A customer with a billed month for console tests: a plan with a fee and per-token usage,
usage on three days, the month closed into a numbered invoice."""

from __future__ import annotations

from dataclasses import dataclass

from tallybook.db import Database
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.clock import utc
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import Billing, per_unit, setup_billing


@dataclass
class BilledMonth:
    billing: Billing
    invoice: InvoiceView

    @property
    def db(self) -> Database:
        return self.billing.db


def billed_month(db: Database) -> BilledMonth:
    billing = setup_billing(
        db,
        start=utc(2026, 11, 1),
        prices=lambda m: [flat_price(2000), per_unit(m["tokens"], "0.01", key="tokens")],
    )
    billing.run_jobs()
    billing.usage("tokens", 1000, utc(2026, 11, 5, 10))
    billing.usage("tokens", 250, utc(2026, 11, 5, 11))
    billing.usage("tokens", 500, utc(2026, 11, 20, 8))
    billing.run_jobs(utc(2026, 12, 1, 1, 30))
    cycle = [i for i in billing.invoices() if i.kind == "cycle" and i.status == "open"]
    assert len(cycle) == 1, billing.invoices()
    return BilledMonth(billing, cycle[0])
