"""The entitlement check's PostgreSQL hot path: one statement, one round trip, no ORM.

The statement reads, in one snapshot: the customer (by id or external id), the feature (by id
or key), the customer's subscriptions with their stored current periods, the live override,
open reservations, whether usage grants or a spend limit exist, and the usage of the window
most likely to be the answer's (the current period of the oldest subscription in good
standing whose plan grants the feature): the rollups' sum, max and min over the window's
full hours, plus the raw events of its two partial edge hours, exactly as
``metering.usage_total`` reads them. It runs on a pooled connection switched to autocommit for
the statement (no BEGIN/ROLLBACK round trips), restored before the connection goes back.

Python then resolves the entitlement with the same pure rules as every other path. When the
guessed window or meter is not the answer's, a second statement reads usage for the right
one. Anything uncommon answers through the portable path (``check.evaluate`` in a read
transaction) instead: a period the subscription job has not opened yet, usage grants (their
balances are the ledger's), a spend limit (priced by rating), a meter still backfilling or one
aggregating ``latest``/``unique_count``, a plan version not cached yet. Tests run the same
scenarios through both paths.

This module reads other domains' tables (customers, catalog, subscriptions, metering) for
speed; their shapes are part of what the agreement tests pin down.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final

from tallybook.catalog.domain import FeatureType, LimitEnforcement
from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Database
from tallybook.db.hot import HotReads
from tallybook.entitlements import catalog_cache
from tallybook.entitlements.catalog_cache import MeterFacts
from tallybook.entitlements.domain import (
    ENTITLED_STATUSES,
    ZERO,
    CheckResult,
    Definition,
    FeatureInfo,
    OverrideFacts,
    PlanFacts,
    Policies,
    SubscriptionFacts,
    decide,
    resolve,
)
from tallybook.entitlements.errors import EntitlementCode
from tallybook.kit.errors import InvalidRequest
from tallybook.kit.quantity import normalize_quantity
from tallybook.metering.aggregate import Accumulator
from tallybook.metering.cloudevents import Rejection, decode_data
from tallybook.observability.metrics import histogram

if TYPE_CHECKING:
    from tallybook.entitlements.mirror import Mirror

FAST_AGGREGATIONS: Final = frozenset(
    {Aggregation.SUM, Aggregation.COUNT, Aggregation.MAX, Aggregation.MIN}
)
_ENTITLED_SQL: Final = "('trialing', 'active', 'past_due', 'unpaid')"

#: Usage of one meter for one customer over [ws, we): rollups of the full hours, raw events of
#: the partial edge hours (the same split as metering.usage.collect). Each edge is its own
#: range on the (customer, type, time) index: one OR of both ranges read every event the
#: customer ever sent of that type.
_USAGE_PARTS: Final = """
    (SELECT ARRAY[sum(r.quantity), max(r.quantity), min(r.quantity)]::text[]
       FROM metering_rollups r
      WHERE r.meter_id = {meter} AND r.customer_id = {customer}
        AND r.window_start >= {h1} AND r.window_start < {h2}) AS rollup,
    (SELECT array_agg(edge.data) FROM (
        SELECT e.data FROM metering_events e
         WHERE e.customer_id = {customer} AND e.type = {event_type}
           AND e.time >= {ws} AND e.time < CASE WHEN {h1} < {h2} THEN {h1} ELSE {we} END
        UNION ALL
        SELECT e.data FROM metering_events e
         WHERE e.customer_id = {customer} AND e.type = {event_type}
           AND e.time >= CASE WHEN {h1} < {h2} THEN {h2} ELSE {we} END AND e.time < {we}
    ) edge) AS raw
"""


def _compact(sql: str) -> str:
    """``sql`` with its whitespace collapsed (it holds no literal with two spaces)."""
    return " ".join(sql.split())


_HOURS: Final = """
    date_trunc('hour', {ws}) + CASE WHEN date_trunc('hour', {ws}) = {ws}
        THEN interval '0' ELSE interval '1 hour' END AS h1,
    date_trunc('hour', {we}) AS h2
