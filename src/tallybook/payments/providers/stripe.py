"""The Stripe provider, on the official SDK (``stripe.StripeClient``).

One PaymentIntent per collection attempt, created unconfirmed and then confirmed by id:

1. ``start_payment`` creates the PaymentIntent (key ``tb:payment:<invoice>:<attempt>``). The
   caller stores its id before going on.
2. ``confirm_payment`` confirms that PaymentIntent by id (key ``tb:confirm:<invoice>:<attempt>``).

A PaymentIntent succeeds at most once, so confirming by id can never charge twice, whatever
happens to the network: a retry after a timeout replays the same key (Stripe answers with the
first result) and, if Stripe has forgotten the key, confirming a PaymentIntent that already
succeeded is refused and we read its state instead. A PaymentIntent created twice (a timeout on
step 1 after Stripe did the work, beyond the key's lifetime) is an unconfirmed orphan: it moves
no money.

Retries are ours (through the outbox), so the SDK's own retries are off
(``max_network_retries=0``), and every call has an explicit connect and read timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

import httpx
import stripe

from tallybook.payments.providers import stripe_objects as so
from tallybook.payments.providers.base import (
    CollectRequest,
    CustomerDetails,
    PaymentMethodMissing,
    PaymentSnapshot,
    PaymentState,
    ProviderCustomer,
    ProviderName,
    ProviderRejected,
    ProviderUnavailable,
    RefundRequest,
    RefundSnapshot,
    idempotency_key,
)

log = logging.getLogger(__name__)

#: Expanded on every PaymentIntent we read, for the charge and its fee.
PAYMENT_EXPAND: Final = ["latest_charge.balance_transaction"]
REFUNDS_PAGE_MAX: Final = 100
#: Stripe's error code for "this PaymentIntent is not in a state that allows that".
UNEXPECTED_STATE: Final = "payment_intent_unexpected_state"


def _translate(error: stripe.StripeError) -> Exception:
    code = getattr(error, "code", None)
    if isinstance(error, (stripe.APIConnectionError, stripe.RateLimitError)):
        return ProviderUnavailable(f"Stripe unreachable: {error.user_message or error}", code=code)
    if isinstance(error, (stripe.AuthenticationError, stripe.PermissionError)):
        # Credentials are wrong: nothing happened; retrying after a fix will work.
        return ProviderUnavailable(f"Stripe refused our credentials: {error}", code=code)
    status = error.http_status or 0
    if isinstance(error, stripe.APIError) or status >= 500:
        return ProviderUnavailable(f"Stripe error {status}: {error}", code=code)
    return ProviderRejected(f"Stripe refused the request ({status}): {error}", code=code)


class StripeProvider:
    name = ProviderName.STRIPE

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_seconds: float = 20.0,
        connect_timeout_seconds: float = 5.0,
        off_session: bool = True,
        http_client: stripe.HTTPClient | None = None,
    ) -> None:
        client = http_client or stripe.HTTPXClient(
            timeout=httpx.Timeout(timeout_seconds, connect=connect_timeout_seconds),
            allow_sync_methods=True,
        )
        self.off_session = off_session
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=0,
            http_client=client,
        )

    # Plumbing -------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[[], Any]) -> dict[str, Any]:
        """Run one SDK call; answer its object as a plain dict (webhooks carry plain JSON, so
        one set of readers serves both)."""
        try:
            return _plain(fn())
        except stripe.StripeError as error:
            translated = _translate(error)
            log.info("stripe call failed", extra={"call": what, "error": str(translated)})
            raise translated from error

    # Customers ------------------------------------------------------------------------------

    def ensure_customer(self, details: CustomerDetails) -> ProviderCustomer:
        params: dict[str, Any] = {
            "metadata": {
                so.METADATA_CUSTOMER_ID: details.customer_id,
                "tallybook_external_id": details.external_id,
            }
        }
        if details.email:
            params["email"] = details.email
        if details.name:
            params["name"] = details.name
        customer = self._call(
            "customers.create",
            lambda: self.client.v1.customers.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": idempotency_key("customer", details.customer_id)},
            ),
        )
        return so.customer_snapshot(customer, payment_method_present=False)

    def _first_card(self, provider_customer_id: str) -> tuple[str, str] | None:
        methods = self._call(
            "payment_methods.list",
            lambda: self.client.v1.payment_methods.list(
                params={"customer": provider_customer_id, "type": "card", "limit": 1}
            ),
        )
        for method in methods.get("data") or []:
            return str(method["id"]), str(method["type"])
        return None

    def fetch_customer(self, provider_customer_id: str) -> ProviderCustomer:
        customer = self._call(
            "customers.retrieve",
            lambda: self.client.v1.customers.retrieve(provider_customer_id),
        )
        snapshot = so.customer_snapshot(customer)
        if snapshot.deleted or snapshot.default_payment_method_id is not None:
            return snapshot
        first = self._first_card(provider_customer_id)
        return so.customer_snapshot(customer, payment_method_present=first is not None)

    def _payment_method(self, provider_customer_id: str) -> tuple[str, str]:
        """The method to charge: the customer's default, else its newest saved card."""
        customer = self.fetch_customer(provider_customer_id)
        if customer.deleted:
            raise PaymentMethodMissing(
                f"Stripe customer {provider_customer_id} is deleted", code="customer_deleted"
            )
        default = customer.default_payment_method_id
        if default is not None:
            method = self._call(
                "payment_methods.retrieve",
                lambda: self.client.v1.payment_methods.retrieve(default),
            )
            return default, str(method["type"])
        first = self._first_card(provider_customer_id)
        if first is None:
            raise PaymentMethodMissing(
                f"Stripe customer {provider_customer_id} has no payment method",
                code="payment_method_missing",
            )
        return first

    # Payments -------------------------------------------------------------------------------

    def start_payment(self, request: CollectRequest) -> PaymentSnapshot:
        if request.provider_customer_id is None:
            raise PaymentMethodMissing("no Stripe customer", code="payment_method_missing")
        method_id, method_type = self._payment_method(request.provider_customer_id)
        metadata = {
            so.METADATA_PAYMENT_ID: request.payment_id,
            so.METADATA_INVOICE_ID: request.invoice_id,
            so.METADATA_ATTEMPT: str(request.attempt_number),
            so.METADATA_CUSTOMER_ID: request.customer_id,
        }
        if request.invoice_number:
            metadata["tallybook_invoice_number"] = request.invoice_number
        params: dict[str, Any] = {
            "amount": request.amount.amount_minor,
            "currency": request.amount.currency.lower(),
            "customer": request.provider_customer_id,
            "payment_method": method_id,
            "payment_method_types": [method_type],
            "metadata": metadata,
        }
        key = idempotency_key("payment", request.attempt_key, request.attempt_number)
        intent = self._call(
            "payment_intents.create",
            lambda: self.client.v1.payment_intents.create(
                params=params,  # type: ignore[arg-type]
                options={"idempotency_key": key},
            ),
        )
        return so.payment_snapshot(intent)

    def confirm_payment(self, request: CollectRequest, provider_payment_id: str) -> PaymentSnapshot:
        params: dict[str, Any] = {"expand": PAYMENT_EXPAND}
        if self.off_session:
            # The customer is not present: a merchant-initiated charge of a saved method.
            params["off_session"] = True
        key = idempotency_key("confirm", request.attempt_key, request.attempt_number)
        try:
            intent = _plain(
                self.client.v1.payment_intents.confirm(
                    provider_payment_id,
                    params=params,  # type: ignore[arg-type]
                    options={"idempotency_key": key},
                )
            )
        except stripe.CardError as error:
            # Declined: the PaymentIntent records the failure; read it back.
            snapshot = self.fetch_payment(provider_payment_id)
            if snapshot.state is PaymentState.FAILED:
                return snapshot
            return _with_failure(snapshot, error)
        except stripe.InvalidRequestError as error:
            # Already confirmed (a retry after a lost answer, or another worker): its state is
            # the answer. Anything else is a real refusal.
            snapshot = self.fetch_payment(provider_payment_id)
            if snapshot.state is not PaymentState.PENDING:
                return snapshot
            raise _translate(error) from error
        except stripe.StripeError as error:
            raise _translate(error) from error
        return so.payment_snapshot(intent)

    def fetch_payment(self, provider_payment_id: str) -> PaymentSnapshot:
        intent = self._call(
            "payment_intents.retrieve",
            lambda: self.client.v1.payment_intents.retrieve(
                provider_payment_id,
                params={"expand": PAYMENT_EXPAND},
            ),
        )
        return so.payment_snapshot(intent)

    def cancel_payment(self, provider_payment_id: str, *, key: str) -> PaymentSnapshot:
        try:
            intent = _plain(
                self.client.v1.payment_intents.cancel(
                    provider_payment_id, options={"idempotency_key": key}
                )
            )
        except stripe.InvalidRequestError as error:
            # Succeeded or already canceled: nothing to cancel; report what it is.
            snapshot = self.fetch_payment(provider_payment_id)
            if snapshot.state in (PaymentState.SUCCEEDED, PaymentState.CANCELED):
                return snapshot
            raise _translate(error) from error
        except stripe.StripeError as error:
            raise _translate(error) from error
        return so.payment_snapshot(intent)

    # Refunds --------------------------------------------------------------------------------

    def refund(self, request: RefundRequest) -> RefundSnapshot:
        metadata = {so.METADATA_REFUND_ID: request.refund_id}
        if request.reason:
            metadata["tallybook_reason"] = request.reason[:500]
        refund = self._call(
            "refunds.create",
            lambda: self.client.v1.refunds.create(
                params={
                    "payment_intent": request.provider_payment_id,
                    "amount": request.amount.amount_minor,
                    "metadata": metadata,
                },
                options={"idempotency_key": idempotency_key("refund", request.refund_id)},
            ),
        )
        return so.refund_snapshot(refund)

    def fetch_refunds(self, provider_payment_id: str) -> list[RefundSnapshot]:
        refunds = self._call(
            "refunds.list",
            lambda: self.client.v1.refunds.list(
                params={"payment_intent": provider_payment_id, "limit": REFUNDS_PAGE_MAX}
            ),
        )
        return [so.refund_snapshot(r) for r in refunds.get("data") or []]


def _plain(obj: Any) -> dict[str, Any]:
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict()
    if isinstance(obj, dict):
        return obj
    raise TypeError(f"unexpected Stripe answer: {type(obj).__name__}")


def _with_failure(snapshot: PaymentSnapshot, error: stripe.CardError) -> PaymentSnapshot:
    """A decline whose PaymentIntent doesn't show it yet: take the details from the error."""
    body = error.json_body if isinstance(error.json_body, dict) else {}
    found = body.get("error")
    details: dict[str, Any] = found if isinstance(found, dict) else {}
    return replace(
        snapshot,
        state=PaymentState.FAILED,
        failure_code=error.code or "card_declined",
        decline_code=details.get("decline_code"),
        failure_message=error.user_message or str(error),
    )
