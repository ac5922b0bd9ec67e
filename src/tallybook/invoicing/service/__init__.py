"""Invoicing's public service API (never commits). Other domains import this module::

    from tallybook.invoicing import service as invoicing
    invoice = invoicing.get_invoice(tx, "in_…")

See ``docs/invoicing.md`` for the contract (ADR 0002 for payments).
"""

from tallybook.invoicing.service.billing import JOB_CLOSE, PAYMENTS_TOPIC, Outcome, bill
from tallybook.invoicing.service.credit_notes import (
    CreditLine,
    CreditNoteReason,
    create_credit_note,
    get_credit_note,
    list_credit_notes,
)
from tallybook.invoicing.service.drafts import (
    check_threshold,
    clear_billing_threshold,
    create_draft,
    finalize_invoice,
    finalize_period,
    preview,
    refresh_draft,
    rerate,
    set_billing_threshold,
    threshold_for,
)
from tallybook.invoicing.service.gather import BillingRequest
from tallybook.invoicing.service.lifecycle import (
    get_invoice,
    list_invoices,
    mark_uncollectible,
    record_payment,
    void,
)

__all__ = [
    "JOB_CLOSE",
    "PAYMENTS_TOPIC",
    "BillingRequest",
    "CreditLine",
    "CreditNoteReason",
    "Outcome",
    "bill",
    "check_threshold",
    "clear_billing_threshold",
    "create_credit_note",
    "create_draft",
    "finalize_invoice",
    "finalize_period",
    "get_credit_note",
    "get_invoice",
    "list_credit_notes",
    "list_invoices",
    "mark_uncollectible",
    "preview",
    "record_payment",
    "refresh_draft",
    "rerate",
    "set_billing_threshold",
    "threshold_for",
    "void",
]
