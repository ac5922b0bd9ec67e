"""A provider that answers from a script: a stand-in for *our* provider interface (not Stripe's
API), for dunning tests that need many attempts with chosen outcomes. Stripe itself is met
through the SDK against localstripe in the other tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from tallybook.payments.context import PaymentsContext
from tallybook.payments.providers import Providers
from tallybook.payments.providers.base import (
    CollectRequest,
    CustomerDetails,
    PaymentMethodMissing,
    PaymentSnapshot,
    PaymentState,
    ProviderCustomer,
    ProviderName,
    ProviderUnavailable,
    RefundRequest,
    RefundSnapshot,
    RefundState,
)
from tallybook.payments.providers.manual import ManualProvider
from tallybook.payments.settings import PaymentsSettings

DECLINE = "decline"
SUCCEED = "succeed"
ACTION = "action"
NO_METHOD = "no_method"
UNREACHABLE = "unreachable"


@dataclass
class ScriptedProvider:
    """Answers each confirmation with the next outcome of ``script`` (then ``default``)."""

    script: list[str] = field(default_factory=list)
    default: str = DECLINE
    name: ProviderName = ProviderName.STRIPE
    intents: dict[str, PaymentSnapshot] = field(default_factory=dict)
    confirmations: list[str] = field(default_factory=list)
    canceled: list[str] = field(default_factory=list)
    #: Like Stripe, one confirmation of a PaymentIntent at a time.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ensure_customer(self, details: CustomerDetails) -> ProviderCustomer:
        return ProviderCustomer(f"cus_scripted_{details.customer_id[-8:]}", "pm_scripted", True)

    def fetch_customer(self, provider_customer_id: str) -> ProviderCustomer:
        return ProviderCustomer(provider_customer_id, "pm_scripted", True)

    def start_payment(self, request: CollectRequest) -> PaymentSnapshot:
        outcome = self.script[0] if self.script else self.default
        if outcome == NO_METHOD:
            self.script.pop(0) if self.script else None
            raise PaymentMethodMissing("no method", code="payment_method_missing")
        intent_id = f"pi_scripted_{request.invoice_id[-8:]}_{request.attempt_number}"
        snapshot = PaymentSnapshot(
            intent_id,
            PaymentState.PENDING,
            request.amount.amount_minor,
            request.amount.currency,
            "requires_confirmation",
        )
        self.intents[intent_id] = snapshot
        return snapshot

    def confirm_payment(self, request: CollectRequest, provider_payment_id: str) -> PaymentSnapshot:
        with self.lock:
            return self._confirm(provider_payment_id)

    def _confirm(self, provider_payment_id: str) -> PaymentSnapshot:
        current = self.intents[provider_payment_id]
        if current.state is not PaymentState.PENDING:
            return current
        outcome = self.script.pop(0) if self.script else self.default
        self.confirmations.append(outcome)
        if outcome == UNREACHABLE:
            raise ProviderUnavailable("timed out")
        state = {
            DECLINE: PaymentState.FAILED,
            SUCCEED: PaymentState.SUCCEEDED,
            ACTION: PaymentState.REQUIRES_ACTION,
        }[outcome]
        snapshot = PaymentSnapshot(
            provider_payment_id,
            state,
            current.amount_minor,
            current.currency,
            {
                "decline": "requires_payment_method",
                "succeed": "succeeded",
                "action": "requires_action",
            }[outcome],
            charge_id=f"ch_{provider_payment_id[3:]}",
            failure_code="card_declined" if state is PaymentState.FAILED else None,
            decline_code="insufficient_funds" if state is PaymentState.FAILED else None,
            failure_message="Your card has insufficient funds."
            if state is PaymentState.FAILED
            else None,
            fee_minor=59 if state is PaymentState.SUCCEEDED else None,
        )
        self.intents[provider_payment_id] = snapshot
        return snapshot

    def fetch_payment(self, provider_payment_id: str) -> PaymentSnapshot:
        return self.intents[provider_payment_id]

    def cancel_payment(self, provider_payment_id: str, *, key: str) -> PaymentSnapshot:
        current = self.intents[provider_payment_id]
        if current.state in (PaymentState.SUCCEEDED, PaymentState.CANCELED):
            return current
        self.canceled.append(provider_payment_id)
        canceled = PaymentSnapshot(
            provider_payment_id,
            PaymentState.CANCELED,
            current.amount_minor,
            current.currency,
            "canceled",
        )
        self.intents[provider_payment_id] = canceled
        return canceled

    def refund(self, request: RefundRequest) -> RefundSnapshot:
        return RefundSnapshot(
            f"re_scripted_{request.refund_id[-8:]}",
            RefundState.SUCCEEDED,
            request.amount.amount_minor,
            request.amount.currency,
            request.provider_payment_id,
            None,
        )

    def fetch_refunds(self, provider_payment_id: str) -> list[RefundSnapshot]:
        return []


def scripted_context(provider: ScriptedProvider, **settings: object) -> PaymentsContext:
    fields: dict[str, object] = {"default_provider": "stripe"}
    fields.update(settings)
    return PaymentsContext(
        settings=PaymentsSettings(**fields),  # type: ignore[arg-type]
        providers=Providers(
            default=ProviderName.STRIPE,
            by_name={ProviderName.MANUAL: ManualProvider(), ProviderName.STRIPE: provider},
        ),
    )
