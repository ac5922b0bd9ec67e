from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.customers.models import Customer
from tallybook.customers.service import CustomerInput, CustomerUpdate


class CustomerCreateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: str = Field(description="Your id for this customer; events name it in `subject`")
    name: str | None = None
    email: str | None = None
    currency: str | None = Field(None, description="ISO 4217 billing currency")
    metadata: dict[str, str] | None = None

    def to_input(self) -> CustomerInput:
        return CustomerInput(**self.model_dump())


class CustomerUpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    email: str | None = None
    currency: str | None = None
    metadata: dict[str, str] | None = Field(
        None, description="Merged into existing metadata; an empty string removes a key"
    )

    def to_update(self) -> CustomerUpdate:
        return CustomerUpdate(**self.model_dump())


class CustomerOut(BaseModel):
    object: Literal["customer"] = "customer"
    id: str
    external_id: str
    name: str | None
    email: str | None
    currency: str | None
    metadata: dict[str, str]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, customer: Customer) -> CustomerOut:
        return cls(
            id=customer.id,
            external_id=customer.external_id,
            name=customer.name,
            email=customer.email,
            currency=customer.currency,
            metadata=dict(customer.metadata_),
            created_at=customer.created_at,
            updated_at=customer.updated_at,
        )
