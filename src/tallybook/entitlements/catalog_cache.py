"""Process caches of things that never change, for the check's hot path.

- **Plan facts** per plan version: its entitlements by feature and whether it is free. Only
  published (or archived) versions are cached: they are immutable (database triggers), and a
  subscription is never on a draft. Subscriptions themselves are never cached: a status
  change (payments moving one to unpaid and back) must count on the very next check.
- **Features** by id: a feature's type and meter never change.
- **Meters** by id, compiled for matching raw events, once their backfill is done (the one
  field of a meter that changes).

Keys are ids, which are never reused, so one process can serve several databases (tests).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Final

from tallybook.catalog import plans as catalog_plans
from tallybook.catalog import repository as catalog_repository
from tallybook.catalog.domain import FeatureType, VersionTerms
from tallybook.catalog.meter_models import Aggregation, Meter
from tallybook.catalog.pricing import PriceType
from tallybook.db import Tx
from tallybook.entitlements.domain import FeatureInfo, PlanFacts
from tallybook.metering import service as metering
from tallybook.metering.matching import CompiledMeter, compile_meter

CACHE_SIZE_MAX: Final = 20_000
_IMMUTABLE_STATUSES: Final = frozenset({"published", "archived"})

_lock = threading.Lock()
_plans: dict[str, PlanFacts] = {}
_features: dict[str, FeatureInfo] = {}
_meters: dict[str, MeterFacts] = {}


@dataclass(frozen=True, slots=True)
class MeterFacts:
    id: str
    key: str
    event_type: str
    aggregation: Aggregation
    backfilled: bool
    compiled: CompiledMeter


def _remember(cache: dict[str, object], key: str, value: object) -> None:
    with _lock:
        if len(cache) >= CACHE_SIZE_MAX:
            cache.clear()
        cache[key] = value


def is_free(terms: VersionTerms) -> bool:
    """No recurring fee above zero and no usage price: nothing to collect."""
    for price in terms.prices:
        if price.type == PriceType.USAGE:
            return False
        if (price.amount_minor or 0) > 0:
            return False
    return True


def facts_of(terms: VersionTerms) -> PlanFacts:
    return PlanFacts(
        plan_version_id=terms.plan_version_id,
        is_free=is_free(terms),
        entitlements={e.feature_id: e for e in terms.entitlements},
        currency=terms.currency,
    )


def plan_facts(tx: Tx, plan_version_id: str) -> PlanFacts:
    cached = _plans.get(plan_version_id)
    if cached is not None:
        return cached
    terms = catalog_plans.version_terms(tx, plan_version_id)
    facts = facts_of(terms)
    if terms.status in _IMMUTABLE_STATUSES:
        _remember(_plans, plan_version_id, facts)  # type: ignore[arg-type]
    return facts


def cached_plan_facts(plan_version_id: str) -> PlanFacts | None:
    return _plans.get(plan_version_id)


def feature_info(tx: Tx, ref: str) -> FeatureInfo | None:
    """A feature by id or key (keys are looked up every time: only ids are cached)."""
    cached = _features.get(ref)
    if cached is not None:
        return cached
    row = catalog_repository.get_feature(tx, ref) or catalog_repository.get_feature_by_key(tx, ref)
    if row is None:
        return None
    info = FeatureInfo(row.id, row.key, FeatureType(row.type), row.meter_id)
    _remember(_features, row.id, info)  # type: ignore[arg-type]
    return info


def remember_feature(info: FeatureInfo) -> None:
    _remember(_features, info.id, info)  # type: ignore[arg-type]


def meter_of(meter: Meter) -> MeterFacts:
    return MeterFacts(
        id=meter.id,
        key=meter.key,
        event_type=meter.event_type,
        aggregation=Aggregation(meter.aggregation),
        backfilled=meter.backfilled_at is not None,
        compiled=compile_meter(meter),
    )


def meter_facts(tx: Tx, meter_id: str) -> MeterFacts:
    cached = _meters.get(meter_id)
    if cached is not None:
        return cached
    facts = meter_of(metering.get_meter(tx, meter_id))
    if facts.backfilled:
        _remember(_meters, meter_id, facts)  # type: ignore[arg-type]
    return facts


def cached_meter(meter_id: str) -> MeterFacts | None:
    return _meters.get(meter_id)


def clear() -> None:
    with _lock:
        _plans.clear()
        _features.clear()
        _meters.clear()
