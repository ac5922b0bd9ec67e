"""Features: what a plan can grant. Never commits.

- ``boolean``: access on or off (``sso``);
- ``config``: a static value per plan (``allowed_models: ["gpt-4o-mini"]``);
- ``metered``: usage of one meter version, limited per billing period (``tokens``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from tallybook.catalog import repository
from tallybook.catalog.domain import FeatureRef, FeatureType
from tallybook.catalog.errors import CatalogCode
from tallybook.catalog.models import Feature
from tallybook.db import Tx
from tallybook.kit.errors import CommonCode, Conflict, InvalidRequest, NotFound
from tallybook.kit.ids import new_id
from tallybook.kit.metadata import validate_metadata
from tallybook.kit.pagination import Page, PageRequest, page_from_rows

KEY_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.\-]{0,99}$")
NAME_LENGTH_MAX: Final = 200


@dataclass(frozen=True, slots=True)
class FeatureInput:
    key: str
    name: str
    type: str
    meter_id: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class FeatureUpdate:
    name: str | None = None
    description: str | None = None
    metadata: dict[str, str] | None = None


def check_name(name: object, param: str = "name") -> str:
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_LENGTH_MAX:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            f"{param} must be 1-{NAME_LENGTH_MAX} characters",
            param=param,
        )
    return name.strip()


def create(tx: Tx, data: FeatureInput) -> Feature:
    if not KEY_PATTERN.match(data.key):
        raise InvalidRequest(
            CatalogCode.FEATURE_KEY_INVALID,
            "key must be 1-100 lower-case letters, digits and _ . - (starting with a letter or "
            "digit)",
            param="key",
        )
    try:
        feature_type = FeatureType(data.type)
    except ValueError:
        raise InvalidRequest(
            CommonCode.PARAMETER_INVALID,
            "type must be boolean, config or metered",
            param="type",
        ) from None
    if feature_type == FeatureType.METERED:
        if not data.meter_id:
            raise InvalidRequest(
                CatalogCode.FEATURE_METER_REQUIRED,
                "a metered feature names the meter it counts",
                param="meter_id",
            )
        if repository.get_meter(tx, data.meter_id) is None:
            raise InvalidRequest(
                CatalogCode.FEATURE_METER_NOT_FOUND,
                f"no such meter: '{data.meter_id}'",
                param="meter_id",
            )
    elif data.meter_id is not None:
        raise InvalidRequest(
            CatalogCode.FEATURE_METER_NOT_ALLOWED,
            f"a {feature_type} feature has no meter",
            param="meter_id",
        )
    if repository.get_feature_by_key(tx, data.key) is not None:
        raise Conflict(
            CatalogCode.FEATURE_KEY_TAKEN, f"a feature with key '{data.key}' exists", param="key"
        )
    now = tx.now()
    feature = Feature(
        id=new_id("feat"),
        key=data.key,
        name=check_name(data.name),
        description=data.description,
        type=str(feature_type),
        meter_id=data.meter_id,
        metadata_=validate_metadata(data.metadata),
        created_at=now,
        updated_at=now,
    )
    tx.session.add(feature)
    tx.session.flush()
    return feature


def get(tx: Tx, feature_id: str) -> Feature:
    feature = repository.get_feature(tx, feature_id)
    if feature is None:
        raise NotFound("feature", feature_id)
    return feature


def resolve(tx: Tx, id_or_key: str, *, param: str = "id") -> Feature:
    """Accept a feature id (``feat_…``) or key."""
    feature = repository.get_feature(tx, id_or_key) or repository.get_feature_by_key(tx, id_or_key)
    if feature is None:
        raise NotFound("feature", id_or_key, param=param)
    return feature


def update(tx: Tx, feature_id: str, changes: FeatureUpdate) -> Feature:
    feature = get(tx, feature_id)
    if changes.name is not None:
        feature.name = check_name(changes.name)
    if changes.description is not None:
        feature.description = changes.description or None
    if changes.metadata is not None:
        merged = {**feature.metadata_, **changes.metadata}
        feature.metadata_ = validate_metadata({k: v for k, v in merged.items() if v != ""})
    feature.updated_at = tx.now()
    tx.session.flush()
    return feature


def archive(tx: Tx, feature_id: str) -> Feature:
    """No new plan version may grant it; versions that already do keep it. Idempotent."""
    feature = get(tx, feature_id)
    if feature.archived_at is None:
        feature.archived_at = tx.now()
        feature.updated_at = tx.now()
    return feature


def list_page(
    tx: Tx, request: PageRequest, *, type: str | None = None, include_archived: bool = False
) -> Page[Feature]:
    rows = repository.feature_page(tx, request, type=type, include_archived=include_archived)
    return page_from_rows(rows, request)


def ref(feature: Feature) -> FeatureRef:
    return FeatureRef(
        id=feature.id, key=feature.key, type=FeatureType(feature.type), meter_id=feature.meter_id
    )
