"""The payments domain's ledger postings (ADR 0002), with deterministic transfer ids:

| event | transfer id | legs |
| --- | --- | --- |
| payment succeeded | ``payment:<pay id>`` | Dr ``stripe_clearing`` (or ``manual_clearing``); Cr ``accounts_receivable`` up to what the invoice still owes, Cr ``customer_balance`` the rest |
| its processing fee | ``payment:<pay id>:fee`` | Dr ``payment_fees``, Cr ``stripe_clearing`` |
| refund succeeded | ``refund:<rfd id>`` | Dr ``customer_balance`` (what it holds), Dr ``accounts_receivable`` (the rest), Cr the clearing account |
| refund failed after succeeding | ``refund:<rfd id>:failed`` | the reversal of ``refund:<rfd id>`` |
| dispute opened (funds withdrawn) | ``dispute:<dsp id>:open`` | a hold: Dr ``dispute_losses``, Cr ``stripe_clearing`` |
| dispute lost / won | ``dispute:<dsp id>:lost`` / ``:won`` | post / void the hold |
| dispute fees | ``dispute:<dsp id>:fee:<n>`` | Dr ``payment_fees``, Cr ``stripe_clearing`` (reversed sides for a returned fee) |
| payout paid | ``payout:<pyo id>`` | Dr ``bank``, Cr ``stripe_clearing`` |
| payout failed after paid | ``payout:<pyo id>:failed`` | the reversal of ``payout:<pyo id>`` |

``payment_fees`` is not in ADR 0002's chart: Stripe pays out net of its fees, so without booking
them ``stripe_clearing`` could never return to zero (recorded in ``docs/payments.md``).

A dispute is a **hold** while open: Stripe withdrew the money (``clearing_balance`` counts it
out), but whether it is a loss is decided later; losing posts the hold, winning voids it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tallybook.db import Tx
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import chart
from tallybook.ledger import service as ledger
from tallybook.ledger.rejections import Rejection
from tallybook.ledger.values import (
    AccountSpec,
    Leg,
    PostPending,
    ReverseTransfer,
    TransferRequest,
    TransferResult,
    VoidPending,
)
from tallybook.payments.domain import split_payment, split_refund
from tallybook.payments.providers.base import ProviderName

AR: Final = chart.ACCOUNTS_RECEIVABLE
BALANCE: Final = chart.CUSTOMER_BALANCE
STRIPE_CLEARING: Final = chart.STRIPE_CLEARING
MANUAL_CLEARING: Final = chart.MANUAL_CLEARING
BANK: Final = chart.BANK
DISPUTE_LOSSES: Final = chart.DISPUTE_LOSSES
PAYMENT_FEES: Final = chart.PAYMENT_FEES


def clearing_code(provider: str) -> str:
    return STRIPE_CLEARING if provider == ProviderName.STRIPE else MANUAL_CLEARING


def spec(code: str, currency: str, customer_id: str | None = None) -> AccountSpec:
    """The ADR 0002 identity of each account this domain posts to (from ``ledger.chart``)."""
    if code not in (
        AR,
        BALANCE,
        STRIPE_CLEARING,
        MANUAL_CLEARING,
        BANK,
        DISPUTE_LOSSES,
        PAYMENT_FEES,
    ):
        raise ValueError(f"unknown payments account {code}")
    return chart.spec(code, currency, customer_id=customer_id)


def account_id(tx: Tx, code: str, currency: str, customer_id: str | None = None) -> str:
    return ledger.open_account(tx, spec(code, currency, customer_id)).id


def _post(
    tx: Tx, request: TransferRequest | PostPending | VoidPending | ReverseTransfer
) -> TransferResult:
    """Post, and insist: every posting here is within limits by construction (a receivable has
    no limit; the balance is only debited up to what it holds, read under its row lock)."""
    result = ledger.create_transfer(tx, request)
    invariant(result.ok, f"payments posting {request.id} refused: {result.code} {result.message}")
    return result


def transfer_exists(tx: Tx, transfer_id: str) -> bool:
    from tallybook.kit.errors import NotFound

    try:
        ledger.get_transfer(tx, transfer_id)
    except NotFound:
        return False
    return True


@dataclass(frozen=True, slots=True)
class PaymentPosting:
    payment_id: str
    invoice_id: str
    customer_id: str
    provider: str
    amount: Money
    #: What the invoice still owed before this payment.
    amount_remaining_minor: int


def post_payment(tx: Tx, posting: PaymentPosting) -> int:
    """Post a succeeded payment; returns the part applied to the invoice's receivable."""
    currency = posting.amount.currency
    split = split_payment(posting.amount.amount_minor, posting.amount_remaining_minor)
    legs = [Leg.debit(account_id(tx, clearing_code(posting.provider), currency), posting.amount)]
    if split.receivable_minor:
        legs.append(
            Leg.credit(
                account_id(tx, AR, currency, posting.customer_id),
                Money(split.receivable_minor, currency),
            )
        )
    if split.balance_minor:
        legs.append(
            Leg.credit(
                account_id(tx, BALANCE, currency, posting.customer_id),
                Money(split.balance_minor, currency),
            )
        )
    _post(
        tx,
        TransferRequest(
            id=f"payment:{posting.payment_id}",
            legs=legs,
            reason_code="payment",
            metadata={"invoice_id": posting.invoice_id, "payment_id": posting.payment_id},
        ),
    )
    return split.receivable_minor


