from __future__ import annotations

from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.ledger import service as ledger
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import per_unit, setup_billing


def test_a_month_is_closed_into_one_invoice(db: Database) -> None:
    billing = setup_billing(
        db,
        start=utc(2026, 11, 1),
        prices=lambda m: [flat_price(2000), per_unit(m["tokens"], "0.01", key="tokens")],
    )
    billing.run_jobs()
    opening = billing.invoices()
    assert [(i.kind, i.total_minor, i.status) for i in opening] == [("opening", 2000, "open")]
    billing.usage("tokens", 1000, utc(2026, 11, 5))
    billing.usage("tokens", 500, utc(2026, 11, 20))
    billing.run_jobs(utc(2026, 12, 1, 0, 30))
    drafts = billing.invoices(status="draft")
    assert len(drafts) == 1
    billing.run_jobs(utc(2026, 12, 1, 1, 30))
    invoices = billing.invoices()
    cycle = [i for i in invoices if i.kind == "cycle"]
    assert len(cycle) == 1
    assert cycle[0].status == "open"
    assert [(line.kind, line.amount_minor) for line in cycle[0].lines] == [
        ("usage", 1500),
        ("fee_advance", 2000),
    ]
    assert cycle[0].number is not None and cycle[0].number.startswith("TB-2026-")
    with billing.db.read() as tx:
        assert ledger.check_invariants(tx).ok
