"""Plans and plan versions. Never commits.

A plan (``pro``) has numbered versions. A version holds the terms: currency, billing interval,
prices, entitlement definitions, minimum commitment, billing threshold, change policies,
cancellation credit and default trial length. It is editable while ``draft``; ``publish`` makes
it immutable (and is idempotent); ``archive`` stops new subscriptions on it while existing ones
carry on. New subscriptions that name only the plan get its latest published version.
Subscriptions never move between versions unless migrated explicitly (``subscriptions``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from tallybook.catalog import definitions, repository
from tallybook.catalog import features as features_service
from tallybook.catalog.domain import VersionTerms
from tallybook.catalog.errors import CatalogCode
from tallybook.catalog.models import ARCHIVED, DRAFT, PUBLISHED, Plan, PlanVersion
from tallybook.catalog.terms import (
    definition_of,
    entitlement_def,
    price_def,
    version_terms,
)
from tallybook.db import Tx
from tallybook.kit.errors import CommonCode, Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.pagination import Page, PageRequest, page_from_rows
from tallybook.work import events

__all__ = [
    "VERSION_FIELDS",
    "PlanInput",
    "PlanUpdate",
    "VersionDetail",
    "archive_plan",
    "archive_version",
    "create_plan",
    "create_version",
    "definition_of",
    "detail",
    "entitlement_def",
    "get_plan",
    "get_version",
    "list_plans",
    "list_versions",
    "price_def",
    "publish",
    "resolve_plan",
    "resolve_version",
    "update_plan",
    "update_version",
    "version_for_subscription",
    "version_terms",
]

PLAN_KEY_PATTERN: Final = features_service.KEY_PATTERN
#: The fields of a version definition (create, update, copy).
VERSION_FIELDS: Final = frozenset(
    {
        "currency",
        "interval",
        "interval_count",
        "prices",
        "entitlements",
        "minimum_commitment_minor",
        "billing_threshold_minor",
        "change_policy",
        "cancellation_credit",
        "trial_period_days",
        "description",
    }
)


@dataclass(frozen=True, slots=True)
class PlanInput:
    key: str
    name: str
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class PlanUpdate:
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class VersionDetail:
    """A version with its prices and entitlement definitions (what the API returns)."""

    version: PlanVersion
    plan: Plan
    terms: VersionTerms


# Plans ------------------------------------------------------------------------------------


def create_plan(tx: Tx, data: PlanInput) -> Plan:
    if not PLAN_KEY_PATTERN.match(data.key):
        raise InvalidRequest(
            CatalogCode.PLAN_KEY_INVALID,
            "key must be 1-100 lower-case letters, digits and _ . - (starting with a letter or "
            "digit)",
            param="key",
        )
    if repository.get_plan_by_key(tx, data.key) is not None:
        raise Conflict(
            CatalogCode.PLAN_KEY_TAKEN, f"a plan with key '{data.key}' exists", param="key"
        )
    now = tx.now()
    plan = Plan(
        id=new_id("plan"),
        key=data.key,
        name=features_service.check_name(data.name),
        description=definitions.description_text(data.description),
        metadata_=validate_metadata(data.metadata),
        created_at=now,
        updated_at=now,
    )
    tx.session.add(plan)
    tx.session.flush()
    return plan


def get_plan(tx: Tx, plan_id: str) -> Plan:
    plan = repository.get_plan(tx, plan_id)
    if plan is None:
        raise NotFound("plan", plan_id)
    return plan


def resolve_plan(tx: Tx, id_or_key: str, *, param: str = "id") -> Plan:
    """Accept a plan id (``plan_…``) or key."""
    plan = repository.get_plan(tx, id_or_key) or repository.get_plan_by_key(tx, id_or_key)
    if plan is None:
        raise NotFound("plan", id_or_key, param=param)
    return plan


def update_plan(tx: Tx, plan_id: str, changes: PlanUpdate) -> Plan:
    plan = get_plan(tx, plan_id)
    if changes.name is not None:
        plan.name = features_service.check_name(changes.name)
    if changes.description is not None:
        plan.description = definitions.description_text(changes.description) or None
    if changes.metadata is not None:
        merged = {**plan.metadata_, **changes.metadata}
        plan.metadata_ = validate_metadata({k: v for k, v in merged.items() if v != ""})
    plan.updated_at = tx.now()
    tx.session.flush()
    return plan


def archive_plan(tx: Tx, plan_id: str) -> Plan:
    """No new subscriptions and no new versions; existing subscriptions carry on. Idempotent."""
    plan = get_plan(tx, plan_id)
    if plan.archived_at is None:
        plan.archived_at = tx.now()
        plan.updated_at = tx.now()
    return plan


def list_plans(tx: Tx, request: PageRequest, *, include_archived: bool = False) -> Page[Plan]:
    rows = repository.plan_page(tx, request, include_archived=include_archived)
    return page_from_rows(rows, request)


# Versions ---------------------------------------------------------------------------------


def get_version(tx: Tx, version_id: str, *, param: str = "id") -> PlanVersion:
    version = repository.get_version(tx, version_id)
    if version is None:
        raise NotFound("plan version", version_id, param=param)
    return version


def resolve_version(tx: Tx, plan: Plan, ref: str, *, param: str = "version") -> PlanVersion:
    """A version of ``plan`` by id (``pv_…``) or number (``3``)."""
    version = None
    if ref.isdigit():
        version = repository.get_version_by_number(tx, plan.id, int(ref))
    else:
        version = repository.get_version(tx, ref)
        if version is not None and version.plan_id != plan.id:
            version = None
    if version is None:
        raise NotFound("plan version", ref, param=param)
    return version


def list_versions(tx: Tx, plan_id: str) -> list[PlanVersion]:
    return repository.versions_of(tx, plan_id)


def create_version(tx: Tx, plan_id: str, fields: Mapping[str, Any]) -> PlanVersion:
    """A new draft version of ``plan_id``. ``fields`` holds the definition (see
    :data:`VERSION_FIELDS`); with ``copy_from`` (a version id of the same plan) it starts
    from that version's definition and ``fields`` override it."""
    plan = repository.get_plan(tx, plan_id, for_update=True)
    if plan is None:
        raise NotFound("plan", plan_id)
    if plan.archived_at is not None:
        raise Conflict(CatalogCode.PLAN_ARCHIVED, f"plan '{plan.key}' is archived", param="plan")
    definition: dict[str, Any] = {}
    copy_from = fields.get("copy_from")
    if copy_from is not None:
        source = get_version(tx, str(copy_from), param="copy_from")
        if source.plan_id != plan.id:
            raise InvalidRequest(
                CatalogCode.PLAN_VERSION_COPY_PLAN_MISMATCH,
                "copy_from must be a version of the same plan",
                param="copy_from",
            )
        definition = definition_of(tx, source)
    definition.update({k: v for k, v in fields.items() if k in VERSION_FIELDS})
    for required in ("currency", "interval"):
        if definition.get(required) is None:
            raise InvalidRequest(
                CommonCode.PARAMETER_MISSING, f"{required} is required", param=required
            )
    checked = definitions.check_definition(tx, definition)
    now = tx.now()
    version = PlanVersion(
        id=new_id("pv"),
        plan_id=plan.id,
        version=repository.next_version_number(tx, plan.id),
        status=DRAFT,
        created_at=now,
        updated_at=now,
    )
    definitions.apply_terms(version, checked)
    tx.session.add(version)
    tx.session.flush()
    definitions.write_prices(tx, version, checked.prices)
    definitions.write_entitlements(tx, version, checked.entitlements)
    plan.updated_at = now
    tx.session.flush()
    return version