def post_fee(tx: Tx, transfer_id: str, fee: Money, *, metadata: dict[str, str]) -> None:
    """A processing fee Stripe kept (positive) or gave back (negative)."""
    if fee.amount_minor == 0:
        return
    fees = account_id(tx, PAYMENT_FEES, fee.currency)
    clearing = account_id(tx, STRIPE_CLEARING, fee.currency)
    amount = abs(fee)
    legs = (
        [Leg.debit(fees, amount), Leg.credit(clearing, amount)]
        if fee.amount_minor > 0
        else [Leg.debit(clearing, amount), Leg.credit(fees, amount)]
    )
    _post(
        tx, TransferRequest(id=transfer_id, legs=legs, reason_code="payment.fee", metadata=metadata)
    )


def balance_available_minor(tx: Tx, customer_id: str, currency: str) -> int:
    """What the customer's balance holds, without opening it."""
    page = ledger.list_accounts(
        tx, PageRequest(limit=1), customer_id=customer_id, code=BALANCE, currency=currency
    )
    if not page.data:
        return 0
    return ledger.balance(tx, page.data[0].id).available.amount_minor


def post_refund(
    tx: Tx,
    *,
    refund_id: str,
    payment_id: str,
    invoice_id: str,
    customer_id: str,
    provider: str,
    amount: Money,
) -> None:
    currency = amount.currency
    split = split_refund(amount.amount_minor, balance_available_minor(tx, customer_id, currency))
    legs: list[Leg] = []
    if split.balance_minor:
        legs.append(
            Leg.debit(
                account_id(tx, BALANCE, currency, customer_id), Money(split.balance_minor, currency)
            )
        )
    if split.receivable_minor:
        legs.append(
            Leg.debit(
                account_id(tx, AR, currency, customer_id), Money(split.receivable_minor, currency)
            )
        )
    legs.append(Leg.credit(account_id(tx, clearing_code(provider), currency), amount))
    result = ledger.create_transfer(
        tx,
        TransferRequest(
            id=f"refund:{refund_id}",
            legs=legs,
            reason_code="refund",
            metadata={"invoice_id": invoice_id, "payment_id": payment_id, "refund_id": refund_id},
        ),
    )
    # The balance was read a moment ago; a concurrent spend of it is the one way the limit can
    # refuse. Then take it all from the receivable (it has no limit) under a new id.
    if not result.ok and result.code is Rejection.EXCEEDS_CREDITS:
        _post(
            tx,
            TransferRequest(
                id=f"refund:{refund_id}:receivable",
                legs=[
                    Leg.debit(account_id(tx, AR, currency, customer_id), amount),
                    Leg.credit(account_id(tx, clearing_code(provider), currency), amount),
                ],
                reason_code="refund",
                metadata={
                    "invoice_id": invoice_id,
                    "payment_id": payment_id,
                    "refund_id": refund_id,
                },
            ),
        )
        return
    invariant(result.ok, f"refund posting refused: {result.code} {result.message}")


