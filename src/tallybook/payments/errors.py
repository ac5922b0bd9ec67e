"""The payments domain's error codes (documented in ``docs/errors.md`` under Payments)."""

from __future__ import annotations

from enum import StrEnum


class PaymentsCode(StrEnum):
    # Webhooks in (400 unless noted; nothing is stored)
    WEBHOOK_SIGNATURE_MISSING = "webhook_signature_missing"
    WEBHOOK_SIGNATURE_INVALID = "webhook_signature_invalid"
    WEBHOOK_TIMESTAMP_OUTSIDE_TOLERANCE = "webhook_timestamp_outside_tolerance"
    WEBHOOK_PAYLOAD_INVALID = "webhook_payload_invalid"
    #: 503: no endpoint secret is configured, so nothing can be verified (Stripe retries).
    WEBHOOK_SECRET_UNSET = "webhook_secret_unset"
    # Inbox
    INBOX_EVENT_NOT_REPLAYABLE = "inbox_event_not_replayable"
    # Collections and payments (409: the state forbids it)
    INVOICE_NOT_COLLECTIBLE = "invoice_not_collectible"
    COLLECTION_CLOSED = "collection_closed"
    ATTEMPT_IN_PROGRESS = "payment_attempt_in_progress"
    PAYMENT_NOT_REFUNDABLE = "payment_not_refundable"
    REFUND_EXCEEDS_REFUNDABLE = "refund_exceeds_refundable"
    MANUAL_PAYMENT_EXCEEDS_DUE = "manual_payment_exceeds_amount_due"
    PAYMENT_REFERENCE_INVALID = "payment_reference_invalid"
    # Payment accounts (the link between a customer and a provider)
    PROVIDER_INVALID = "payment_provider_invalid"
    PROVIDER_NOT_CONFIGURED = "payment_provider_not_configured"
    PROVIDER_CUSTOMER_INVALID = "provider_customer_id_invalid"
    PROVIDER_CUSTOMER_TAKEN = "provider_customer_id_taken"
    PAYMENT_ACCOUNT_LOCKED = "payment_account_locked"