"""

#: Every table this statement reads must be announced by the triggers of migration
#: ``0011_entitlement_notices`` (``entitlements.mirror`` keeps its rows; ADR 0003).
#:
#: ``s`` is materialized so the customer's subscriptions are read by the customer index
#: whatever the statistics say: joined from the plan's side, every subscription of the plan
#: version was read per check. Whitespace is collapsed so psycopg's parse cache (statements of
#: at most 4,096 characters) keeps it.
_STATE_HEAD: Final = (
    """
WITH c AS (
    SELECT id FROM customers WHERE id = %(customer)s
    UNION ALL
    SELECT id FROM customers WHERE external_id = %(customer)s
    LIMIT 1
), f AS (
    SELECT id, key, type, meter_id FROM catalog_features WHERE id = %(feature)s
    UNION ALL
    SELECT id, key, type, meter_id FROM catalog_features WHERE key = %(feature)s
    LIMIT 1
), s AS MATERIALIZED (
    SELECT id, status, plan_version_id, created_at, current_period_start_at,
           current_period_end_at
      FROM subscriptions
     WHERE customer_id = (SELECT id FROM c) AND status <> 'canceled'
), w AS (
    SELECT s.current_period_start_at AS ws, s.current_period_end_at AS we,
           m.id AS meter_id, m.event_type, m.aggregation, m.backfilled_at IS NOT NULL AS ready,
    """
    + _HOURS.format(ws="s.current_period_start_at", we="s.current_period_end_at")
    + f"""
      FROM s
      JOIN catalog_entitlements ce ON ce.plan_version_id = s.plan_version_id
      JOIN f ON ce.feature_id = f.id
      JOIN meters m ON m.id = ce.meter_id
     WHERE s.status IN {_ENTITLED_SQL}
       AND s.current_period_start_at <= %(now)s AND %(now)s < s.current_period_end_at
     ORDER BY s.created_at, s.id
     LIMIT 1
)
SELECT c.id, f.id, f.key, f.type, f.meter_id,
    sa.ids, sa.statuses, sa.versions, sa.created, sa.starts, sa.ends,
    ov.id, ov.enabled, ov.config, ov.limit_quantity::text, ov.unlimited, ov.enforcement,
    ov.expires_at,
    (SELECT sum(rs.quantity)::text FROM entitlements_reservations rs
      WHERE rs.customer_id = c.id AND rs.feature_id = f.id AND rs.status = 'open'
        AND rs.expires_at > %(now)s) AS reserved,
    EXISTS (SELECT 1 FROM grants g JOIN meters gm ON gm.id = f.meter_id
             WHERE g.customer_id = c.id AND g.asset = 'U_' || upper(gm.key)
               AND g.status = 'active' AND g.effective_at <= %(now)s
               AND (g.expires_at IS NULL OR g.expires_at > %(now)s)) AS usage_grants,
    EXISTS (SELECT 1 FROM entitlements_spend_limits sl WHERE sl.customer_id = c.id)
        AS spend_limit,
    w.ws, w.we, w.meter_id, w.event_type, w.aggregation, w.ready,
    """
    + _USAGE_PARTS.format(
        meter="w.meter_id",
        customer="c.id",
        h1="w.h1",
        h2="w.h2",
        ws="w.ws",
        we="w.we",
        event_type="w.event_type",
    )
)
_STATE_TAIL: Final = """
FROM c
LEFT JOIN f ON true
LEFT JOIN w ON true
LEFT JOIN (
    SELECT array_agg(s.id ORDER BY s.created_at, s.id) AS ids,
           array_agg(s.status ORDER BY s.created_at, s.id) AS statuses,
           array_agg(s.plan_version_id ORDER BY s.created_at, s.id) AS versions,
           array_agg(s.created_at ORDER BY s.created_at, s.id) AS created,
           array_agg(s.current_period_start_at ORDER BY s.created_at, s.id) AS starts,
           array_agg(s.current_period_end_at ORDER BY s.created_at, s.id) AS ends
      FROM s
) sa ON true
LEFT JOIN LATERAL (
    SELECT o.id, o.enabled, o.config, o.limit_quantity, o.unlimited, o.enforcement, o.expires_at
      FROM entitlements_overrides o
     WHERE o.customer_id = c.id AND o.feature_id = f.id AND o.status = 'active'
       AND o.starts_at <= %(now)s AND (o.expires_at IS NULL OR o.expires_at > %(now)s)
     ORDER BY o.created_at DESC, o.id DESC
     LIMIT 1
) ov ON true
"""

#: When the row stops holding by the clock alone (the mirror keeps it until then): the
#: first start or end after now of a subscription's period, an override, an open
#: reservation's expiry, a usage grant.
_VALID_UNTIL: Final = """
    LEAST(
        (SELECT min(b) FROM unnest(sa.starts || sa.ends) b WHERE b > %(now)s),
        (SELECT min(CASE WHEN o.starts_at > %(now)s THEN o.starts_at
                         WHEN o.expires_at > %(now)s THEN o.expires_at END)
           FROM entitlements_overrides o
          WHERE o.customer_id = c.id AND o.feature_id = f.id AND o.status = 'active'),
        (SELECT min(rs.expires_at) FROM entitlements_reservations rs
          WHERE rs.customer_id = c.id AND rs.feature_id = f.id AND rs.status = 'open'
            AND rs.expires_at > %(now)s),
        (SELECT min(CASE WHEN g.effective_at > %(now)s THEN g.effective_at
                         WHEN g.expires_at > %(now)s THEN g.expires_at END)
           FROM grants g JOIN meters gm ON gm.id = f.meter_id
          WHERE g.customer_id = c.id AND g.asset = 'U_' || upper(gm.key)
            AND g.status = 'active'))
