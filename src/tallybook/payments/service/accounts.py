"""Payment accounts: which provider collects from a customer, and the customer's id there.

A customer gets an account on first collection, with the default provider (Stripe when it is
configured, else manual); the Stripe customer is created on demand by the first attempt. An
existing Stripe customer can be linked instead (``link``), before or after.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Final

from sqlalchemy.dialects import postgresql, sqlite

from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.payments import repository
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.models import PaymentAccount
from tallybook.payments.providers import Providers
from tallybook.payments.providers.base import CustomerDetails, ProviderCustomer, ProviderName
from tallybook.work import events

STRIPE_CUSTOMER_ID_PATTERN: Final = re.compile(r"^cus_[A-Za-z0-9]{1,250}$")


def get(tx: Tx, customer_id: str) -> PaymentAccount:
    account = repository.account_for_customer(tx, customer_id)
    if account is None:
        raise NotFound("payment account", customer_id, param="customer")
    return account


def find(tx: Tx, customer_id: str) -> PaymentAccount | None:
    return repository.account_for_customer(tx, customer_id)


def ensure(tx: Tx, customer_id: str, providers: Providers) -> PaymentAccount:
    """The customer's account, created with the default provider when missing (race-safe)."""
    existing = repository.account_for_customer(tx, customer_id)
    if existing is not None:
        return existing
    now = tx.now()
    insert = postgresql.insert if tx.is_postgres else sqlite.insert
    tx.session.execute(
        insert(PaymentAccount)
        .values(
            id=new_id("pacc"),
            customer_id=customer_id,
            provider=str(providers.default),
            provider_customer_id=None,
            default_payment_method_id=None,
            payment_method_present=providers.default == ProviderName.MANUAL,
            provider_deleted=False,
            provider_state_at=None,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["customer_id"])
    )
    account = repository.account_for_customer(tx, customer_id)
    assert account is not None
    return account


def details(tx: Tx, customer_id: str) -> CustomerDetails:
    customer = customers.get(tx, customer_id)
    return CustomerDetails(
        customer_id=customer.id,
        external_id=customer.external_id,
        email=customer.email,
        name=customer.name,
    )


def _emit(tx: Tx, account: PaymentAccount, reason: str) -> None:
    events.emit(
        tx,
        "payment_account.updated",
        customer_id=account.customer_id,
        object_id=account.id,
        data={
            "reason": reason,
            "provider": account.provider,
            "provider_customer_id": account.provider_customer_id,
            "payment_method_present": account.payment_method_present,
        },
    )


def link(
    tx: Tx,
    customer_id: str,
    *,
    provider: str,
    provider_customer_id: str | None,
    providers: Providers,
) -> PaymentAccount:
    """Choose the provider for a customer, optionally with an existing Stripe customer id.

    Switching provider or Stripe customer is refused while the customer has a Stripe customer
    that payments were made with (``payment_account_locked``): past payments, refunds and
    disputes refer to it.
    """
    customers.get(tx, customer_id)
    if provider not in tuple(ProviderName):
        raise InvalidRequest(
            PaymentsCode.PROVIDER_INVALID, "provider must be stripe or manual", param="provider"
        )
    if not providers.configured(provider):
        providers.get(provider)  # raises payment_provider_not_configured
    if provider == ProviderName.MANUAL and provider_customer_id is not None:
        raise InvalidRequest(
            PaymentsCode.PROVIDER_CUSTOMER_INVALID,
            "the manual provider takes no provider customer id",
            param="stripe_customer_id",
        )
    if provider_customer_id is not None and not STRIPE_CUSTOMER_ID_PATTERN.match(
        provider_customer_id
    ):
        raise InvalidRequest(
            PaymentsCode.PROVIDER_CUSTOMER_INVALID,
            "a Stripe customer id looks like cus_…",
            param="stripe_customer_id",
        )
    if provider_customer_id is not None:
        other = repository.account_by_provider_id(tx, provider, provider_customer_id)
        if other is not None and other.customer_id != customer_id:
            raise Conflict(
                PaymentsCode.PROVIDER_CUSTOMER_TAKEN,
                f"{provider_customer_id} is linked to customer {other.customer_id}",
                param="stripe_customer_id",
            )
    account = ensure(tx, customer_id, providers)
    account = repository.account_for_customer(tx, customer_id, lock=True) or account
    changing = account.provider != provider or (
        provider_customer_id is not None and account.provider_customer_id != provider_customer_id
    )
    if (
        changing
        and account.provider_customer_id is not None
        and account.provider == ProviderName.STRIPE
    ):
        from sqlalchemy import select

        from tallybook.payments.models import Payment

        used = tx.session.scalar(
            select(Payment.id)
            .where(Payment.customer_id == customer_id, Payment.provider == ProviderName.STRIPE)
            .where(Payment.provider_payment_id.is_not(None))
            .limit(1)
        )
        if used is not None:
            raise Conflict(
                PaymentsCode.PAYMENT_ACCOUNT_LOCKED,
                f"payments were made with {account.provider_customer_id}; it can't be replaced",
                param="stripe_customer_id",
            )
    if not changing:
        return account
    account.provider = provider
    if provider == ProviderName.MANUAL:
        account.provider_customer_id = None
        account.default_payment_method_id = None
        account.payment_method_present = True
    else:
        account.provider_customer_id = provider_customer_id
        account.default_payment_method_id = None
        account.payment_method_present = False
    account.provider_deleted = False
    account.provider_state_at = None
    account.updated_at = tx.now()
    _emit(tx, account, "linked")
    return account


def record_provider_customer(
    tx: Tx, customer_id: str, snapshot: ProviderCustomer, *, observed_at: datetime | None
) -> PaymentAccount:
    """Store what the provider says about the customer (created on demand, or fetched)."""
    account = repository.account_for_customer(tx, customer_id, lock=True)
    if account is None:
        raise NotFound("payment account", customer_id, param="customer")
    if account.provider_customer_id is None:
        account.provider_customer_id = snapshot.provider_customer_id
        _emit(tx, account, "provider_customer_created")
    if account.provider_customer_id != snapshot.provider_customer_id:
        return account
    apply_customer_state(tx, account, snapshot, observed_at=observed_at)
    return account


def mark_payment_method_present(tx: Tx, account: PaymentAccount) -> bool:
    """A payment method was attached: partial news (it says nothing of the default), so it
    doesn't stamp the account's state time, and an older full customer state still applies.
    Returns whether it is news worth retrying for: a new method may succeed where the old one
    was declined."""
    if account.provider_deleted:
        return False
    account.payment_method_present = True
    account.updated_at = tx.now()
    return True


def apply_customer_state(
    tx: Tx, account: PaymentAccount, snapshot: ProviderCustomer, *, observed_at: datetime | None
) -> bool:
    """Apply a provider customer state unless an older one (``observed_at`` before the stored
    state's) — deletion is final. Returns whether the payment method became present."""
    if account.provider_deleted:
        return False
    if (
        observed_at is not None
        and account.provider_state_at is not None
        and observed_at < account.provider_state_at
    ):
        return False
    became_present = snapshot.payment_method_present and not account.payment_method_present
    changed_default = (
        snapshot.default_payment_method_id is not None
        and snapshot.default_payment_method_id != account.default_payment_method_id
    )
    account.default_payment_method_id = snapshot.default_payment_method_id
    account.payment_method_present = snapshot.payment_method_present
    account.provider_deleted = snapshot.deleted
    if observed_at is not None:
        account.provider_state_at = observed_at
    account.updated_at = tx.now()
    return became_present or changed_default
