"""API shapes of entitlement checks, overrides, reservations and spend limits.

The check is the hot path: its body is decoded with msgspec (``CheckBody``) and its answer is
rendered from a plain dict (``check_wire``); ``EntitlementCheckOut`` documents that answer in
OpenAPI.
"""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from tallybook.entitlements.domain import CheckResult
from tallybook.entitlements.models import EntitlementOverride, LimitAlert, Reservation, SpendLimit
from tallybook.entitlements.overrides import OverrideInput
from tallybook.entitlements.reservations import ReservationInput
from tallybook.kit.clock import isoformat_z
from tallybook.kit.errors import CommonCode, InvalidRequest
from tallybook.kit.quantity import quantity_text

# The check ------------------------------------------------------------------------------------


class CheckBody(msgspec.Struct, forbid_unknown_fields=True):
    customer: str
    feature: str
    quantity: Decimal | None = None


CHECK_DECODER = msgspec.json.Decoder(CheckBody)
_AT = re.compile(r"at `\$\.([A-Za-z_]+)")
_FIELD = re.compile(r"field `([^`]+)`")


def decode_check(body: bytes) -> CheckBody:
    """The check's body, or the same named errors the pydantic routes give."""
    try:
        return CHECK_DECODER.decode(body)
    except msgspec.ValidationError as error:
        text = str(error)
        field = _FIELD.search(text)
        at = _AT.search(text)
        if "missing required field" in text and field:
            raise InvalidRequest(
                CommonCode.PARAMETER_MISSING, f"{field.group(1)} is required", param=field.group(1)
            ) from None
        if "unknown field" in text and field:
            raise InvalidRequest(
                CommonCode.PARAMETER_UNKNOWN,
                f"the check takes no field {field.group(1)!r}",
                param=field.group(1),
            ) from None
        param = at.group(1) if at else None
        code = CommonCode.QUANTITY_INVALID if param == "quantity" else CommonCode.PARAMETER_INVALID
        raise InvalidRequest(code, text, param=param) from None
    except msgspec.DecodeError:
        raise InvalidRequest(
            CommonCode.MALFORMED_JSON, "the request body is not valid JSON"
        ) from None


def _text(value: Decimal | None) -> str | None:
    return quantity_text(value) if value is not None else None


def _time(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def check_wire(result: CheckResult) -> dict[str, Any]:
    """The check's answer as JSON-ready values (rendered with orjson)."""
    spend = result.spend
    return {
        "object": "entitlement_check",
        "customer": result.customer_id,
        "feature": result.feature.key,
        "feature_id": result.feature.id,
        "feature_type": str(result.feature.type),
        "allowed": result.allowed,
        "reason": str(result.reason),
        "source": str(result.source),
        "enabled": result.enabled,
        "config": result.config,
        "limit": _text(result.limit),
        "enforcement": str(result.enforcement) if result.enforcement else None,
        "used": _text(result.used),
        "reserved": _text(result.reserved),
        "granted": _text(result.granted),
        "remaining": _text(result.remaining),
        "quantity": _text(result.quantity),
        "period_start": _time(result.period_start),
        "resets_at": _time(result.resets_at),
        "spend": (
            {
                "limit_minor": spend.limit_minor,
                "currency": spend.currency,
                "spend_minor": spend.spend_minor,
                "increment_minor": spend.increment_minor,
            }
            if spend is not None
            else None
        ),
        "subscriptions": list(result.subscription_ids),
        "override": result.override_id,
        "override_expires_at": _time(result.override_expires_at),
    }


class SpendOut(BaseModel):
    limit_minor: int
    currency: str
    spend_minor: int = Field(description="This period's on-demand spend so far")
    increment_minor: int = Field(description="What the requested quantity would add")


class EntitlementCheckOut(BaseModel):
    """May this customer use this feature now?"""

    object: Literal["entitlement_check"] = "entitlement_check"
    customer: str
    feature: str
    feature_id: str
    feature_type: Literal["boolean", "config", "metered"]
    allowed: bool
    reason: Literal[
        "ok",
        "no_subscription",
        "feature_not_in_plan",
        "feature_disabled",
        "limit_exceeded",
        "soft_limit_exceeded",
        "spend_limit_exceeded",
        "subscription_past_due",
        "subscription_unpaid",
    ]
    source: Literal["override", "plan", "none"]
    enabled: bool
    config: Any = Field(None, description="Config features: the value")
    limit: Decimal | None = Field(None, description="Metered: the limit per period (null: none)")
    enforcement: Literal["hard", "soft"] | None = None
    used: Decimal | None = Field(None, description="Metered: usage this period")
    reserved: Decimal | None = Field(None, description="Metered: held by open reservations")
    granted: Decimal | None = Field(None, description="Metered: units usage grants add")
    remaining: Decimal | None = None
    quantity: Decimal | None = None
    period_start: datetime | None = None
    resets_at: datetime | None = Field(None, description="When the period (and usage) resets")
    spend: SpendOut | None = None
    subscriptions: list[str] = Field(description="The subscriptions granting it")
    override: str | None = None
    override_expires_at: datetime | None = None


def check_request_openapi() -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["customer", "feature"],
                        "properties": {
                            "customer": {
                                "type": "string",
                                "description": "Customer id (`cus_…`) or your external id",
                            },
                            "feature": {"type": "string", "description": "Feature id or key"},
                            "quantity": {
                                "anyOf": [{"type": "number"}, {"type": "string"}],
                                "description": "Units about to be used (metered features); "
                                "without it: is anything left?",
                            },
                        },
                    },
                    "example": {"customer": "acme", "feature": "tokens", "quantity": 1200},
                }
            },
        }
    }


