"""Customers: create, get, list, update, search. Never commits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tallybook.customers import repository
from tallybook.customers.models import Customer
from tallybook.db import Tx
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.work import events

EXTERNAL_ID_PATTERN: Final = re.compile(r"^[A-Za-z0-9_\-.:@/+=|]{1,200}$")
EMAIL_PATTERN: Final = re.compile(r"^[^@\s]{1,200}@[^@\s]{1,200}$")
SEARCH_RESULTS_MAX: Final = 50


class CustomerCode(StrEnum):
    EXTERNAL_ID_TAKEN = "customer_external_id_taken"
    EXTERNAL_ID_INVALID = "customer_external_id_invalid"
    EMAIL_INVALID = "customer_email_invalid"
    CURRENCY_LOCKED = "customer_currency_locked"


@dataclass(frozen=True, slots=True)
class CustomerInput:
    external_id: str
    name: str | None = None
    email: str | None = None
    currency: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class CustomerUpdate:
    name: str | None = None
    email: str | None = None
    currency: str | None = None
    metadata: dict[str, str] | None = None


def _check_email(email: str | None) -> str | None:
    if email is None:
        return None
    if not EMAIL_PATTERN.match(email):
        raise InvalidRequest(
            CustomerCode.EMAIL_INVALID, f"'{email}' is not an email", param="email"
        )
    return email


def create(tx: Tx, data: CustomerInput) -> Customer:
    if not EXTERNAL_ID_PATTERN.match(data.external_id):
        raise InvalidRequest(
            CustomerCode.EXTERNAL_ID_INVALID,
            "external_id must be 1-200 characters of letters, digits and _-.:@/+=|",
            param="external_id",
        )
    if repository.get_by_external_id(tx, data.external_id) is not None:
        raise Conflict(
            CustomerCode.EXTERNAL_ID_TAKEN,
            f"a customer with external_id '{data.external_id}' exists",
            param="external_id",
        )
    now = tx.now()
    customer = Customer(
        id=new_id("cus"),
        external_id=data.external_id,
        name=data.name,
        email=_check_email(data.email),
        currency=normalize_currency(data.currency) if data.currency else None,
        metadata_=validate_metadata(data.metadata),
        created_at=now,
        updated_at=now,
    )
    tx.session.add(customer)
    tx.session.flush()
    events.emit(
        tx,
        "customer.created",
        customer_id=customer.id,
        object_id=customer.id,
        data={"external_id": customer.external_id, "name": customer.name, "email": customer.email},
    )
    return customer


def get(tx: Tx, customer_id: str) -> Customer:
    customer = repository.get(tx, customer_id)
    if customer is None:
        raise NotFound("customer", customer_id)
    return customer


def get_by_external_id(tx: Tx, external_id: str) -> Customer:
    customer = repository.get_by_external_id(tx, external_id)
    if customer is None:
        raise NotFound("customer", external_id, param="external_id")
    return customer


def resolve(tx: Tx, id_or_external_id: str) -> Customer:
    """Accept our id (``cus_…``) or the caller's external id."""
    customer = repository.get(tx, id_or_external_id)
    if customer is None:
        customer = repository.get_by_external_id(tx, id_or_external_id)
    if customer is None:
        raise NotFound("customer", id_or_external_id)
    return customer


def update(tx: Tx, customer_id: str, changes: CustomerUpdate) -> Customer:
    customer = get(tx, customer_id)
    if changes.name is not None:
        customer.name = changes.name
    if changes.email is not None:
        customer.email = _check_email(changes.email)
    if changes.currency is not None:
        currency = normalize_currency(changes.currency)
        if customer.currency is not None and customer.currency != currency:
            raise Conflict(
                CustomerCode.CURRENCY_LOCKED,
                f"customer currency is {customer.currency} and cannot change",
                param="currency",
            )
        customer.currency = currency
    if changes.metadata is not None:
        merged = {**customer.metadata_, **changes.metadata}
        customer.metadata_ = validate_metadata({k: v for k, v in merged.items() if v != ""})
    customer.updated_at = tx.now()
    tx.session.flush()
    events.emit(
        tx,
        "customer.updated",
        customer_id=customer.id,
        object_id=customer.id,
        data={"name": customer.name, "email": customer.email, "currency": customer.currency},
    )
    return customer


def set_currency_if_unset(tx: Tx, customer: Customer, currency: str) -> None:
    """Fix the billing currency on first use; a different currency later is a conflict."""
    currency = normalize_currency(currency)
    if customer.currency is None:
        customer.currency = currency
        customer.updated_at = tx.now()
    elif customer.currency != currency:
        raise Conflict(
            CustomerCode.CURRENCY_LOCKED,
            f"customer bills in {customer.currency}, not {currency}",
            param="currency",
        )


def list_page(tx: Tx, request: PageRequest, *, email: str | None = None) -> Page[Customer]:
    return page_from_rows(repository.page(tx, request, email=email), request)


def search(tx: Tx, text: str, *, limit: int = SEARCH_RESULTS_MAX) -> list[Customer]:
    text = text.strip()
    if not text:
        return []
    return repository.search(tx, text, limit=min(limit, SEARCH_RESULTS_MAX))
