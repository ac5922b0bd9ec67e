"""The payments service API: what other domains, the edges and the jobs call. Services take a
``Tx`` and never commit; the ``runner`` steps (provider calls) take a ``Database``.

Collections (one per finalized invoice)::

    start_collection(tx, invoice_id, ctx) -> Collection        # the payments.collect handler
    get_collection(tx, collection_or_invoice_id) -> Collection
    retry_collection(tx, collection_or_invoice_id, ctx) -> Payment          # a manual retry
    mark_paid(tx, collection_or_invoice_id, ctx, amount_minor=, currency=, reference=, paid_at=) -> Payment
    mark_uncollectible(tx, collection_or_invoice_id, reason=) -> Collection
    apply_payment_state(tx, payment_id, PaymentSnapshot, ctx, observed_at=) -> bool

Refunds, accounts, reconciliation::

    request_refund(tx, payment_id, amount_minor=, reason=, ctx=) -> Refund
    link_account(tx, customer_id, provider=, provider_customer_id=, providers=) -> PaymentAccount
    get_account(tx, customer_id) -> PaymentAccount
    clearing_balance(tx, currency, provider="stripe") -> ClearingBalance   # reconciliation
    provider_comparison(tx, since=, until=, provider=None) -> ProviderComparison  # reconciliation

Provider steps (commit per step)::

    runner.run_attempt(db, payment_id, ctx), runner.sync_payment(db, payment_id, ctx),
    runner.run_refund(db, refund_id, ctx), runner.sync_customer(db, customer_id, ctx)
"""

from tallybook.db import Tx
from tallybook.payments.context import PaymentsContext
from tallybook.payments.models import Payment
from tallybook.payments.service import runner
from tallybook.payments.service.accounts import get as get_account
from tallybook.payments.service.accounts import link as link_account
from tallybook.payments.service.collections import apply_payment_state
from tallybook.payments.service.collections import get as get_collection
from tallybook.payments.service.collections import start as start_collection
from tallybook.payments.service.comparison import (
    InvoiceComparison,
    PaymentComparison,
    ProviderComparison,
    ProviderView,
    UnmatchedProviderObject,
    provider_comparison,
)
from tallybook.payments.service.dunning import retry_now as _retry_now
from tallybook.payments.service.manual import mark_paid, mark_uncollectible
from tallybook.payments.service.postings import ClearingBalance, clearing_balance
from tallybook.payments.service.queries import (
    get_payment,
    list_collections,
    list_payments,
    payments_of,
)
from tallybook.payments.service.refunds import request as request_refund


def retry_collection(tx: Tx, collection_or_invoice_id: str, ctx: PaymentsContext) -> Payment:
    """A manual retry: a new attempt now (refused while one is under way)."""
    collection = get_collection(tx, collection_or_invoice_id, lock=True)
    return _retry_now(tx, collection, ctx)


__all__ = [
    "ClearingBalance",
    "InvoiceComparison",
    "PaymentComparison",
    "ProviderComparison",
    "ProviderView",
    "UnmatchedProviderObject",
    "apply_payment_state",
    "clearing_balance",
    "get_account",
    "get_collection",
    "get_payment",
    "link_account",
    "list_collections",
    "list_payments",
    "mark_paid",
    "mark_uncollectible",
    "payments_of",
    "provider_comparison",
    "request_refund",
    "retry_collection",
    "runner",
    "start_collection",
]
