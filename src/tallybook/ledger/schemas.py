"""API shapes of the ledger (Stripe style: an ``object`` field, ids, ``metadata``).

Request bodies carry amounts as JSON integers of minor units (``strict``: ``"100"`` and
``100.0`` are refused, never coerced). Everything else is checked by the domain's validation
ladder so the API reports the same named codes as the service.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.ledger.service.queries import entry_public_id
from tallybook.ledger.values import (
    Account,
    AccountSpec,
    Balance,
    Entry,
    Leg,
    PostPending,
    ReverseTransfer,
    Transfer,
    TransferRequest,
    TransferResult,
    VoidPending,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Requests ---------------------------------------------------------------------------------


class LedgerAccountCreateBody(_Body):
    code: str = Field(description="What the account is for: `customer_credit`, `revenue_usage`…")
    currency: str = Field(
        description="ISO 4217 currency, or a unit asset U_<METER KEY> for usage credits"
    )
    kind: str = Field(description="asset, liability, revenue, expense or equity")
    customer: str | None = Field(None, description="The owning customer; omit for a system account")
    reference: str = Field("", description="Tells apart accounts with the same code and owner")
    debits_must_not_exceed_credits: bool = Field(
        False, description="The balance can't go negative on the credit side (a credit wallet)"
    )
    credits_must_not_exceed_debits: bool = False
    balance_shards: int = Field(
        1, strict=True, description="Spread a hot, unlimited system account over N balance rows"
    )
    metadata: dict[str, str] | None = None

    def to_spec(self) -> AccountSpec:
        return AccountSpec(
            code=self.code,
            currency=self.currency,
            kind=self.kind,
            customer_id=self.customer,
            reference=self.reference,
            debits_must_not_exceed_credits=self.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=self.credits_must_not_exceed_debits,
            balance_shards=self.balance_shards,
            metadata=self.metadata,
        )


class LegBody(_Body):
    account_id: str
    direction: str = Field(description="debit or credit")
    amount_minor: int = Field(strict=True, description="Integer minor units, greater than zero")
    currency: str = Field(description="ISO 4217 or unit asset; must be the account's currency")


class LedgerTransferCreateBody(_Body):
    id: str = Field(
        description="Your id for the transfer (1-64 of A-Za-z0-9_-.:), the idempotency key"
    )
    legs: list[LegBody] = Field(description="2-16 legs; debits equal credits per currency")
    reason_code: str = Field(description="Why the money moved: `usage_burn`, `grant.issue`…")
    metadata: dict[str, str] | None = None
    effective_at: datetime | None = Field(
        None, description="When it counts in the books; defaults to now, never in the future"
    )
    pending: bool = Field(False, strict=True, description="Hold the amounts until posted or voided")
    timeout_seconds: int | None = Field(None, strict=True, description="Holds: expire after this")

    def to_request(self) -> TransferRequest:
        return TransferRequest(
            id=self.id,
            legs=[
                Leg(leg.account_id, leg.direction, leg.amount_minor, leg.currency)
                for leg in self.legs
            ],
            reason_code=self.reason_code,
            metadata=self.metadata,
            effective_at=self.effective_at,
            pending=self.pending,
            timeout_seconds=self.timeout_seconds,
        )


class LedgerTransferBatchBody(_Body):
    transfers: list[LedgerTransferCreateBody] = Field(description="Up to 1000, applied in order")
    linked: bool = Field(
        False, strict=True, description="All succeed or none is applied (otherwise each on its own)"
    )


class LedgerPostBody(_Body):
    id: str = Field(description="Your id for the posting transfer (the idempotency key)")
    amount_minor: int | None = Field(
        None, strict=True, description="Post less than held (one-debit, one-credit holds)"
    )
    reason_code: str | None = None
    metadata: dict[str, str] | None = None

    def to_request(self, pending_id: str) -> PostPending:
        return PostPending(
            id=self.id,
            pending_id=pending_id,
            amount_minor=self.amount_minor,
            reason_code=self.reason_code,
            metadata=self.metadata,
        )


class LedgerVoidBody(_Body):
    id: str = Field(description="Your id for the voiding transfer (the idempotency key)")
    reason_code: str | None = None
    metadata: dict[str, str] | None = None

    def to_request(self, pending_id: str) -> VoidPending:
        return VoidPending(
            id=self.id, pending_id=pending_id, reason_code=self.reason_code, metadata=self.metadata
        )


class LedgerReverseBody(_Body):
    id: str = Field(description="Your id for the reversal (the idempotency key)")
    reason_code: str
    amount_minor: int | None = Field(
        None, strict=True, description="Reverse part of a one-debit, one-credit transfer"
    )
    metadata: dict[str, str] | None = None
    effective_at: datetime | None = None

    def to_request(self, transfer_id: str) -> ReverseTransfer:
        return ReverseTransfer(
            id=self.id,
            transfer_id=transfer_id,
            reason_code=self.reason_code,
            amount_minor=self.amount_minor,
            metadata=self.metadata,
            effective_at=self.effective_at,
        )


# Responses --------------------------------------------------------------------------------


class LedgerAccountOut(BaseModel):
    object: Literal["ledger_account"] = "ledger_account"
    id: str
    code: str
    currency: str
    kind: str
    customer: str | None
    reference: str
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool
    balance_shards: int
    metadata: dict[str, str]
    closed_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> LedgerAccountOut:
        return cls(
            id=account.id,
            code=account.code,
            currency=account.currency,
            kind=account.kind,
            customer=account.owner_id,
            reference=account.reference,
            debits_must_not_exceed_credits=account.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits=account.credits_must_not_exceed_debits,
            balance_shards=account.balance_shards,
            metadata=dict(account.metadata),
            closed_at=account.closed_at,
            created_at=account.created_at,
        )


class LedgerBalanceOut(BaseModel):
    object: Literal["ledger_balance"] = "ledger_balance"
    account_id: str
    currency: str
    as_of: datetime | None = Field(description="None: now, from the stored totals")
    debits_posted_minor: int
    credits_posted_minor: int
    debits_pending_minor: int
    credits_pending_minor: int
    posted_minor: int = Field(description="Net posted, on the account's normal side")
    pending_minor: int = Field(description="Net pending, on the account's normal side")
    available_minor: int = Field(description="Posted minus holds going out")

    @classmethod
    def of(cls, balance: Balance) -> LedgerBalanceOut:
        return cls(
            account_id=balance.account_id,
            currency=balance.currency,
            as_of=balance.as_of,
            debits_posted_minor=balance.debits_posted.amount_minor,
            credits_posted_minor=balance.credits_posted.amount_minor,
            debits_pending_minor=balance.debits_pending.amount_minor,
            credits_pending_minor=balance.credits_pending.amount_minor,
            posted_minor=balance.posted.amount_minor,
            pending_minor=balance.pending.amount_minor,
            available_minor=balance.available.amount_minor,
        )


class LedgerEntryOut(BaseModel):
    object: Literal["ledger_entry"] = "ledger_entry"
    id: str
    transfer_id: str
    account_id: str
    direction: str
    phase: str
    amount_minor: int = Field(description="Negative for a pending amount released")
    currency: str
    effective_at: datetime
    created_at: datetime

    @classmethod
    def of(cls, entry: Entry) -> LedgerEntryOut:
        assert entry.id is not None
        return cls(
            id=entry_public_id(entry.id),
            transfer_id=entry.transfer_id,
            account_id=entry.account_id,
            direction=entry.direction,
            phase=entry.phase,
            amount_minor=entry.amount_minor,
            currency=entry.currency,
            effective_at=entry.effective_at,
            created_at=entry.created_at,
        )


class LedgerLegOut(BaseModel):
    account_id: str
    direction: str
    phase: str
    amount_minor: int
    currency: str


class LedgerTransferOut(BaseModel):
    object: Literal["ledger_transfer"] = "ledger_transfer"
    id: str
    kind: str
    reason_code: str
    metadata: dict[str, str]
    effective_at: datetime
    created_at: datetime
    legs: list[LedgerLegOut]
    pending_id: str | None
    reverses_id: str | None
    expires_at: datetime | None
    batch_id: str | None
    hold_status: str | None = Field(description="Holds: pending, posted, voided or expired")
    resolved_by: str | None = Field(
        description="Holds: the transfer that posted, voided or expired it"
    )
    reversed_by: list[str]

    @classmethod
    def of(cls, transfer: Transfer) -> LedgerTransferOut:
        return cls(
            id=transfer.id,
            kind=transfer.kind,
            reason_code=transfer.reason_code,
            metadata=dict(transfer.metadata),
            effective_at=transfer.effective_at,
            created_at=transfer.created_at,
            legs=[
                LedgerLegOut(
                    account_id=e.account_id,
                    direction=e.direction,
                    phase=e.phase,
                    amount_minor=e.amount_minor,
                    currency=e.currency,
                )
                for e in transfer.entries
            ],
            pending_id=transfer.pending_id,
            reverses_id=transfer.reverses_id,
            expires_at=transfer.expires_at,
            batch_id=transfer.batch_id,
            hold_status=transfer.hold_status,
            resolved_by=transfer.resolved_by_id,
            reversed_by=list(transfer.reversed_by_ids),
        )


class LedgerTransferErrorOut(BaseModel):
    type: str
    code: str
    message: str
    param: str | None


class LedgerTransferResultOut(BaseModel):
    id: str
    status: str = Field(description="created, exists or failed")
    transfer: LedgerTransferOut | None
    error: LedgerTransferErrorOut | None

    @classmethod
    def of(cls, result: TransferResult) -> LedgerTransferResultOut:
        error = None
        if result.code is not None:
            wire: dict[str, Any] = result.error().to_wire(None)["error"]
            error = LedgerTransferErrorOut(
                type=wire["type"], code=wire["code"], message=wire["message"], param=wire["param"]
            )
        return cls(
            id=result.id,
            status=result.status,
            transfer=LedgerTransferOut.of(result.transfer) if result.transfer else None,
            error=error,
        )


class LedgerTransferBatchOut(BaseModel):
    object: Literal["ledger_transfer_batch"] = "ledger_transfer_batch"
    linked: bool
    data: list[LedgerTransferResultOut]