def reverse_refund(tx: Tx, refund_id: str) -> None:
    """A refund that failed after it succeeded: the money came back to Stripe."""
    for original in (f"refund:{refund_id}", f"refund:{refund_id}:receivable"):
        if transfer_exists(tx, original):
            _post(
                tx,
                ReverseTransfer(
                    id=f"{original}:failed", transfer_id=original, reason_code="refund.failed"
                ),
            )


def open_dispute_hold(tx: Tx, dispute_id: str, amount: Money, *, metadata: dict[str, str]) -> None:
    _post(
        tx,
        TransferRequest(
            id=f"dispute:{dispute_id}:open",
            legs=[
                Leg.debit(account_id(tx, DISPUTE_LOSSES, amount.currency), amount),
                Leg.credit(account_id(tx, STRIPE_CLEARING, amount.currency), amount),
            ],
            reason_code="dispute.open",
            metadata=metadata,
            pending=True,
        ),
    )


def close_dispute_hold(tx: Tx, dispute_id: str, *, lost: bool) -> None:
    hold = f"dispute:{dispute_id}:open"
    if lost:
        _post(
            tx,
            PostPending(
                id=f"dispute:{dispute_id}:lost", pending_id=hold, reason_code="dispute.lost"
            ),
        )
    else:
        _post(
            tx,
            VoidPending(id=f"dispute:{dispute_id}:won", pending_id=hold, reason_code="dispute.won"),
        )


def post_payout(tx: Tx, payout_id: str, amount: Money, *, provider: str) -> None:
    _post(
        tx,
        TransferRequest(
            id=f"payout:{payout_id}",
            legs=[
                Leg.debit(account_id(tx, BANK, amount.currency), amount),
                Leg.credit(account_id(tx, clearing_code(provider), amount.currency), amount),
            ],
            reason_code="payout",
            metadata={"payout_id": payout_id},
        ),
    )


def reverse_payout(tx: Tx, payout_id: str) -> None:
    _post(
        tx,
        ReverseTransfer(
            id=f"payout:{payout_id}:failed",
            transfer_id=f"payout:{payout_id}",
            reason_code="payout.failed",
        ),
    )


@dataclass(frozen=True, slots=True)
class ClearingBalance:
    """What a clearing account says the provider holds for us, in one currency.

    ``posted`` counts every payment, fee, refund and payout booked; ``held_by_disputes`` is
    money Stripe withdrew for open disputes (a hold: not yet a loss); ``outstanding`` is what
    Stripe should still pay out. Once Stripe has paid out everything, ``outstanding`` is zero:
    reconciliation checks it against the provider's own balance.
    """

    code: str
    currency: str
    posted: Money
    held_by_disputes: Money

    @property
    def outstanding(self) -> Money:
        return self.posted - self.held_by_disputes


def clearing_balance(
    tx: Tx, currency: str, *, provider: str = ProviderName.STRIPE
) -> ClearingBalance:
    """The clearing account's balance (zero when it was never opened)."""
    code = clearing_code(provider)
    page = ledger.list_accounts(tx, PageRequest(limit=1), code=code, currency=currency)
    zero = Money.zero(currency)
    if not page.data:
        return ClearingBalance(code, currency, zero, zero)
    balance = ledger.balance(tx, page.data[0].id)
    return ClearingBalance(
        code=code,
        currency=currency,
        posted=balance.posted,
        held_by_disputes=balance.credits_pending,
    )
