"""Usage is exact: rollups plus raw edges equal a direct aggregation over the raw events, for
every aggregation, arbitrary instants, windows and batch splits (hypothesis), on both
backends."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tallybook.catalog.meter_models import Aggregation
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.kit.errors import InvalidRequest
from tallybook.metering import service
from tests.fixtures.factories import create_customer, create_meter
from tests.metering.helpers import event, ingest

SPAN_START = utc(2026, 10, 29)
SPAN_END = utc(2026, 11, 1)
_example = itertools.count()


@dataclass(frozen=True)
class Stored:
    seq: int
    customer: int
    time: datetime
    value: Decimal
    model: str
    user: str


def reference(aggregation: str, events: list[Stored], start: datetime, end: datetime) -> Decimal:
    chosen = [e for e in events if start <= e.time < end]
    if aggregation == "count":
        return Decimal(len(chosen))
    if aggregation == "unique_count":
        return Decimal(len({e.user for e in chosen}))
    if not chosen:
        return Decimal(0)
    if aggregation == "sum":
        return sum((e.value for e in chosen), Decimal(0))
    if aggregation == "max":
        return max(e.value for e in chosen)
    if aggregation == "min":
        return min(e.value for e in chosen)
    return max(chosen, key=lambda e: (e.time, e.seq)).value


AGGREGATIONS = ("count", "sum", "max", "min", "latest", "unique_count")


def define_meters(db: Database, suffix: str, event_type: str) -> dict[str, Any]:
    with db.transaction() as tx:
        return {
            aggregation: create_meter(
                tx,
                key=f"{aggregation}_{suffix}",
                event_type=event_type,
                aggregation=aggregation,
                value_path="user" if aggregation == "unique_count" else "amount",
                group_by={"model": "model"},
            )
            for aggregation in AGGREGATIONS
        }


def usage(
    db: Database, meter_id: str, customer_id: str, start: datetime, end: datetime, **kw: Any
) -> Any:
    with db.read() as tx:
        return service.usage_total(
            tx, meter_id=meter_id, customer_id=customer_id, start=start, end=end, **kw
        )


raw_event = st.tuples(
    st.integers(min_value=0, max_value=1),  # customer
    st.integers(min_value=0, max_value=3 * 24 * 3600 - 1),  # second in the span
    st.one_of(
        st.integers(min_value=-50, max_value=1000).map(Decimal),
        st.decimals(min_value=Decimal("-10"), max_value=Decimal("100"), places=3),
    ),
    st.sampled_from(["a", "b", "c"]),
    st.sampled_from(["u1", "u2", "u3", "u4"]),
)


@st.composite
def streams(draw: Any) -> tuple[list[Any], list[int], list[tuple[int, int]]]:
    uniques = draw(st.lists(raw_event, min_size=1, max_size=40))
    # Resend some events (duplicates) anywhere in the stream.
    resends = draw(st.lists(st.integers(min_value=0, max_value=len(uniques) - 1), max_size=10))
    order = list(range(len(uniques))) + resends
    order = draw(st.permutations(order))
    cuts = sorted(draw(st.lists(st.integers(min_value=1, max_value=len(order)), max_size=4)))
    windows = draw(
        st.lists(
            st.tuples(
                st.integers(min_value=0, max_value=3 * 24 * 3600),
                st.integers(min_value=1, max_value=3 * 24 * 3600),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return [(i, uniques[i]) for i in order], cuts, windows


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams())
def test_rollups_equal_raw_aggregation(db: Database, stream: Any) -> None:
    order, cuts, windows = stream
    n = next(_example)
    event_type = f"prop.{n}"
    meters = define_meters(db, f"p{n}", event_type)
    with db.transaction() as tx:
        customers = [create_customer(tx, external_id=f"prop-{n}-{i}") for i in range(2)]
    batches = [order[a:b] for a, b in itertools.pairwise([0, *cuts, len(order)]) if a < b]
    stored: list[Stored] = []
    for batch in batches:
        result = ingest(
            db,
            [
                event(
                    f"e{index}",
                    source=f"prop-{n}",
                    event_type=event_type,
                    subject=f"prop-{n}-{c}",
                    time=SPAN_START + timedelta(seconds=second),
                    data={"amount": value, "model": model, "user": user},
                )
                for index, (c, second, value, model, user) in batch
            ],
        )
        for (_index, (c, second, value, model, user)), outcome in zip(
            batch, result.outcomes, strict=True
        ):
            assert outcome.status in ("accepted", "duplicate"), outcome
            if outcome.status == "accepted":
                assert outcome.seq is not None
                stored.append(
                    Stored(
                        outcome.seq, c, SPAN_START + timedelta(seconds=second), value, model, user
                    )
                )
    assert len(stored) == len({index for index, _ in order})
    for offset, length in windows:
        start = SPAN_START + timedelta(seconds=offset)
        end = start + timedelta(seconds=length)
        for c, customer in enumerate(customers):
            mine = [e for e in stored if e.customer == c]
            for aggregation, meter in meters.items():
                expected = reference(aggregation, mine, start, end)
                assert usage(db, meter.id, customer.id, start, end) == expected, (
                    aggregation,
                    start,
                    end,
                )
                grouped = usage(db, meter.id, customer.id, start, end, group_by=True)
                expected_groups = {
                    (("model", model),): reference(
                        aggregation, [e for e in mine if e.model == model], start, end
                    )
                    for model in sorted({e.model for e in mine if start <= e.time < end})
                }
                assert grouped == expected_groups, (aggregation, start, end)
    # Windows: the per-day series of every aggregation agrees with the reference too.
    customer = customers[0]
    mine = [e for e in stored if e.customer == 0]
    start, end = SPAN_START + timedelta(hours=5, minutes=7), SPAN_END - timedelta(minutes=13)
    for aggregation, meter in meters.items():
        with db.read() as tx:
            series = service.usage_series(
                tx, meter_id=meter.id, customer_id=customer.id, start=start, end=end, window="day"
            )
        for window in series.windows:
            assert window.value == reference(aggregation, mine, window.start, window.end)
        assert series.total == reference(aggregation, mine, start, end)


class TestSemantics:
    @pytest.fixture
    def world(self, db: Database) -> dict[str, Any]:
        meters = define_meters(db, "s", "llm.request")
        with db.transaction() as tx:
            customer = create_customer(tx, external_id="acme")
        rows = [
            ("e1", utc(2026, 10, 30, 10, 15), 5, "a", "u1"),
            ("e2", utc(2026, 10, 30, 10, 45), 7, "b", "u2"),
            ("e3", utc(2026, 10, 30, 11, 5), 3, "a", "u1"),
            ("e4", utc(2026, 10, 31, 0, 0), 9, "b", "u3"),
            ("e5", utc(2026, 10, 31, 23, 59, 59), 1, "a", "u2"),
        ]
        ingest(
            db,
            [event(i, time=t, data={"amount": v, "model": m, "user": u}) for i, t, v, m, u in rows],
        )
        return {"meters": meters, "customer": customer}

    @pytest.mark.parametrize(
        ("aggregation", "expected"),
        [("count", 3), ("sum", 15), ("max", 7), ("min", 3), ("latest", 3), ("unique_count", 2)],
    )
    def test_partial_hours_are_exact(
        self, db: Database, world: dict[str, Any], aggregation: str, expected: int
    ) -> None:
        meter = world["meters"][aggregation]
        # 10:15:00 .. 11:05:00 inclusive of e1 and e3 (11:05 < 11:05:01), e2 in between.
        value = usage(
            db,
            meter.id,
            world["customer"].id,
            utc(2026, 10, 30, 10, 15),
            utc(2026, 10, 30, 11, 5, 1),
        )
        assert value == expected

    def test_unique_count_is_distinct_over_the_range(
        self, db: Database, world: dict[str, Any]
    ) -> None:
        meter = world["meters"]["unique_count"]
        # u1 twice and u2 twice across days: 3 distinct users, not the sum of daily counts.
        with db.read() as tx:
            series = service.usage_series(
                tx,
                meter_id=meter.id,
                customer_id=world["customer"].id,
                start=utc(2026, 10, 30),
                end=utc(2026, 11, 1),
                window="day",
            )
        assert [w.value for w in series.windows] == [2, 2]
        assert series.total == 3

    def test_group_by_subsets_and_errors(self, db: Database, world: dict[str, Any]) -> None:
        meter = world["meters"]["sum"]
        customer_id = world["customer"].id
        grouped = usage(
            db, meter.id, customer_id, utc(2026, 10, 30), utc(2026, 11, 1), group_by=["model"]
        )
        assert grouped == {(("model", "a"),): 9, (("model", "b"),): 16}
        with pytest.raises(InvalidRequest) as caught:
            usage(
                db, meter.id, customer_id, utc(2026, 10, 30), utc(2026, 11, 1), group_by=["region"]
            )
        assert (caught.value.code, caught.value.param) == ("usage_group_by_invalid", "group_by")

    def test_empty_ranges_are_zero(self, db: Database, world: dict[str, Any]) -> None:
        for meter in world["meters"].values():
            assert (
                usage(db, meter.id, world["customer"].id, utc(2026, 10, 1), utc(2026, 10, 2)) == 0
            )

    def test_bad_ranges(self, db: Database, world: dict[str, Any]) -> None:
        meter = world["meters"]["sum"]
        with pytest.raises(InvalidRequest) as caught:
            usage(db, meter.id, world["customer"].id, utc(2026, 10, 2), utc(2026, 10, 2))
        assert caught.value.code == "usage_range_invalid"
        with db.read() as tx, pytest.raises(InvalidRequest) as caught:
            service.usage_series(
                tx,
                meter_id=meter.id,
                customer_id=world["customer"].id,
                start=utc(2026, 1, 1),
                end=utc(2026, 12, 1),
                window="hour",
            )
        assert caught.value.code == "usage_too_many_windows"

    def test_month_windows_are_calendar_months(self, db: Database, world: dict[str, Any]) -> None:
        meter = world["meters"]["count"]
        with db.read() as tx:
            series = service.usage_series(
                tx,
                meter_id=meter.id,
                customer_id=world["customer"].id,
                start=utc(2026, 10, 15, 12),
                end=utc(2026, 11, 3),
                window="month",
            )
        assert [(w.start, w.end, w.value) for w in series.windows] == [
            (utc(2026, 10, 15, 12), utc(2026, 11, 1), 5),
            (utc(2026, 11, 1), utc(2026, 11, 3), 0),
        ]

    def test_explain_lists_the_counted_events(self, db: Database, world: dict[str, Any]) -> None:
        meter = world["meters"]["sum"]
        seen: list[str] = []
        cursor = None
        while True:
            with db.read() as tx:
                page = service.list_events(
                    tx,
                    meter_id=meter.id,
                    customer_id=world["customer"].id,
                    start=utc(2026, 10, 30),
                    end=utc(2026, 11, 1),
                    after=cursor,
                    limit=2,
                )
            seen += [e.event_id for e in page.data]
            assert sum(e.value or 0 for e in page.data) >= 0
            if not page.has_more:
                break
            cursor = page.next_cursor
        assert seen == ["e1", "e2", "e3", "e4", "e5"]


def test_aggregation_enum_is_covered() -> None:
    assert set(AGGREGATIONS) == {a.value for a in Aggregation}
