"""Error codes of invoicing. Documented in ``docs/errors.md`` under "Invoicing"."""

from __future__ import annotations

from enum import StrEnum


class InvoiceCode(StrEnum):
    #: The invoice's status forbids the operation (finalize a paid one, void a void one…).
    STATUS_INVALID = "invoice_status_invalid"
    #: Voiding an invoice that has received payments: issue a credit note instead.
    VOID_PAID = "invoice_void_paid"
    #: A finalized invoice is never edited; corrections are credit notes or adjustments.
    IMMUTABLE = "invoice_immutable"
    #: Nothing to finalize for that subscription and period.
    NOTHING_TO_BILL = "invoice_nothing_to_bill"
    #: A payment in another currency than the invoice's.
    PAYMENT_CURRENCY_MISMATCH = "invoice_payment_currency_mismatch"
    #: The same payment id recorded with another invoice or amount.
    PAYMENT_CONFLICT = "invoice_payment_conflict"
    #: A payment amount that is not positive.
    PAYMENT_AMOUNT_INVALID = "invoice_payment_amount_invalid"
    #: A credit note for more than what is left to credit on the invoice or a line.
    CREDIT_NOTE_AMOUNT_INVALID = "credit_note_amount_invalid"
    #: A credit note naming a line of another invoice.
    CREDIT_NOTE_LINE_INVALID = "credit_note_line_invalid"
    #: A credit note reason outside the documented list.
    CREDIT_NOTE_REASON_INVALID = "credit_note_reason_invalid"
    #: A billing threshold that is not a positive amount.
    THRESHOLD_INVALID = "billing_threshold_invalid"
    #: The ledger refused a posting (the invoice is left untouched; the job retries).
    LEDGER_REFUSED = "invoice_ledger_refused"
