"""Pure grant rules: the vocabulary, the accounts each posting uses (ADR 0002), burn-down
order, deterministic transfer ids and recurring-grant arithmetic. No I/O.

Burn-down (``burn_down``) is what invoicing, reservations and tests rely on::

    sources = grants.service.credit_sources(tx, customer_id, at=now, currency="USD")
    applications = burn_down(sources, [Demand.money(Money(1500, "USD"), key="in_…")])

Each demand takes from the live sources of its asset in this order: **priority** (lower first),
then **soonest expiry** (a grant that never expires comes last), then **oldest** (effective
time, then id). A demand larger than what the sources hold is covered as far as they go; the
rest is the caller's (billed, or refused).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from tallybook.catalog.domain import Interval, IntervalUnit
from tallybook.kit.assets import is_unit_asset, minor_to_quantity, quantity_to_minor
from tallybook.kit.ids import ID_PATTERN
from tallybook.kit.invariant import invariant
from tallybook.kit.money import Money
from tallybook.ledger import chart
from tallybook.subscriptions.periods import boundary

PRIORITY_DEFAULT: Final = 50
PRIORITY_MAX: Final = 100
REASON_LENGTH_MAX: Final = 1000
#: The ledger's limit on client-chosen transfer ids.
TRANSFER_ID_LENGTH_MAX: Final = 64
#: Instances a recurring grant may issue in one catch-up (a daily schedule left alone for a
#: year); more than this waits for the next run.
CATCH_UP_INSTANCES_MAX: Final = 400


class GrantKind(StrEnum):
    #: Money in a currency; reduces the amount due on invoices.
    MONETARY = "monetary"
    #: Units of a meter; reduces the billable quantity of that meter's usage.
    USAGE = "usage"


class GrantSource(StrEnum):
    PROMOTION = "promotion"
    PURCHASE = "purchase"
    GOODWILL = "goodwill"
    #: Included in a plan (a plan credit rule).
    PLAN = "plan"


class GrantStatus(StrEnum):
    ACTIVE = "active"
    VOIDED = "voided"
    EXPIRED = "expired"


class Rollover(StrEnum):
    NONE = "none"
    CAPPED = "capped"


class InstanceExpiry(StrEnum):
    #: An instance expires the moment the next one is issued.
    NEXT_INSTANCE = "next_instance"
    #: N days after it is issued.
    AFTER_DAYS = "after_days"
    NEVER = "never"


# Accounts (ADR 0002; the codes are the chart's) ----------------------------------------------

CREDIT_GRANT: Final = chart.CREDIT_GRANT
USAGE_CREDIT_GRANT: Final = chart.USAGE_CREDIT_GRANT
PROMOTION_EXPENSE: Final = chart.PROMOTION_EXPENSE
ACCOUNTS_RECEIVABLE: Final = chart.ACCOUNTS_RECEIVABLE
CREDIT_BREAKAGE: Final = chart.CREDIT_BREAKAGE
USAGE_CREDIT_ISSUANCE: Final = chart.USAGE_CREDIT_ISSUANCE
USAGE_CREDIT_CONSUMED: Final = chart.USAGE_CREDIT_CONSUMED
REVENUE_USAGE: Final = chart.REVENUE_USAGE


def wallet_code(kind: GrantKind) -> str:
    return CREDIT_GRANT if kind is GrantKind.MONETARY else USAGE_CREDIT_GRANT


def funding_code(kind: GrantKind, source: GrantSource) -> str:
    """The account debited when a grant is issued."""
    if kind is GrantKind.USAGE:
        return USAGE_CREDIT_ISSUANCE
    if source is GrantSource.PURCHASE:
        return ACCOUNTS_RECEIVABLE
    return PROMOTION_EXPENSE


def return_code(kind: GrantKind, source: GrantSource) -> str:
    """The account credited with what is left when a grant expires or is voided."""
    if kind is GrantKind.USAGE:
        return USAGE_CREDIT_ISSUANCE
    if source is GrantSource.PURCHASE:
        return CREDIT_BREAKAGE
    return PROMOTION_EXPENSE


# Transfer ids ---------------------------------------------------------------------------------


def ledger_transfer_id(readable: str) -> str:
    """``readable`` if the ledger accepts it (≤ 64 characters), else a deterministic digest of
    it (``h:`` + 32 hex characters): the same cause always gives the same id."""
    if len(readable) <= TRANSFER_ID_LENGTH_MAX:
        return readable
    return "h:" + hashlib.blake2b(readable.encode(), digest_size=16).hexdigest()


def id_body(object_id: str) -> str:
    """The 26-character time-ordered body of a prefixed id (``grt_01J…`` → ``01J…``)."""
    return object_id.rsplit("_", 1)[-1]


def issue_transfer_id(grant_id: str) -> str:
    return ledger_transfer_id(f"grant:{grant_id}:issue")


def end_transfer_id(grant_id: str, how: GrantStatus) -> str:
    """``grant:<id>:void`` or ``grant:<id>:expire`` (ADR 0002)."""
    verb = "void" if how is GrantStatus.VOIDED else "expire"
    return ledger_transfer_id(f"grant:{grant_id}:{verb}")


def sweep_transfer_id(grant_id: str, n: int) -> str:
    return ledger_transfer_id(f"grant:{grant_id}:sweep:{n}")


def rollover_transfer_id(grant_id: str) -> str:
    return ledger_transfer_id(f"grant:{grant_id}:rollover")


def invoice_credit_transfer_id(invoice_id: str, grant_id: str, kind: GrantKind) -> str:
    """ADR 0002 names ``invoice:<invoice>:credit:<grant>`` and ``…:usage_credit:<grant>``, but
    with two prefixed ids those pass the ledger's 64-character limit (75 and 81 characters).
    The recorded deviation: ``icr:<invoice>:<grant id body>`` / ``iuc:<invoice>:<grant id
    body>`` (60 characters with ``in_`` ids), hashed if still too long; the transfer's metadata
    names the invoice and the grant in full."""
    tag = "icr" if kind is GrantKind.MONETARY else "iuc"
    return ledger_transfer_id(f"{tag}:{invoice_id}:{id_body(grant_id)}")


def deterministic_id(prefix: str, key: str, at: datetime) -> str:
    """An id in the ``kit.ids`` layout whose time part is ``at`` and whose random part is a
    hash of ``key``: the same (key, time) always gives the same id, so an instance issued twice
    (a job run twice, or resumed after a crash) is the same object."""
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    ms = int(at.timestamp() * 1000)
    invariant(ms >= 0, "deterministic ids need an instant after 1970")
    random_part = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=10).digest(), "big")
    value = (ms << 80) | random_part
    chars = []
    for _ in range(26):
        chars.append(alphabet[value & 31])
        value >>= 5
    object_id = f"{prefix}_{''.join(reversed(chars))}"
    invariant(bool(ID_PATTERN.match(object_id)), f"bad deterministic id {object_id}")
    return object_id


# Burn-down ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CreditSource:
    """A live grant with what its wallet can still give (the ledger's ``available``: posted
    minus holds going out), ready for :func:`burn_down`."""

    grant_id: str
    customer_id: str
    account_id: str
    kind: GrantKind
    source: GrantSource
    #: The ledger asset: the currency, or ``U_<METER KEY>``.
    asset: str
    currency: str | None
    meter_id: str | None
    priority: int
    effective_at: datetime
    expires_at: datetime | None
    available_minor: int

    @property
    def available(self) -> Money:
        return Money(self.available_minor, self.asset)

    @property
    def available_quantity(self) -> Decimal:
        """Usage grants: the remaining units as a quantity (exact, 6 decimal places)."""
        return minor_to_quantity(self.available_minor)


@dataclass(frozen=True, slots=True)
class Demand:
    """What to cover: an amount of money, or a quantity of a meter's units (as micro-units of
    its unit asset). ``key`` is the caller's label (an invoice line id, a meter id), echoed in
    the applications.

    A units demand names its unit asset (every version of the meter's key shares it), or
    only the ``meter_id`` of one meter version (then only grants of that version match: pass
    the asset, or read the sources with ``credit_sources(meter_id=…)``, to match them all)."""

    asset: str
    amount_minor: int
    key: str = ""
    meter_id: str | None = None

    @classmethod
    def money(cls, amount: Money, *, key: str = "") -> Demand:
        return cls(amount.currency, amount.amount_minor, key)

    @classmethod
    def units(
        cls, asset: str, quantity: Decimal, *, key: str = "", meter_id: str | None = None
    ) -> Demand:
        """``quantity`` units of the meter whose unit asset is ``asset`` (``U_TOKENS``);
        quantities finer than a millionth are refused (``quantity_invalid``)."""
        invariant(is_unit_asset(asset), f"{asset} is not a unit asset")
        return cls(asset, quantity_to_minor(quantity), key, meter_id)

    def matches(self, source: CreditSource) -> bool:
        if self.asset:
            return source.asset == self.asset
        return self.meter_id is not None and source.meter_id == self.meter_id


def MoneyDemand(amount: Money, key: str = "") -> Demand:
    """``Demand.money`` under the name callers of ADR 0002 look for."""
    return Demand.money(amount, key=key)


def UnitDemand(meter_id: str, quantity: Decimal, key: str = "") -> Demand:
    """Units of one meter version, matched by ``meter_id`` (see :class:`Demand`)."""
    return Demand("", quantity_to_minor(quantity), key or meter_id, meter_id)


@dataclass(frozen=True, slots=True)
class CreditApplication:
    """``amount_minor`` of ``grant_id``'s wallet covering (part of) the demand ``demand_key``."""

    grant_id: str
    account_id: str
    customer_id: str
    kind: GrantKind
    source: GrantSource
    asset: str
    amount_minor: int
    demand_key: str

    @property
    def amount(self) -> Money:
        return Money(self.amount_minor, self.asset)

    @property
    def quantity(self) -> Decimal | None:
        """Usage applications: the units (None for money)."""
        if self.kind is not GrantKind.USAGE:
            return None
        return minor_to_quantity(self.amount_minor)


_NEVER: Final = datetime.max.replace(tzinfo=UTC)


def burn_order(source: CreditSource) -> tuple[int, datetime, datetime, str]:
    """Priority, then soonest expiry (never last), then oldest (effective time, then id)."""
    return (
        source.priority,
        source.expires_at or _NEVER,
        source.effective_at,
        source.grant_id,
    )


def burn_down(
    sources: Sequence[CreditSource], demands: Sequence[Demand]
) -> list[CreditApplication]:
    """Cover each demand, in the order given, from the sources of its asset in burn-down
    order. A source is never drawn past what it holds; a demand never receives more than it
    asked for. Applications come in demand order, then burn-down order."""
    invariant(len({s.grant_id for s in sources}) == len(sources), "burn_down got a grant twice")
    ordered = sorted(sources, key=burn_order)
    remaining = {s.grant_id: max(s.available_minor, 0) for s in ordered}
    applications: list[CreditApplication] = []
    for demand in demands:
        invariant(demand.amount_minor >= 0, f"negative demand {demand}")
        wanted = demand.amount_minor
        for source in ordered:
            if wanted == 0:
                break
            if not demand.matches(source) or remaining[source.grant_id] == 0:
                continue
            taken = min(wanted, remaining[source.grant_id])
            remaining[source.grant_id] -= taken
            wanted -= taken
            applications.append(
                CreditApplication(
                    grant_id=source.grant_id,
                    account_id=source.account_id,
                    customer_id=source.customer_id,
                    kind=source.kind,
                    source=source.source,
                    asset=source.asset,
                    amount_minor=taken,
                    demand_key=demand.key,
                )
            )
    return applications


def remaining_after(
    sources: Sequence[CreditSource], applications: Sequence[CreditApplication]
) -> list[CreditSource]:
    """The sources less what ``applications`` took from them (burning demand after demand
    against one set of sources); emptied sources are dropped."""
    taken: dict[str, int] = {}
    for application in applications:
        taken[application.grant_id] = taken.get(application.grant_id, 0) + application.amount_minor
    left = []
    for source in sources:
        available = source.available_minor - taken.get(source.grant_id, 0)
        invariant(available >= 0, f"applications took more than {source.grant_id} holds")
        if available > 0:
            left.append(replace(source, available_minor=available))
    return left


def covered_minor(applications: Sequence[CreditApplication], demand_key: str) -> int:
    """How much of the demand ``demand_key`` the applications cover."""
    return sum(a.amount_minor for a in applications if a.demand_key == demand_key)


# Recurring grants ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schedule:
    """Instance k is issued at ``anchor + k × interval`` (k = 0, 1, 2…), computed from the
    anchor each time (month ends behave like billing anchors)."""

    anchor: datetime
    interval: Interval
    expiry: InstanceExpiry
    expires_after_days: int | None = None
    ends_at: datetime | None = None

    def issue_at(self, index: int) -> datetime:
        return boundary(self.anchor, self.interval, index)

    def expires_at(self, index: int) -> datetime | None:
        if self.expiry is InstanceExpiry.NEXT_INSTANCE:
            return self.issue_at(index + 1)
        if self.expiry is InstanceExpiry.AFTER_DAYS:
            invariant(self.expires_after_days is not None, "after_days without a count")
            return self.issue_at(index) + timedelta(days=self.expires_after_days or 0)
        return None

    def is_over(self, index: int) -> bool:
        """No instance ``index`` (the schedule ended before it is due)."""
        return self.ends_at is not None and self.issue_at(index) >= self.ends_at

    def due_indexes(self, next_index: int, now: datetime) -> list[int]:
        """The instances from ``next_index`` whose issue time has come, in order (bounded)."""
        due: list[int] = []
        index = next_index
        while len(due) < CATCH_UP_INSTANCES_MAX and not self.is_over(index):
            if self.issue_at(index) > now:
                break
            due.append(index)
            index += 1
        return due


def interval_of(unit: str, count: int) -> Interval:
    return Interval(IntervalUnit(unit), count)


def rollover_minor(previous_available_minor: int, cap_minor: int | None, rule: Rollover) -> int:
    """What moves from the previous instance into the new one."""
    if rule is Rollover.NONE or previous_available_minor <= 0:
        return 0
    invariant(cap_minor is not None and cap_minor >= 0, "a capped rollover needs a cap")
    return min(previous_available_minor, cap_minor or 0)
