"""Usage credits live in the ledger in unit assets (U_<METER KEY>) with the same guarantees."""

from __future__ import annotations

from tallybook.db import Database
from tallybook.kit.money import Money
from tallybook.ledger import service as ledger
from tallybook.ledger.values import AccountKind, AccountSpec, Leg, TransferRequest
from tests.fixtures.factories import create_customer


def test_usage_credit_wallet_in_units(db: Database) -> None:
    with db.transaction() as tx:
        customer = create_customer(tx)
        issuance = ledger.open_account(
            tx, AccountSpec.system("usage_credit_issuance", "U_TOKENS", AccountKind.EQUITY)
        )
        wallet = ledger.open_account(
            tx,
            AccountSpec(
                "usage_credit_grant",
                "U_TOKENS",
                AccountKind.LIABILITY,
                customer_id=customer.id,
                reference="grt_1",
                debits_must_not_exceed_credits=True,
            ),
        )
        consumed = ledger.open_account(
            tx, AccountSpec.system("usage_credit_consumed", "U_TOKENS", AccountKind.EXPENSE)
        )
        million = Money(1_000_000 * 1_000_000, "U_TOKENS")
        issue = ledger.create_transfer(
            tx,
            TransferRequest(
                "grant:grt_1:issue",
                [Leg.debit(issuance.id, million), Leg.credit(wallet.id, million)],
                "grant.issue",
            ),
        )
        assert issue.ok
        too_much = Money(million.amount_minor + 1, "U_TOKENS")
        refused = ledger.create_transfer(
            tx,
            TransferRequest(
                "burn-1",
                [Leg.debit(wallet.id, too_much), Leg.credit(consumed.id, too_much)],
                "usage_burn",
            ),
        )
        assert not refused.ok
        assert refused.code == "exceeds_credits"
        mixed = ledger.create_transfer(
            tx,
            TransferRequest(
                "burn-2",
                [
                    Leg.debit(wallet.id, Money(5, "U_TOKENS")),
                    Leg.credit(consumed.id, Money(5, "USD")),
                ],
                "usage_burn",
            ),
        )
        assert not mixed.ok
    with db.read() as tx:
        assert ledger.balance(tx, wallet.id).posted == million
        assert ledger.check_invariants(tx).ok
