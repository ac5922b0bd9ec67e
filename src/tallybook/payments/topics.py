"""Outbox topics of the payments domain (handlers in ``tasks.py``)."""

from __future__ import annotations

from typing import Final

#: Enqueued by invoicing on finalization: ``{"invoice_id"}`` (dedup key: the invoice id).
COLLECT: Final = "payments.collect"
#: One collection attempt: ``{"payment_id"}`` (dedup key: the payment id; FIFO per invoice).
ATTEMPT: Final = "payments.attempt"
#: One refund: ``{"refund_id"}``.
REFUND: Final = "payments.refund"
#: Re-read a customer's payment methods from the provider: ``{"customer_id"}``.
SYNC_CUSTOMER: Final = "payments.sync_customer"