# Overrides ------------------------------------------------------------------------------------


class OverrideBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str
    feature: str = Field(description="Feature id or key")
    enabled: bool | None = Field(None, description="Boolean features")
    config: Any = Field(None, description="Config features")
    limit: Decimal | None = Field(None, description="Metered features: per billing period")
    unlimited: bool = Field(False, description="Metered features: no limit")
    enforcement: Literal["hard", "soft"] | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    reason: str = Field(description="Why: recorded with who made it")

    def to_input(self) -> OverrideInput:
        return OverrideInput(**self.model_dump())


class OverrideOut(BaseModel):
    object: Literal["entitlement_override"] = "entitlement_override"
    id: str
    customer: str
    feature: str
    enabled: bool | None
    config: Any
    limit: Decimal | None
    unlimited: bool
    enforcement: str | None
    starts_at: datetime
    expires_at: datetime | None
    status: str
    created_by: str
    reason: str
    ended_at: datetime | None
    ended_by: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: EntitlementOverride) -> OverrideOut:
        return cls(
            id=row.id,
            customer=row.customer_id,
            feature=row.feature_id,
            enabled=row.enabled,
            config=row.config,
            limit=row.limit_quantity,
            unlimited=row.unlimited,
            enforcement=row.enforcement,
            starts_at=row.starts_at,
            expires_at=row.expires_at,
            status=row.status,
            created_by=row.created_by,
            reason=row.reason,
            ended_at=row.ended_at,
            ended_by=row.ended_by,
            created_at=row.created_at,
        )


# Reservations ---------------------------------------------------------------------------------


class ReservationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer: str
    feature: str | None = Field(None, description="A metered feature (sum or count meter)")
    quantity: Decimal | None = Field(None, description="Units to reserve against its limit")
    amount_minor: int | None = Field(None, description="Money to hold on credit grants")
    currency: str | None = None
    grant: str | None = Field(None, description="Hold from this grant (default burn-down order)")
    timeout_seconds: int = Field(900, description="1 s to 24 h; then it expires")
    event_data: dict[str, Any] | None = Field(
        None, description="Fields of the usage event recorded at settlement (dimensions, filters)"
    )
    metadata: dict[str, str] | None = None

    def to_input(self) -> ReservationInput:
        return ReservationInput(**self.model_dump())


class SettleBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quantity: Decimal | None = Field(None, description="Units used (default: all reserved)")
    amount_minor: int | None = Field(None, description="Money used (default: all held)")


class ReservationOut(BaseModel):
    object: Literal["reservation"] = "reservation"
    id: str
    customer: str
    feature: str | None
    quantity: Decimal | None
    settled_quantity: Decimal | None
    amount_minor: int | None
    settled_amount_minor: int | None
    currency: str | None
    holds: list[dict[str, Any]]
    status: str
    period_start: datetime | None
    period_end: datetime | None
    expires_at: datetime
    created_by: str
    created_at: datetime
    resolved_at: datetime | None
    metadata: dict[str, str]

    @classmethod
    def of(cls, row: Reservation) -> ReservationOut:
        return cls(
            id=row.id,
            customer=row.customer_id,
            feature=row.feature_id,
            quantity=row.quantity,
            settled_quantity=row.settled_quantity,
            amount_minor=row.amount_minor,
            settled_amount_minor=row.settled_amount_minor,
            currency=row.currency,
            holds=list(row.holds),
            status=row.status,
            period_start=row.period_start,
            period_end=row.period_end,
            expires_at=row.expires_at,
            created_by=row.created_by,
            created_at=row.created_at,
            resolved_at=row.resolved_at,
            metadata=dict(row.metadata_),
        )


# Spend limits and alerts ----------------------------------------------------------------------


class SpendLimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: int = Field(description="Maximum on-demand spend per billing period")
    currency: str | None = Field(None, description="The customer's currency (the default)")
    thresholds: list[int] | None = Field(
        None, description="Alert percentages (default 50, 80, 100)", max_length=10
    )
    reason: str | None = None


class SpendLimitOut(BaseModel):
    object: Literal["spend_limit"] = "spend_limit"
    customer: str
    amount_minor: int
    currency: str
    thresholds: list[int]
    set_by: str
    reason: str | None
    updated_at: datetime

    @classmethod
    def of(cls, row: SpendLimit) -> SpendLimitOut:
        return cls(
            customer=row.customer_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
            thresholds=list(row.thresholds),
            set_by=row.set_by,
            reason=row.reason,
            updated_at=row.updated_at,
        )


class AlertOut(BaseModel):
    object: Literal["limit_alert"] = "limit_alert"
    id: str
    customer: str
    subject: str = Field(description="`spend`, or the feature id")
    kind: Literal["threshold", "exceeded"]
    threshold_percent: int | None
    period_start: datetime
    measured: str
    limit: str
    event: str
    created_at: datetime

    @classmethod
    def of(cls, row: LimitAlert) -> AlertOut:
        return cls(
            id=row.id,
            customer=row.customer_id,
            subject=row.subject,
            kind=row.kind,
            threshold_percent=row.threshold_percent if row.kind == "threshold" else None,
            period_start=row.period_start,
            measured=row.measured,
            limit=row.limit_value,
            event=row.event_id,
            created_at=row.created_at,
        )
