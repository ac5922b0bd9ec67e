"""The manual provider: bank transfers, marked paid by finance.

Nothing leaves tallybook: an attempt waits for the transfer (``awaiting_transfer``) until
finance records it (``tallybook payments mark-paid``, ``POST /v1/collections/{id}/mark_paid``),
which posts the payment to ``manual_clearing``. It needs no configuration, so tallybook works
without Stripe.
"""

from __future__ import annotations

from tallybook.payments.providers.base import (
    CollectRequest,
    CustomerDetails,
    PaymentSnapshot,
    PaymentState,
    ProviderCustomer,
    ProviderName,
    ProviderRejected,
    RefundRequest,
    RefundSnapshot,
    RefundState,
)


def manual_payment_id(payment_id: str) -> str:
    return f"manual:{payment_id}"


class ManualProvider:
    name = ProviderName.MANUAL

    def ensure_customer(self, details: CustomerDetails) -> ProviderCustomer:
        # Bank transfers need no account anywhere; "present" because a transfer is always
        # possible.
        return ProviderCustomer(
            provider_customer_id=f"manual:{details.customer_id}",
            default_payment_method_id=None,
            payment_method_present=True,
        )

    def fetch_customer(self, provider_customer_id: str) -> ProviderCustomer:
        return ProviderCustomer(provider_customer_id, None, True)

    def start_payment(self, request: CollectRequest) -> PaymentSnapshot:
        return PaymentSnapshot(
            provider_payment_id=manual_payment_id(request.payment_id),
            state=PaymentState.AWAITING_TRANSFER,
            amount_minor=request.amount.amount_minor,
            currency=request.amount.currency,
            provider_status="awaiting_transfer",
        )

    def confirm_payment(self, request: CollectRequest, provider_payment_id: str) -> PaymentSnapshot:
        return self.start_payment(request)

    def fetch_payment(self, provider_payment_id: str) -> PaymentSnapshot:
        raise ProviderRejected("manual payments are recorded by finance, not fetched")

    def cancel_payment(self, provider_payment_id: str, *, key: str) -> PaymentSnapshot:
        raise ProviderRejected("manual payments have nothing to cancel")

    def refund(self, request: RefundRequest) -> RefundSnapshot:
        # Finance pays the money back by transfer; recording the refund is the confirmation.
        return RefundSnapshot(
            provider_refund_id=f"manual:{request.refund_id}",
            state=RefundState.SUCCEEDED,
            amount_minor=request.amount.amount_minor,
            currency=request.amount.currency,
            provider_payment_id=request.provider_payment_id,
            charge_id=None,
        )

    def fetch_refunds(self, provider_payment_id: str) -> list[RefundSnapshot]:
        return []
