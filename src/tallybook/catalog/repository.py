"""All SQL for features, plans, plan versions, prices and entitlement definitions."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import InstrumentedAttribute

from tallybook.catalog.meter_models import Meter
from tallybook.catalog.models import (
    PUBLISHED,
    Entitlement,
    Feature,
    Plan,
    PlanVersion,
    Price,
)
from tallybook.db import Tx
from tallybook.kit.pagination import PageRequest


def page_rows(
    tx: Tx, query: Select[Any], id_column: InstrumentedAttribute[str], request: PageRequest
) -> list[Any]:
    """Newest first, up to ``limit + 1`` rows so the caller can tell ``has_more``."""
    if request.starting_after:
        query = query.where(id_column < request.starting_after).order_by(id_column.desc())
    elif request.ending_before:
        query = query.where(id_column > request.ending_before).order_by(id_column.asc())
    else:
        query = query.order_by(id_column.desc())
    rows = list(tx.session.scalars(query.limit(request.limit + 1)))
    if request.ending_before:
        rows = list(reversed(rows[: request.limit])) + rows[request.limit :]
    return rows


# Meters (read only: the metering domain owns them) -------------------------------------------


def get_meter(tx: Tx, meter_id: str) -> Meter | None:
    return tx.session.get(Meter, meter_id)


def meters_by_id(tx: Tx, meter_ids: Sequence[str]) -> dict[str, Meter]:
    if not meter_ids:
        return {}
    rows = tx.session.scalars(select(Meter).where(Meter.id.in_(list(set(meter_ids)))))
    return {meter.id: meter for meter in rows}


# Features ---------------------------------------------------------------------------------


def get_feature(tx: Tx, feature_id: str) -> Feature | None:
    return tx.session.get(Feature, feature_id)


def get_feature_by_key(tx: Tx, key: str) -> Feature | None:
    return tx.session.scalar(select(Feature).where(Feature.key == key))


def features_by_id(tx: Tx, feature_ids: Sequence[str]) -> dict[str, Feature]:
    if not feature_ids:
        return {}
    rows = tx.session.scalars(select(Feature).where(Feature.id.in_(list(set(feature_ids)))))
    return {feature.id: feature for feature in rows}


def feature_page(
    tx: Tx, request: PageRequest, *, type: str | None, include_archived: bool
) -> list[Feature]:
    query = select(Feature)
    if type is not None:
        query = query.where(Feature.type == type)
    if not include_archived:
        query = query.where(Feature.archived_at.is_(None))
    return page_rows(tx, query, Feature.id, request)


# Plans ------------------------------------------------------------------------------------


def get_plan(tx: Tx, plan_id: str, *, for_update: bool = False) -> Plan | None:
    if for_update and tx.is_postgres:
        return tx.session.scalar(select(Plan).where(Plan.id == plan_id).with_for_update())
    return tx.session.get(Plan, plan_id)


def get_plan_by_key(tx: Tx, key: str) -> Plan | None:
    return tx.session.scalar(select(Plan).where(Plan.key == key))


def plan_page(tx: Tx, request: PageRequest, *, include_archived: bool) -> list[Plan]:
    query = select(Plan)
    if not include_archived:
        query = query.where(Plan.archived_at.is_(None))
    return page_rows(tx, query, Plan.id, request)


# Versions ---------------------------------------------------------------------------------


def get_version(tx: Tx, version_id: str, *, for_update: bool = False) -> PlanVersion | None:
    if for_update and tx.is_postgres:
        return tx.session.scalar(
            select(PlanVersion).where(PlanVersion.id == version_id).with_for_update()
        )
    return tx.session.get(PlanVersion, version_id)


def get_version_by_number(tx: Tx, plan_id: str, number: int) -> PlanVersion | None:
    return tx.session.scalar(
        select(PlanVersion).where(PlanVersion.plan_id == plan_id, PlanVersion.version == number)
    )


def versions_of(tx: Tx, plan_id: str) -> list[PlanVersion]:
    return list(
        tx.session.scalars(
            select(PlanVersion)
            .where(PlanVersion.plan_id == plan_id)
            .order_by(PlanVersion.version.desc())
        )
    )


def latest_published(tx: Tx, plan_id: str) -> PlanVersion | None:
    return tx.session.scalar(
        select(PlanVersion)
        .where(PlanVersion.plan_id == plan_id, PlanVersion.status == PUBLISHED)
        .order_by(PlanVersion.version.desc())
        .limit(1)
    )


def next_version_number(tx: Tx, plan_id: str) -> int:
    highest = tx.session.scalar(
        select(func.max(PlanVersion.version)).where(PlanVersion.plan_id == plan_id)
    )
    return (highest or 0) + 1


# Prices and entitlements ------------------------------------------------------------------


def prices_of(tx: Tx, version_id: str) -> list[Price]:
    return list(
        tx.session.scalars(
            select(Price).where(Price.plan_version_id == version_id).order_by(Price.position)
        )
    )


def entitlements_of(tx: Tx, version_id: str) -> list[Entitlement]:
    return list(
        tx.session.scalars(
            select(Entitlement)
            .where(Entitlement.plan_version_id == version_id)
            .order_by(Entitlement.position)
        )
    )


def delete_children(tx: Tx, version_id: str, *, prices: bool, entitlements: bool) -> None:
    """Remove a draft's prices and/or entitlements before they are replaced."""
    if prices:
        tx.session.execute(delete(Price).where(Price.plan_version_id == version_id))
    if entitlements:
        tx.session.execute(delete(Entitlement).where(Entitlement.plan_version_id == version_id))