def update_version(tx: Tx, version_id: str, fields: Mapping[str, Any]) -> PlanVersion:
    """Edit a draft. Given ``prices`` or ``entitlements`` replace the whole list."""
    version = repository.get_version(tx, version_id, for_update=True)
    if version is None:
        raise NotFound("plan version", version_id)
    _require_draft(version)
    definition = definition_of(tx, version)
    definition.update({k: v for k, v in fields.items() if k in VERSION_FIELDS})
    checked = definitions.check_definition(tx, definition)
    definitions.apply_terms(version, checked)
    version.updated_at = tx.now()
    replace_prices, replace_entitlements = "prices" in fields, "entitlements" in fields
    if replace_prices or replace_entitlements:
        repository.delete_children(
            tx, version.id, prices=replace_prices, entitlements=replace_entitlements
        )
        tx.session.flush()
    if replace_prices:
        definitions.write_prices(tx, version, checked.prices)
    if replace_entitlements:
        definitions.write_entitlements(tx, version, checked.entitlements)
    tx.session.flush()
    return version


def publish(tx: Tx, version_id: str) -> PlanVersion:
    """Freeze a draft. Publishing a published (or archived) version returns it unchanged."""
    version = repository.get_version(tx, version_id, for_update=True)
    if version is None:
        raise NotFound("plan version", version_id)
    if version.status != DRAFT:
        return version
    plan = get_plan(tx, version.plan_id)
    if plan.archived_at is not None:
        raise Conflict(CatalogCode.PLAN_ARCHIVED, f"plan '{plan.key}' is archived", param="plan")
    # Re-check against the world as it is now (a meter or feature may be gone since drafting).
    definitions.check_definition(tx, definition_of(tx, version))
    now = tx.now()
    version.status = PUBLISHED
    version.published_at = now
    version.updated_at = now
    tx.session.flush()
    terms = version_terms(tx, version.id)
    events.emit(
        tx,
        "plan_version.published",
        object_id=version.id,
        data={
            "plan_version": version.id,
            "plan": plan.id,
            "plan_key": plan.key,
            "version": version.version,
            "currency": version.currency,
            "interval": version.interval_unit,
            "interval_count": version.interval_count,
            "prices": [price.to_dict() | {"id": price.id} for price in terms.prices],
        },
    )
    return version


