"""HTTP routes of the catalog: ``/v1/features`` and ``/v1/plans`` (+ versions, publish)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from tallybook.catalog import features as features_service
from tallybook.catalog import plans as plans_service
from tallybook.catalog.schemas import (
    FeatureCreateBody,
    FeatureOut,
    FeatureUpdateBody,
    PlanCreateBody,
    PlanOut,
    PlanUpdateBody,
    VersionCreateBody,
    VersionOut,
    VersionUpdateBody,
)
from tallybook.db import Tx
from tallybook.http.edge import Edge, make_router, page_params, require
from tallybook.http.errors import ERROR_RESPONSES
from tallybook.http.responses import ListEnvelope, list_envelope
from tallybook.kit.pagination import Page, PageRequest

READ = require("catalog:read")
WRITE = require("catalog:write")

features = make_router("/v1/features", tags=["catalog"])
plans = make_router("/v1/plans", tags=["catalog"])


# Features ---------------------------------------------------------------------------------


@features.post("", response_model=FeatureOut, responses=ERROR_RESPONSES)
def create_feature(body: FeatureCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(
        lambda tx: FeatureOut.of(features_service.create(tx, body.to_input())), fingerprint=body
    )


@features.get("", response_model=ListEnvelope[FeatureOut], responses=ERROR_RESPONSES)
def list_features(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    type: str | None = Query(None, description="boolean, config or metered"),
    include_archived: bool = Query(False),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = features_service.list_page(tx, page, type=type, include_archived=include_archived)
        return list_envelope(result, "/v1/features", [FeatureOut.of(f) for f in result.data])

    return edge.read(run)


@features.get("/{feature}", response_model=FeatureOut, responses=ERROR_RESPONSES)
def get_feature(feature: str, edge: Edge = Depends(READ)) -> Response:
    """Accepts the id (`feat_…`) or the key."""
    return edge.read(lambda tx: FeatureOut.of(features_service.resolve(tx, feature)))


@features.post("/{feature}", response_model=FeatureOut, responses=ERROR_RESPONSES)
def update_feature(feature: str, body: FeatureUpdateBody, edge: Edge = Depends(WRITE)) -> Response:
    def run(tx: Tx) -> FeatureOut:
        found = features_service.resolve(tx, feature)
        return FeatureOut.of(features_service.update(tx, found.id, body.to_update()))

    return edge.write(run, fingerprint=body)


@features.post("/{feature}/archive", response_model=FeatureOut, responses=ERROR_RESPONSES)
def archive_feature(feature: str, edge: Edge = Depends(WRITE)) -> Response:
    """New plan versions can no longer grant it; existing versions keep it."""

    def run(tx: Tx) -> FeatureOut:
        return FeatureOut.of(features_service.archive(tx, features_service.resolve(tx, feature).id))

    return edge.write(run)


# Plans ------------------------------------------------------------------------------------


@plans.post("", response_model=PlanOut, responses=ERROR_RESPONSES)
def create_plan(body: PlanCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    return edge.write(
        lambda tx: PlanOut.of(plans_service.create_plan(tx, body.to_input())), fingerprint=body
    )


@plans.get("", response_model=ListEnvelope[PlanOut], responses=ERROR_RESPONSES)
def list_plans(
    edge: Edge = Depends(READ),
    page: PageRequest = Depends(page_params),
    include_archived: bool = Query(False),
) -> Response:
    def run(tx: Tx) -> dict[str, Any]:
        result = plans_service.list_plans(tx, page, include_archived=include_archived)
        return list_envelope(result, "/v1/plans", [PlanOut.of(p) for p in result.data])

    return edge.read(run)


@plans.get("/{plan}", response_model=PlanOut, responses=ERROR_RESPONSES)
def get_plan(plan: str, edge: Edge = Depends(READ)) -> Response:
    """Accepts the id (`plan_…`) or the key."""
    return edge.read(lambda tx: PlanOut.of(plans_service.resolve_plan(tx, plan)))


@plans.post("/{plan}", response_model=PlanOut, responses=ERROR_RESPONSES)
def update_plan(plan: str, body: PlanUpdateBody, edge: Edge = Depends(WRITE)) -> Response:
    def run(tx: Tx) -> PlanOut:
        found = plans_service.resolve_plan(tx, plan)
        return PlanOut.of(plans_service.update_plan(tx, found.id, body.to_update()))

    return edge.write(run, fingerprint=body)


@plans.post("/{plan}/archive", response_model=PlanOut, responses=ERROR_RESPONSES)
def archive_plan(plan: str, edge: Edge = Depends(WRITE)) -> Response:
    """No new subscriptions or versions; existing subscriptions carry on."""
    return edge.write(
        lambda tx: PlanOut.of(
            plans_service.archive_plan(tx, plans_service.resolve_plan(tx, plan).id)
        )
    )


@plans.post("/{plan}/versions", response_model=VersionOut, responses=ERROR_RESPONSES)
def create_version(plan: str, body: VersionCreateBody, edge: Edge = Depends(WRITE)) -> Response:
    """A new draft version (editable until published)."""

    def run(tx: Tx) -> VersionOut:
        found = plans_service.resolve_plan(tx, plan)
        version = plans_service.create_version(tx, found.id, body.to_fields())
        return VersionOut.of(plans_service.detail(tx, version))

    return edge.write(run, fingerprint=body)


@plans.get("/{plan}/versions", response_model=ListEnvelope[VersionOut], responses=ERROR_RESPONSES)
def list_versions(plan: str, edge: Edge = Depends(READ)) -> Response:
    """Every version of the plan, newest first."""

    def run(tx: Tx) -> dict[str, Any]:
        found = plans_service.resolve_plan(tx, plan)
        versions = plans_service.list_versions(tx, found.id)
        items = [VersionOut.of(plans_service.detail(tx, v)) for v in versions]
        return list_envelope(Page(items, False), f"/v1/plans/{found.id}/versions", items)

    return edge.read(run)


@plans.get("/{plan}/versions/{version}", response_model=VersionOut, responses=ERROR_RESPONSES)
def get_version(plan: str, version: str, edge: Edge = Depends(READ)) -> Response:
    """`version` is the id (`pv_…`) or the number."""

    def run(tx: Tx) -> VersionOut:
        found = plans_service.resolve_version(tx, plans_service.resolve_plan(tx, plan), version)
        return VersionOut.of(plans_service.detail(tx, found))

    return edge.read(run)


@plans.post("/{plan}/versions/{version}", response_model=VersionOut, responses=ERROR_RESPONSES)
def update_version(
    plan: str, version: str, body: VersionUpdateBody, edge: Edge = Depends(WRITE)
) -> Response:
    """Edit a draft; a published version is immutable (`plan_version_immutable`)."""

    def run(tx: Tx) -> VersionOut:
        found = plans_service.resolve_version(tx, plans_service.resolve_plan(tx, plan), version)
        updated = plans_service.update_version(tx, found.id, body.to_fields())
        return VersionOut.of(plans_service.detail(tx, updated))

    return edge.write(run, fingerprint=body)


@plans.post(
    "/{plan}/versions/{version}/publish", response_model=VersionOut, responses=ERROR_RESPONSES
)
def publish_version(plan: str, version: str, edge: Edge = Depends(WRITE)) -> Response:
    """Freeze the draft. Idempotent: publishing a published version returns it."""

    def run(tx: Tx) -> VersionOut:
        found = plans_service.resolve_version(tx, plans_service.resolve_plan(tx, plan), version)
        return VersionOut.of(plans_service.detail(tx, plans_service.publish(tx, found.id)))

    return edge.write(run)


@plans.post(
    "/{plan}/versions/{version}/archive", response_model=VersionOut, responses=ERROR_RESPONSES
)
def archive_version(plan: str, version: str, edge: Edge = Depends(WRITE)) -> Response:
    """No new subscriptions on this version; existing ones continue."""

    def run(tx: Tx) -> VersionOut:
        found = plans_service.resolve_version(tx, plans_service.resolve_plan(tx, plan), version)
        archived = plans_service.archive_version(tx, found.id)
        return VersionOut.of(plans_service.detail(tx, archived))

    return edge.write(run)


routers: list[APIRouter] = [features, plans]