"""
STATE_SQL: Final = _compact(_STATE_HEAD + _STATE_TAIL)
#: The state statement as the hot-read pool runs it: ``STATE_SQL`` with ``valid_until``
#: last (longer than psycopg's parse cache takes, which the pool does not use).
HOT_STATE_SQL: Final = _compact(_STATE_HEAD + ", " + _VALID_UNTIL + _STATE_TAIL)

#: The state statement for many checks at once (``db.hot.Batcher``): one row per check found,
#: led by the check's position in the arrays. The same statement as ``STATE_SQL``, each check's
#: customer, feature and instant taken from the arrays.
STATE_BATCH_SQL: Final = (
    "SELECT q.n, x.* FROM unnest(%(customer)s::text[], %(feature)s::text[],"
    " %(now)s::timestamptz[]) WITH ORDINALITY AS q(customer, feature, now, n)"
    " CROSS JOIN LATERAL ("
    + HOT_STATE_SQL.replace("%(customer)s", "q.customer")
    .replace("%(feature)s", "q.feature")
    .replace("%(now)s", "q.now")
    + ") x"
)

USAGE_SQL: Final = _compact(
    "SELECT "
    + _USAGE_PARTS.format(
        meter="%(meter)s",
        customer="%(customer)s",
        h1="h.h1",
        h2="h.h2",
        ws="%(ws)s",
        we="%(we)s",
        event_type="%(event_type)s",
    )
    + " FROM (SELECT "
    + _HOURS.format(ws="%(ws)s::timestamptz", we="%(we)s::timestamptz")
    + ") h"
)


_BATCH_SIZES: Final = histogram(
    "tallybook_entitlements_check_batch_size",
    "Checks answered by one state statement on the API's event loop (batched under load)",
    buckets=(1, 2, 4, 8, 16, 32, 64),
)


class NeedsPortable(Exception):
    """The hot path does not cover this case; answer through ``check.evaluate``."""


#: The state statement's row (indexed by position, in the order of its select list).
_Row = tuple[Any, ...]
#: Positions in that row read by name here and by ``entitlements.mirror``.
ROW_CUSTOMER_ID: Final = 0
ROW_FEATURE_ID: Final = 1
ROW_WINDOW_START: Final = 21
ROW_WINDOW_END: Final = 22
ROW_WINDOW_METER: Final = 23
ROW_ROLLUP: Final = 27
#: ``HOT_STATE_SQL`` only.
ROW_VALID_UNTIL: Final = 29


def _run(db: Database, sql: str, params: dict[str, Any]) -> tuple[Any, ...] | None:
    """One statement on a pooled connection in autocommit (restored before it goes back)."""
    pooled = db.engine.raw_connection()
    try:
        driver = pooled.driver_connection
        assert driver is not None
        driver.autocommit = True
        try:
            with driver.cursor() as cursor:
                cursor.execute(sql, params)
                row = cursor.fetchone()
        finally:
            driver.autocommit = False
        return tuple(row) if row is not None else None
    finally:
        pooled.close()


def _usage(meter: MeterFacts, rollup: list[str | None] | None, raw: list[str] | None) -> Decimal:
    """Rollups plus edge events, combined as metering combines them."""
    aggregation = meter.aggregation
    accumulator = Accumulator(aggregation, meter.compiled.dim_names, None)
    if rollup is not None:
        total, high, low = rollup
        value = (
            total
            if aggregation in (Aggregation.SUM, Aggregation.COUNT)
            else (high if aggregation is Aggregation.MAX else low)
        )
        if value is not None:
            accumulator.add_rollup("", Decimal(value))
    compiled = meter.compiled
    epoch = datetime.min
    for text in raw or ():
        data = decode_data(text)
        if compiled.filters and not compiled.matches(data):
            continue
        contribution = compiled.contribution(data)
        if isinstance(contribution, Rejection):
            continue
        accumulator.add_event(contribution.dims_key, contribution.value, None, epoch, 0)
    return accumulator.total()


def _subscriptions(row: _Row, now: datetime) -> list[SubscriptionFacts]:
    ids = row[5] or []
    facts = []
    for index, subscription_id in enumerate(ids):
        status, start, end = row[6][index], row[9][index], row[10][index]
        if status in ENTITLED_STATUSES and not (
            start is not None and end is not None and start <= now < end
        ):
            # The job has not opened its current period yet: project it the portable way.
            raise NeedsPortable
        facts.append(
            SubscriptionFacts(
                id=subscription_id,
                status=status,
                plan_version_id=row[7][index],
                created_at=row[8][index],
                period_start=start,
                period_end=end,
            )
        )
    return facts


def _override(row: _Row) -> OverrideFacts | None:
    if row[11] is None:
        return None
    return OverrideFacts(
        id=row[11],
        enabled=row[12],
        config=row[13],
        limit=Decimal(row[14]) if row[14] is not None else None,
        unlimited=bool(row[15]),
        enforcement=LimitEnforcement(row[16]) if row[16] else None,
        expires_at=row[17],
    )


def _plans(subscriptions: list[SubscriptionFacts]) -> list[tuple[SubscriptionFacts, PlanFacts]]:
    pairs = []
    for subscription in subscriptions:
        plan = catalog_cache.cached_plan_facts(subscription.plan_version_id)
        if plan is None:
            raise NeedsPortable
        pairs.append((subscription, plan))
    return pairs


def _meter_of(
    feature: FeatureInfo,
    definition: Definition,
    pairs: list[tuple[SubscriptionFacts, PlanFacts]],
) -> str:
    for subscription, plan in pairs:
        if subscription.id in definition.subscription_ids:
            entitlement = plan.entitlements.get(feature.id)
            if entitlement is not None and entitlement.meter_id:
                return entitlement.meter_id
    if feature.meter_id is None:
        raise NeedsPortable
    return feature.meter_id


#: One statement for the driver to run: its text and parameters; the driver sends back its
#: first row.
Statement = tuple[str, dict[str, Any]]
Steps = Generator[Statement, "tuple[Any, ...] | None", CheckResult]


def steps(
    now: datetime,
    customer: str,
    feature: str,
    quantity: Decimal | None,
    policies: Policies,
) -> Steps:
    """The check as a sequence of statements: yields each statement, receives its first row,
    returns the answer (or raises :class:`NeedsPortable`, or the portable path's named errors
    for an unknown customer or feature). Free of I/O, so the thread path (:func:`check`) and
    the API's event loop (:func:`check_async`) run the very same logic."""
    found = yield STATE_SQL, {"customer": customer, "feature": feature, "now": now}
    if found is None:
        raise InvalidRequest(
            EntitlementCode.CUSTOMER_NOT_FOUND,
            f"no customer with id or external_id '{customer}'",
            param="customer",
            http_status=404,
        )
    row: _Row = found
    if row[ROW_FEATURE_ID] is None:
        raise InvalidRequest(
            EntitlementCode.FEATURE_NOT_FOUND,
            f"no feature with id or key '{feature}'",
            param="feature",
            http_status=404,
        )
    info = FeatureInfo(row[1], row[2], FeatureType(row[3]), row[4])
    customer_id: str = row[ROW_CUSTOMER_ID]
    pairs = _plans(_subscriptions(row, now))
    definition = resolve(
        info, override=_override(row), subscriptions=pairs, policies=policies, now=now
    )
    if info.type is not FeatureType.METERED or not definition.needs_usage:
        return decide(customer_id, info, definition, quantity=quantity)
    if row[20] or (row[19] and definition.limit is not None):
        raise NeedsPortable  # a spend limit, or usage grants raising the limit
    meter_id = _meter_of(info, definition, pairs)
    meter = catalog_cache.cached_meter(meter_id)
    if meter is None or meter.aggregation not in FAST_AGGREGATIONS or not meter.backfilled:
        raise NeedsPortable
    assert definition.window is not None
    window_read = (row[ROW_WINDOW_START], row[ROW_WINDOW_END], row[ROW_WINDOW_METER])
    if window_read == (*definition.window, meter_id) and row[26]:
        rollup, raw = row[ROW_ROLLUP], row[ROW_ROLLUP + 1]
    else:
        window_start, window_end = definition.window
        if window_end - window_start > timedelta(days=400):
            raise NeedsPortable
        usage_row = yield (
            USAGE_SQL,
            {
                "meter": meter_id,
                "customer": customer_id,
                "ws": window_start,
                "we": window_end,
                "event_type": meter.event_type,
            },
        )
        assert usage_row is not None
        rollup, raw = usage_row
    used = normalize_quantity(_usage(meter, rollup, raw))
    reserved = Decimal(row[18]) if row[18] is not None else ZERO
    return decide(
        customer_id,
        info,
        definition,
        used=used,
        reserved=normalize_quantity(reserved),
        granted=ZERO,
        quantity=quantity,
    )


