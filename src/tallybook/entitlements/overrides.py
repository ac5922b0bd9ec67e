"""Per-customer overrides: a value for one feature that takes precedence over every plan
until it expires or is revoked (support giving a customer a beta feature, a higher limit for a
launch week, unlimited usage during an incident). One active override per (customer,
feature): a new one replaces the previous. Every override records who made it and why."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Final

from tallybook.catalog.domain import CONFIG_VALUE_BYTES_MAX, FeatureType, LimitEnforcement
from tallybook.db import Tx
from tallybook.entitlements import check, repository
from tallybook.entitlements.errors import EntitlementCode
from tallybook.entitlements.models import EntitlementOverride
from tallybook.kit.clock import ensure_utc
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.hashing import json_dumps
from tallybook.kit.ids import new_id
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.kit.quantity import to_decimal
from tallybook.work import events

REASON_LENGTH_MAX: Final = 1000
ACTIVE = "active"


@dataclass(frozen=True, slots=True)
class OverrideInput:
    customer: str
    feature: str
    #: boolean features
    enabled: bool | None = None
    #: config features
    config: Any = None
    #: metered features: a limit per period, or ``unlimited``
    limit: Decimal | int | str | None = None
    unlimited: bool = False
    enforcement: str | None = None
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    reason: str | None = None


def _reason(reason: object) -> str:
    if not isinstance(reason, str) or not reason.strip() or len(reason) > REASON_LENGTH_MAX:
        raise InvalidRequest(
            EntitlementCode.OVERRIDE_REASON_REQUIRED,
            f"say why (reason, 1-{REASON_LENGTH_MAX} characters): overrides are audited",
            param="reason",
        )
    return reason.strip()


def _invalid(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(EntitlementCode.OVERRIDE_VALUE_INVALID, message, param=param)


def _values(feature_type: FeatureType, data: OverrideInput) -> dict[str, Any]:
    """The value fields for the feature's type; fields of other types are refused."""
    given = {
        "enabled": data.enabled is not None,
        "config": data.config is not None,
        "limit": data.limit is not None or data.unlimited,
        "enforcement": data.enforcement is not None,
    }
    allowed = {
        FeatureType.BOOLEAN: {"enabled"},
        FeatureType.CONFIG: {"config"},
        FeatureType.METERED: {"limit", "enforcement"},
    }[feature_type]
    for name, present in given.items():
        if present and name not in allowed:
            raise _invalid(f"{name} does not apply to a {feature_type} feature", name)
    if feature_type is FeatureType.BOOLEAN:
        if not isinstance(data.enabled, bool):
            raise _invalid("a boolean override says enabled: true or false", "enabled")
        return {"enabled": data.enabled}
    if feature_type is FeatureType.CONFIG:
        if data.config is None:
            raise _invalid("a config override gives config", "config")
        if len(json_dumps(data.config).encode()) > CONFIG_VALUE_BYTES_MAX:
            raise _invalid(f"config is at most {CONFIG_VALUE_BYTES_MAX} bytes of JSON", "config")
        return {"config": data.config}
    if data.unlimited and data.limit is not None:
        raise _invalid("give a limit or unlimited, not both", "limit")
    limit = None
    if not data.unlimited:
        if data.limit is None:
            raise _invalid("a metered override gives a limit (or unlimited: true)", "limit")
        limit = to_decimal(data.limit, param="limit")
        if limit < 0:
            raise _invalid("limit must not be negative", "limit")
    try:
        enforcement = LimitEnforcement(data.enforcement or LimitEnforcement.HARD)
    except ValueError:
        raise _invalid("enforcement must be hard or soft", "enforcement") from None
    return {"limit_quantity": limit, "unlimited": data.unlimited, "enforcement": str(enforcement)}


def create_override(tx: Tx, data: OverrideInput) -> EntitlementOverride:
    customer = check.resolve_customer(tx, data.customer)
    feature = check.resolve_feature(tx, data.feature)
    values = _values(feature.type, data)
    now = tx.now()
    starts_at = ensure_utc(data.starts_at, param="starts_at") if data.starts_at else now
    expires_at = ensure_utc(data.expires_at, param="expires_at") if data.expires_at else None
    if expires_at is not None and (expires_at <= starts_at or expires_at <= now):
        raise InvalidRequest(
            EntitlementCode.OVERRIDE_WINDOW_INVALID,
            "expires_at must be after starts_at and in the future",
            param="expires_at",
        )
    reason = _reason(data.reason)
    for previous in repository.active_overrides_for_update(tx, customer.id, feature.id):
        previous.status = "replaced"
        previous.ended_at = now
        previous.ended_by = tx.actor
    override = EntitlementOverride(
        id=new_id("eov"),
        customer_id=customer.id,
        feature_id=feature.id,
        enabled=values.get("enabled"),
        config=values.get("config"),
        limit_quantity=values.get("limit_quantity"),
        unlimited=bool(values.get("unlimited", False)),
        enforcement=values.get("enforcement"),
        starts_at=starts_at,
        expires_at=expires_at,
        status=ACTIVE,
        created_by=tx.actor,
        reason=reason,
        created_at=now,
    )
    tx.session.add(override)
    tx.session.flush()
    events.emit(
        tx,
        "entitlement_override.created",
        customer_id=customer.id,
        object_id=override.id,
        data={"override": event_data(override, feature.key)},
    )
    return override


def event_data(override: EntitlementOverride, feature_key: str) -> dict[str, Any]:
    return {
        "id": override.id,
        "feature": feature_key,
        "enabled": override.enabled,
        "config": override.config,
        "limit": override.limit_quantity,
        "unlimited": override.unlimited,
        "enforcement": override.enforcement,
        "starts_at": override.starts_at,
        "expires_at": override.expires_at,
        "status": override.status,
        "reason": override.reason,
        "created_by": override.created_by,
    }


def get_override(tx: Tx, override_id: str) -> EntitlementOverride:
    found = repository.get_override(tx, override_id)
    if found is None:
        raise NotFound("entitlement override", override_id)
    return found


def revoke_override(tx: Tx, override_id: str) -> EntitlementOverride:
    """End an override now (idempotent): the plans apply again on the next check."""
    found = get_override(tx, override_id)
    if found.status != ACTIVE:
        return found
    now = tx.now()
    found.status = "revoked"
    found.ended_at = now
    found.ended_by = tx.actor
    tx.session.flush()
    feature = check.resolve_feature(tx, found.feature_id)
    events.emit(
        tx,
        "entitlement_override.revoked",
        customer_id=found.customer_id,
        object_id=found.id,
        data={"override": event_data(found, feature.key)},
    )
    return found


def list_overrides(
    tx: Tx,
    request: PageRequest,
    *,
    customer: str | None = None,
    feature: str | None = None,
    status: str | None = None,
) -> Page[EntitlementOverride]:
    customer_id = check.resolve_customer(tx, customer).id if customer else None
    feature_id = check.resolve_feature(tx, feature).id if feature else None
    rows = repository.overrides_page(
        tx, request, customer_id=customer_id, feature_id=feature_id, status=status
    )
    return page_from_rows(rows, request)