def archive_version(tx: Tx, version_id: str) -> PlanVersion:
    """No new subscriptions on it; subscriptions already on it continue. Idempotent."""
    version = get_version(tx, version_id)
    if version.status != ARCHIVED:
        version.status = ARCHIVED
        version.archived_at = tx.now()
        version.updated_at = tx.now()
        tx.session.flush()
    return version


def version_for_subscription(
    tx: Tx,
    *,
    plan_version_id: str | None = None,
    plan: str | None = None,
    param: str = "plan_version",
) -> PlanVersion:
    """The version a subscription may start on (or move to): the given version, or the
    plan's latest published one. It must be published and its plan not archived."""
    if plan_version_id is not None:
        version = get_version(tx, plan_version_id, param=param)
    elif plan is not None:
        found = resolve_plan(tx, plan, param="plan")
        latest = repository.latest_published(tx, found.id)
        if latest is None:
            raise Conflict(
                CatalogCode.PLAN_HAS_NO_PUBLISHED_VERSION,
                f"plan '{found.key}' has no published version",
                param="plan",
            )
        version, param = latest, "plan"
    else:
        raise InvalidRequest(
            CommonCode.PARAMETER_MISSING, "pass plan_version or plan", param="plan_version"
        )
    if version.status == DRAFT:
        raise Conflict(
            CatalogCode.PLAN_VERSION_NOT_PUBLISHED,
            f"plan version {version.id} is a draft; publish it first",
            param=param,
        )
    if version.status == ARCHIVED:
        raise Conflict(
            CatalogCode.PLAN_VERSION_ARCHIVED,
            f"plan version {version.id} is archived",
            param=param,
        )
    if get_plan(tx, version.plan_id).archived_at is not None:
        raise Conflict(CatalogCode.PLAN_ARCHIVED, "the plan is archived", param=param)
    return version


def detail(tx: Tx, version: PlanVersion) -> VersionDetail:
    return VersionDetail(version, get_plan(tx, version.plan_id), version_terms(tx, version.id))


def _require_draft(version: PlanVersion) -> None:
    if version.status != DRAFT:
        raise Conflict(
            CatalogCode.PLAN_VERSION_IMMUTABLE,
            f"plan version {version.id} is {version.status} and cannot change; "
            "create a new version (copy_from) instead",
            param="version",
        )