def check(
    db: Database,
    customer: str,
    feature: str,
    quantity: Decimal | None,
    policies: Policies,
) -> CheckResult:
    """The check on this thread, through the engine's pool, or :class:`NeedsPortable`."""
    plan = steps(db.clock.now(), customer, feature, quantity, policies)
    statement = next(plan)
    while True:
        try:
            statement = plan.send(_run(db, *statement))
        except StopIteration as done:
            result: CheckResult = done.value
            return result


async def check_async(
    hot: HotReads,
    now: datetime,
    customer: str,
    feature: str,
    quantity: Decimal | None,
    policies: Policies,
    mirror: Mirror | None = None,
) -> CheckResult:
    """The check on the event loop, through the hot-read pool, or :class:`NeedsPortable`.
    The state statement goes through the pool's batcher: concurrent checks share one. With a
    ``mirror`` (``entitlements.mirror``), a state row it keeps current stands in for the
    statement."""
    plan = steps(now, customer, feature, quantity, policies)
    statement = next(plan)
    while True:
        sql, params = statement
        if sql is STATE_SQL:
            row = await _state(hot, mirror, params, customer, feature, now)
        else:
            row = await hot.fetchone(sql, params)
        try:
            statement = plan.send(row)
        except StopIteration as done:
            result: CheckResult = done.value
            return result


async def _state(
    hot: HotReads,
    mirror: Mirror | None,
    params: dict[str, Any],
    customer: str,
    feature: str,
    now: datetime,
) -> tuple[Any, ...] | None:
    """The state statement's row: kept by the mirror, else read (and offered to it)."""
    if mirror is not None:
        kept = await mirror.state(customer, feature, now)
        if kept is not None:
            return kept
    states = hot.batched(STATE_BATCH_SQL, single_sql=HOT_STATE_SQL, observe=_BATCH_SIZES.observe)
    if mirror is None:
        return await states.fetchone(params)
    token = mirror.reading()
    row = None
    try:
        row = await states.fetchone(params)
    finally:
        mirror.read(token, customer, feature, now, row)
    return row
