"""Per-database caches of the ingestion hot path.

- **Meters**: compiled definitions, keyed by the catalog's definition marker (highest
  ``definition_seq`` and newest meter id). Every ingesting transaction reads the marker (one
  index-only query) and reloads the definitions when it moved, inside the same transaction, so
  an event is stamped with exactly the set of meters that counted it.
- **Customers** (SQLite only): ``external_id → id``. Only hits are cached: customers are never
  deleted and their ``external_id`` never changes, so a hit cannot go stale, and a miss is
  always asked again (a customer created after its events were dead-lettered is found on
  replay). PostgreSQL needs the lookup anyway, because it is also the row lock that orders
  ingestion against invoicing (see ``store.lock_customers``).

Caches hang off the SQLAlchemy engine (weakly), so two databases in one process never share
one.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from tallybook.catalog import meters as catalog_meters
from tallybook.db import Tx
from tallybook.metering.limits import CUSTOMER_CACHE_SIZE_MAX
from tallybook.metering.matching import CompiledMeter, compile_meter


@dataclass(frozen=True, slots=True)
class MeterSet:
    marker: tuple[int, str | None]
    #: The stamp for events counted with this set.
    definition_seq_max: int
    by_type: dict[str, tuple[CompiledMeter, ...]]
    by_id: dict[str, CompiledMeter]


@dataclass
class EngineCaches:
    lock: threading.Lock = field(default_factory=threading.Lock)
    meters: MeterSet | None = None
    customers: dict[str, str] = field(default_factory=dict)

    def remember_customers(self, found: dict[str, str]) -> None:
        with self.lock:
            if len(self.customers) + len(found) > CUSTOMER_CACHE_SIZE_MAX:
                self.customers.clear()
            self.customers.update(found)


_by_engine: weakref.WeakKeyDictionary[Engine, EngineCaches] = weakref.WeakKeyDictionary()
_registry_lock = threading.Lock()


def caches_for(tx: Tx) -> EngineCaches:
    engine = tx.session.get_bind()
    assert isinstance(engine, Engine)
    caches = _by_engine.get(engine)
    if caches is None:
        with _registry_lock:
            caches = _by_engine.setdefault(engine, EngineCaches())
    return caches


def build_meter_set(meters: list[CompiledMeter], marker: tuple[int, str | None]) -> MeterSet:
    by_type: dict[str, list[CompiledMeter]] = {}
    for meter in meters:
        by_type.setdefault(meter.event_type, []).append(meter)
    return MeterSet(
        marker=marker,
        definition_seq_max=max((m.definition_seq for m in meters), default=0),
        by_type={event_type: tuple(items) for event_type, items in by_type.items()},
        by_id={m.id: m for m in meters},
    )


def current_meters(tx: Tx) -> MeterSet:
    """The meters as of this transaction (reloaded when the catalog moved)."""
    caches = caches_for(tx)
    marker = catalog_meters.definition_marker(tx)
    cached = caches.meters
    if cached is not None and cached.marker == marker:
        return cached
    rows = catalog_meters.all_meters(tx)
    compiled = [compile_meter(row) for row in rows]
    # Derive the marker from the rows actually loaded: a meter defined between the two reads
    # is then both counted and covered by the stamp.
    loaded_marker = (
        max((m.definition_seq for m in rows), default=0),
        max((m.id for m in rows), default=None),
    )
    meter_set = build_meter_set(compiled, loaded_marker)
    with caches.lock:
        caches.meters = meter_set
    return meter_set


def clear_all() -> None:
    """Forget every cache (tests that rewrite tables underneath)."""
    with _registry_lock:
        _by_engine.clear()
