"""Promotion codes: a percentage or an amount off a subscription's invoices for once, N billed
periods or forever; or a code that grants credits. Limits (total and per customer) hold under
concurrent redemption: a redemption locks the code's row (``FOR UPDATE``; SQLite serializes
writers), counts, then increments ``times_redeemed`` with a conditional update, and a check
constraint refuses passing the maximum whatever code runs.

What invoicing calls (ADR 0002)::

    terms = promotions.discounts_for(tx, subscription_id, period_start=…, period_end=…)
    ...                                    # apply them to the period's charges
    promotions.record_discount_use(tx, term.redemption_id, invoice_id=…, period_start=…)

A redemption counts **billed periods**: ``once`` discounts the first period billed after it
was redeemed, ``repeating`` the first N, ``forever`` every one. A period is identified by its
start; recording the same period again (a retried or re-issued invoice) counts it once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final

from tallybook.catalog import repository as catalog_repository
from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.grants import issuance, repository
from tallybook.grants.domain import PRIORITY_DEFAULT, GrantKind, GrantSource
from tallybook.grants.errors import PromotionCodeError
from tallybook.grants.models import Grant, PromotionCode, PromotionDiscountUse, PromotionRedemption
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.money import Money, check_amount_minor, normalize_currency
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import to_decimal
from tallybook.subscriptions import service as subscriptions
from tallybook.work import events

CODE_PATTERN: Final = re.compile(r"^[A-Z0-9][A-Z0-9_\-]{2,63}$")
PERCENT_PLACES_MAX: Final = 4
ELIGIBLE_PLANS_MAX: Final = 100
DURATION_PERIODS_MAX: Final = 120
CREDIT_EXPIRES_AFTER_DAYS_MAX: Final = 3660


class DiscountKind(StrEnum):
    PERCENT_OFF = "percent_off"
    AMOUNT_OFF = "amount_off"
    CREDIT = "credit"


class Duration(StrEnum):
    ONCE = "once"
    REPEATING = "repeating"
    FOREVER = "forever"


@dataclass(frozen=True, slots=True)
class CreditTemplate:
    """What a credit code grants on each redemption (``expires_after_days`` from then)."""

    kind: str = GrantKind.MONETARY
    amount_minor: int | None = None
    currency: str | None = None
    meter: str | None = None
    quantity: Decimal | int | str | None = None
    priority: int = PRIORITY_DEFAULT
    expires_after_days: int | None = None


@dataclass(frozen=True, slots=True)
class PromotionCodeInput:
    code: str
    kind: str
    percent_off: Decimal | int | str | None = None
    amount_off_minor: int | None = None
    currency: str | None = None
    duration: str = Duration.ONCE
    duration_periods: int | None = None
    eligible_plans: Sequence[str] = ()
    expires_at: datetime | None = None
    max_redemptions: int | None = None
    max_redemptions_per_customer: int | None = None
    credit: CreditTemplate | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class DiscountTerm:
    """One discount to apply to a billed period: ``percent_off`` (0–100) of the period's
    charges, or ``amount_off`` (in the subscription's currency) off them, never below zero."""

    redemption_id: str
    promotion_code_id: str
    code: str
    kind: DiscountKind
    percent_off: Decimal | None
    amount_off: Money | None
    duration: Duration
    duration_periods: int | None
    #: Billed periods that took it before this one.
    periods_used: int

    @property
    def amount_off_minor(self) -> int | None:
        return self.amount_off.amount_minor if self.amount_off is not None else None

    @property
    def currency(self) -> str | None:
        return self.amount_off.currency if self.amount_off is not None else None


def normalize_code(code: object, *, param: str = "code") -> str:
    if not isinstance(code, str) or not CODE_PATTERN.match(code.strip().upper()):
        raise InvalidRequest(
            PromotionCodeError.CODE_INVALID,
            "a code is 3-64 characters of letters, digits, _ and - (case-insensitive)",
            param=param,
        )
    return code.strip().upper()


def _optional_count(value: object, param: str, *, maximum: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest(
            PromotionCodeError.LIMITS_INVALID, f"{param} must be a positive integer", param=param
        )
    if maximum is not None and value > maximum:
        raise InvalidRequest(
            PromotionCodeError.LIMITS_INVALID, f"{param} is at most {maximum}", param=param
        )
    return value


def _percent(value: object) -> Decimal:
    percent = to_decimal(value, param="percent_off")
    exponent = percent.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if not Decimal(0) < percent <= Decimal(100) or places > PERCENT_PLACES_MAX:
        raise InvalidRequest(
            PromotionCodeError.DISCOUNT_INVALID,
            f"percent_off must be more than 0 and at most 100, with up to {PERCENT_PLACES_MAX} "
            "decimal places",
            param="percent_off",
        )
    return percent


def _eligible_plans(tx: Tx, plans: Sequence[str]) -> list[str]:
    if len(plans) > ELIGIBLE_PLANS_MAX:
        raise InvalidRequest(
            PromotionCodeError.PLAN_NOT_FOUND,
            f"at most {ELIGIBLE_PLANS_MAX} eligible plans",
            param="eligible_plans",
        )
    ids = []
    for index, ref in enumerate(plans):
        plan = catalog_repository.get_plan(tx, ref) or catalog_repository.get_plan_by_key(tx, ref)
        if plan is None:
            raise InvalidRequest(
                PromotionCodeError.PLAN_NOT_FOUND,
                f"no plan '{ref}'",
                param=f"eligible_plans[{index}]",
            )
        ids.append(plan.id)
    return sorted(set(ids))


def _credit(tx: Tx, template: CreditTemplate | None) -> dict[str, Any]:
    """Validate a credit code's template now, so redemptions never fail on it later."""
    if template is None:
        raise InvalidRequest(
            PromotionCodeError.CREDIT_INVALID, "a credit code needs credit", param="credit"
        )
    kind = issuance._enum(
        GrantKind, template.kind, PromotionCodeError.CREDIT_INVALID, "credit.kind"
    )
    days = template.expires_after_days
    if days is not None and (
        isinstance(days, bool)
        or not isinstance(days, int)
        or not 1 <= days <= CREDIT_EXPIRES_AFTER_DAYS_MAX
    ):
        raise InvalidRequest(
            PromotionCodeError.CREDIT_INVALID,
            f"credit.expires_after_days must be 1 to {CREDIT_EXPIRES_AFTER_DAYS_MAX}",
            param="credit.expires_after_days",
        )
    priority = issuance.check_priority(template.priority)
    if kind is GrantKind.MONETARY:
        amount = issuance.positive_amount(template.amount_minor, param="credit.amount_minor")
        if template.currency is None:
            raise InvalidRequest(
                PromotionCodeError.CREDIT_INVALID,
                "a monetary credit names its currency",
                param="credit.currency",
            )
        currency = normalize_currency(template.currency, param="credit.currency")
        return {
            "kind": str(kind),
            "amount_minor": amount,
            "currency": currency,
            "priority": priority,
            "expires_after_days": days,
        }
    meter = issuance.countable_meter(tx, template.meter, param="credit.meter")
    issuance.positive_units(template.quantity, param="credit.quantity")
    return {
        "kind": str(kind),
        "meter_id": meter.id,
        "quantity": str(to_decimal(template.quantity, param="credit.quantity")),
        "priority": priority,
        "expires_after_days": days,
    }


def create_code(tx: Tx, data: PromotionCodeInput) -> PromotionCode:
    code = normalize_code(data.code)
    kind = issuance._enum(DiscountKind, data.kind, PromotionCodeError.DISCOUNT_INVALID, "kind")
    percent = amount = currency = credit = None
    duration = issuance._enum(
        Duration, data.duration, PromotionCodeError.DURATION_INVALID, "duration"
    )
    periods = None
    if kind is DiscountKind.CREDIT:
        if data.percent_off is not None or data.amount_off_minor is not None:
            raise InvalidRequest(
                PromotionCodeError.DISCOUNT_INVALID,
                "a credit code grants credit; it has no percent_off or amount_off_minor",
                param="percent_off" if data.percent_off is not None else "amount_off_minor",
            )
        credit = _credit(tx, data.credit)
    else:
        if data.credit is not None:
            raise InvalidRequest(
                PromotionCodeError.CREDIT_INVALID,
                "credit goes with kind credit",
                param="credit",
            )
        if kind is DiscountKind.PERCENT_OFF:
            if data.amount_off_minor is not None or data.currency is not None:
                raise InvalidRequest(
                    PromotionCodeError.DISCOUNT_INVALID,
                    "a percentage code has no amount_off_minor or currency",
                    param="amount_off_minor",
                )
            percent = _percent(data.percent_off)
        else:
            if data.percent_off is not None:
                raise InvalidRequest(
                    PromotionCodeError.DISCOUNT_INVALID,
                    "an amount code has no percent_off",
                    param="percent_off",
                )
            amount = check_amount_minor(data.amount_off_minor, param="amount_off_minor")
            if amount <= 0:
                raise InvalidRequest(
                    PromotionCodeError.DISCOUNT_INVALID,
                    "amount_off_minor must be positive",
                    param="amount_off_minor",
                )
            if data.currency is None:
                raise InvalidRequest(
                    PromotionCodeError.DISCOUNT_INVALID,
                    "an amount off names its currency",
                    param="currency",
                )
            currency = normalize_currency(data.currency)
        if duration is Duration.REPEATING:
            periods = _optional_count(
                data.duration_periods, "duration_periods", maximum=DURATION_PERIODS_MAX
            )
            if periods is None:
                raise InvalidRequest(
                    PromotionCodeError.DURATION_INVALID,
                    "a repeating discount says for how many billed periods",
                    param="duration_periods",
                )
    if data.duration_periods is not None and periods is None:
        raise InvalidRequest(
            PromotionCodeError.DURATION_INVALID,
            "duration_periods goes with duration repeating",
            param="duration_periods",
        )
    now = tx.now()
    expires_at = ensure_utc(data.expires_at, param="expires_at") if data.expires_at else None
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest(
            PromotionCodeError.LIMITS_INVALID,
            "expires_at must be in the future",
            param="expires_at",
        )
    promotion = PromotionCode(
        id=new_id("promo"),
        code=code,
        kind=str(kind),
        percent_off=percent,
        amount_off_minor=amount,
        currency=currency,
        duration=str(duration),
        duration_periods=periods,
        eligible_plan_ids=_eligible_plans(tx, data.eligible_plans),
        expires_at=expires_at,
        max_redemptions=_optional_count(data.max_redemptions, "max_redemptions"),
        max_redemptions_per_customer=_optional_count(
            data.max_redemptions_per_customer, "max_redemptions_per_customer"
        ),
        times_redeemed=0,
        credit=credit,
        status="active",
        created_by=tx.actor,
        metadata_=validate_metadata(data.metadata),
        created_at=now,
        updated_at=now,
    )
    if repository.code_by_text(tx, code) is not None:
        raise Conflict(PromotionCodeError.CODE_TAKEN, f"the code {code} exists", param="code")
    tx.session.add(promotion)
    tx.session.flush()
    events.emit(
        tx,
        "promotion_code.created",
        object_id=promotion.id,
        data={"id": promotion.id, "code": promotion.code, "kind": promotion.kind},
    )
    return promotion


def resolve_code(tx: Tx, ref: str) -> PromotionCode:
    """By id (``promo_…``) or by the code itself (case-insensitive)."""
    found = repository.get_code(tx, ref) if ref.startswith("promo_") else None
    if found is None and isinstance(ref, str):
        found = repository.code_by_text(tx, ref.strip().upper())
    if found is None:
        raise NotFound("promotion code", ref)
    return found


def list_codes(tx: Tx, request: PageRequest, *, status: str | None = None) -> Page[PromotionCode]:
    return page_from_rows(repository.codes_page(tx, request, status=status), request)


def set_active(tx: Tx, ref: str, *, active: bool) -> PromotionCode:
    """Deactivate a code (no more redemptions; existing discounts continue) or reactivate it."""
    code = resolve_code(tx, ref)
    status = "active" if active else "inactive"
    if code.status != status:
        code.status = status
        code.updated_at = tx.now()
    return code


def _check_redeemable(tx: Tx, code: PromotionCode, customer_id: str) -> None:
    now = tx.now()
    if code.status != "active":
        raise Conflict(PromotionCodeError.INACTIVE, f"{code.code} is not active", param="code")
    if code.expires_at is not None and code.expires_at <= now:
        raise Conflict(PromotionCodeError.EXPIRED, f"{code.code} has expired", param="code")
    if code.max_redemptions is not None and code.times_redeemed >= code.max_redemptions:
        raise Conflict(
            PromotionCodeError.EXHAUSTED,
            f"{code.code} was redeemed its maximum of {code.max_redemptions} times",
            param="code",
        )
    limit = code.max_redemptions_per_customer
    if limit is not None and repository.count_redemptions(tx, code.id, customer_id) >= limit:
        raise Conflict(
            PromotionCodeError.CUSTOMER_LIMIT_REACHED,
            f"this customer redeemed {code.code} its maximum of {limit} times",
            param="code",
        )


def _check_subscription(
    tx: Tx, code: PromotionCode, customer_id: str, subscription_id: str | None
) -> str:
    if subscription_id is None:
        raise InvalidRequest(
            PromotionCodeError.SUBSCRIPTION_REQUIRED,
            "a discount code is redeemed on a subscription",
            param="subscription",
        )
    subscription = subscriptions.get(tx, subscription_id)
    if subscription.customer_id != customer_id or subscription.status == "canceled":
        raise InvalidRequest(
            PromotionCodeError.SUBSCRIPTION_MISMATCH,
            f"{subscription_id} is not a live subscription of this customer",
            param="subscription",
        )
    if code.eligible_plan_ids and subscription.plan_id not in code.eligible_plan_ids:
        raise Conflict(
            PromotionCodeError.PLAN_NOT_ELIGIBLE,
            f"{code.code} does not apply to this subscription's plan",
            param="subscription",
        )
    if code.currency is not None and code.currency != subscription.currency:
        raise InvalidRequest(
            PromotionCodeError.CURRENCY_MISMATCH,
            f"{code.code} takes {code.currency} off; the subscription bills in "
            f"{subscription.currency}",
            param="subscription",
        )
    return subscription.id


def redeem(
    tx: Tx, code_text: str, *, customer: str, subscription: str | None = None
) -> PromotionRedemption:
    """Redeem a code for a customer (on a subscription for discount codes). Race-proof: the
    code's row is locked for the whole check-and-count."""
    normalized = normalize_code(code_text)
    found = repository.code_by_text(tx, normalized)
    if found is None:
        raise InvalidRequest(
            PromotionCodeError.NOT_FOUND, f"no promotion code {normalized}", param="code"
        )
    code = repository.get_code(tx, found.id, for_update=True)
    assert code is not None
    owner = customers.resolve(tx, customer)
    _check_redeemable(tx, code, owner.id)
    subscription_id = None
    if code.kind != DiscountKind.CREDIT:
        subscription_id = _check_subscription(tx, code, owner.id, subscription)
    now = tx.now()
    if not repository.increment_redemptions(tx, code.id, now):
        raise Conflict(
            PromotionCodeError.EXHAUSTED, f"{code.code} was redeemed its maximum", param="code"
        )
    redemption = PromotionRedemption(
        id=new_id("red"),
        promotion_code_id=code.id,
        customer_id=owner.id,
        subscription_id=subscription_id,
        grant_id=None,
        periods_used=0,
        status="active",
        redeemed_by=tx.actor,
        redeemed_at=now,
    )
    tx.session.add(redemption)
    tx.session.flush()
    if code.kind == DiscountKind.CREDIT:
        redemption.grant_id = _issue_credit(tx, code, owner.id, redemption.id).id
        redemption.status = "ended"
    tx.session.refresh(code)
    events.emit(
        tx,
        "promotion_code.redeemed",
        customer_id=owner.id,
        object_id=code.id,
        data={
            "promotion_code": {"id": code.id, "code": code.code, "kind": code.kind},
            "redemption_id": redemption.id,
            "subscription_id": subscription_id,
            "grant_id": redemption.grant_id,
            "times_redeemed": code.times_redeemed,
        },
    )
    return redemption


def _issue_credit(tx: Tx, code: PromotionCode, customer_id: str, redemption_id: str) -> Grant:
    template = code.credit or {}
    days = template.get("expires_after_days")
    expires_at = tx.now() + timedelta(days=days) if days else None
    monetary = template["kind"] == GrantKind.MONETARY
    return issuance.issue_grant(
        tx,
        issuance.GrantInput(
            customer=customer_id,
            kind=template["kind"],
            amount_minor=template.get("amount_minor") if monetary else None,
            currency=template.get("currency") if monetary else None,
            meter=None if monetary else template.get("meter_id"),
            quantity=None if monetary else template.get("quantity"),
            source=GrantSource.PROMOTION,
            priority=int(template.get("priority", PRIORITY_DEFAULT)),
            expires_at=expires_at,
            reason=f"promotion code {code.code}",
            metadata={"promotion_code_id": code.id, "redemption_id": redemption_id},
        ),
        promotion_redemption_id=redemption_id,
    )


def get_redemption(tx: Tx, redemption_id: str) -> PromotionRedemption:
    redemption = repository.get_redemption(tx, redemption_id)
    if redemption is None:
        raise NotFound("promotion redemption", redemption_id)
    return redemption


def list_redemptions(
    tx: Tx, request: PageRequest, *, code: str | None = None, customer: str | None = None
) -> Page[PromotionRedemption]:
    code_id = resolve_code(tx, code).id if code else None
    customer_id = customers.resolve(tx, customer).id if customer else None
    rows = repository.redemptions_page(tx, request, code_id=code_id, customer_id=customer_id)
    return page_from_rows(rows, request)


# What invoicing calls -----------------------------------------------------------------------


def _applies(code: PromotionCode, used: set[datetime], period_start: datetime) -> bool:
    if period_start in used:
        return True
    if code.duration == Duration.ONCE:
        return len(used) < 1
    if code.duration == Duration.REPEATING:
        return len(used) < (code.duration_periods or 0)
    return True


def discounts_for(
    tx: Tx, subscription_id: str, *, period_start: datetime, period_end: datetime
) -> list[DiscountTerm]:
    """The discounts that apply to the billed period ``[period_start, period_end)`` of a
    subscription, oldest redemption first: redeemed before the period ended, and not used up
    by other billed periods (a period already recorded for a redemption still gets it, so
    invoicing a period again gives the same answer)."""
    redemptions = [
        r
        for r in repository.redemptions_of_subscription(tx, subscription_id)
        if r.redeemed_at < period_end and r.grant_id is None
    ]
    uses = repository.discount_uses(tx, [r.id for r in redemptions])
    terms = []
    for redemption in redemptions:
        code = repository.get_code(tx, redemption.promotion_code_id)
        assert code is not None
        used = uses.get(redemption.id, set())
        if not _applies(code, used, period_start):
            continue
        amount = (
            Money(code.amount_off_minor, code.currency)
            if code.amount_off_minor is not None and code.currency is not None
            else None
        )
        terms.append(
            DiscountTerm(
                redemption_id=redemption.id,
                promotion_code_id=code.id,
                code=code.code,
                kind=DiscountKind(code.kind),
                percent_off=code.percent_off,
                amount_off=amount,
                duration=Duration(code.duration),
                duration_periods=code.duration_periods,
                periods_used=len(used - {period_start}),
            )
        )
    return terms


def record_discount_use(
    tx: Tx, redemption_id: str, *, invoice_id: str, period_start: datetime
) -> None:
    """Count the billed period starting at ``period_start`` against the redemption (call it
    in the transaction that finalizes the invoice). Idempotent per (redemption, period); a
    redemption with no period left is ``promotion_discount_exhausted``."""
    redemption = repository.get_redemption(tx, redemption_id, for_update=True)
    if redemption is None:
        raise NotFound("promotion redemption", redemption_id)
    if repository.discount_use(tx, redemption.id, period_start) is not None:
        return
    code = repository.get_code(tx, redemption.promotion_code_id)
    assert code is not None
    used = repository.discount_uses(tx, [redemption.id]).get(redemption.id, set())
    if redemption.status != "active" or not _applies(code, used, period_start):
        raise Conflict(
            PromotionCodeError.DISCOUNT_EXHAUSTED,
            f"redemption {redemption.id} of {code.code} has no billed period left",
            param="redemption_id",
        )
    now = tx.now()
    tx.session.add(
        PromotionDiscountUse(
            redemption_id=redemption.id,
            period_start=period_start,
            invoice_id=invoice_id,
            created_at=now,
        )
    )
    redemption.periods_used = len(used) + 1
    limit = {Duration.ONCE: 1, Duration.REPEATING: code.duration_periods}.get(
        Duration(code.duration)
    )
    if limit is not None and redemption.periods_used >= limit:
        redemption.status = "ended"
    tx.session.flush()
