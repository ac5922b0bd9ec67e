"""Pure pieces: RFC 3339 parsing, the content hash, filter semantics, windows, the bulk
histogram observation, and the SQLite text formats the hot path writes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from sqlalchemy import text

from tallybook.catalog.meter_models import Meter
from tallybook.db import Database
from tallybook.kit.clock import utc
from tallybook.metering.aggregate import Window, windows_between
from tallybook.metering.cloudevents import (
    CheckedEvent,
    Rejection,
    check_envelope,
    content_hash,
    parse_time,
)
from tallybook.metering.ingest.raw import sqlite_time
from tallybook.metering.matching import compile_meter
from tallybook.metering.metrics import observe_many
from tests.metering.helpers import event

NOW = utc(2026, 11, 1, 9)


@pytest.mark.parametrize(
    ("text_value", "expected"),
    [
        ("2026-11-01T09:00:00Z", utc(2026, 11, 1, 9)),
        ("2026-11-01t09:00:00z", utc(2026, 11, 1, 9)),
        ("2026-11-01T10:30:00+01:30", utc(2026, 11, 1, 9)),
        ("2026-11-01T09:00:00.123456789Z", datetime(2026, 11, 1, 9, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-01T09:00:00", None),
        ("2026-11-01", None),
        ("2026-W44-7T09:00:00Z", None),
        ("2026-13-01T09:00:00Z", None),
        (20261101, None),
    ],
)
def test_rfc3339(text_value: Any, expected: datetime | None) -> None:
    assert parse_time(text_value) == expected


def checked(raw: Any) -> CheckedEvent:
    result = check_envelope(raw, received_at=NOW)
    assert isinstance(result, CheckedEvent), result
    return result


class TestContent:
    def test_hash_is_the_documented_function(self) -> None:
        raw = event("e1", time="2026-11-01T08:00:00Z", data={"b": 1, "a": Decimal("2.50")})
        got = checked(raw)
        expected = content_hash("llm.request", "acme", utc(2026, 11, 1, 8), b'{"a":2.5,"b":1}')
        assert got.content_hash == expected
        assert got.data_json == '{"a":2.50,"b":1}'

    def test_same_content_written_differently(self) -> None:
        a = checked(event("e1", time="2026-11-01T08:00:00Z", data={"n": 1, "m": {"x": [1, 2]}}))
        b = checked(
            event(
                "e1",
                time="2026-11-01T09:00:00+01:00",
                data={"m": {"x": [Decimal("1.0"), 2]}, "n": Decimal("1.000")},
            )
        )
        assert a.content_hash == b.content_hash

    @pytest.mark.parametrize(
        "other",
        [
            event("e1", time="2026-11-01T08:00:01Z", data={"n": 1}),
            event("e1", time="2026-11-01T08:00:00Z", data={"n": "1"}),
            event("e1", time="2026-11-01T08:00:00Z", data={"n": 1}, subject="other"),
            event("e1", time="2026-11-01T08:00:00Z", data={"n": 1}, event_type="other"),
            event("e1", data={"n": 1}),
            event("e1", time="2026-11-01T08:00:00Z"),
        ],
    )
    def test_different_content(self, other: dict[str, Any]) -> None:
        base = checked(event("e1", time="2026-11-01T08:00:00Z", data={"n": 1}))
        assert checked(other).content_hash != base.content_hash

    def test_extension_attributes_are_not_content(self) -> None:
        base = checked(event("e1", time="2026-11-01T08:00:00Z", data={"n": 1}))
        extended = checked(event("e1", time="2026-11-01T08:00:00Z", data={"n": 1}, traceparent="x"))
        assert extended.content_hash == base.content_hash

    def test_subject_rejection_names_the_customer_field(self) -> None:
        rejection = check_envelope(event("e1", subject=""), received_at=NOW)
        assert isinstance(rejection, Rejection)
        assert (rejection.code, rejection.param) == ("field_invalid", "subject")


def meter(**fields: Any) -> Any:
    base: dict[str, Any] = {
        "id": "mtr_x",
        "key": "m",
        "version": 1,
        "name": "m",
        "event_type": "t",
        "aggregation": "sum",
        "value_path": "n",
        "filters": [],
        "group_by": {},
        "unit": "u",
        "definition_seq": 1,
    }
    base.update(fields)
    return compile_meter(Meter(**base))


class TestFilters:
    @pytest.mark.parametrize(
        ("op", "value", "data", "passes"),
        [
            ("eq", "pro", {"tier": "pro"}, True),
            ("eq", "pro", {"tier": "free"}, False),
            ("eq", "pro", {}, False),
            ("ne", "pro", {}, True),
            ("eq", 1, {"tier": Decimal("1.0")}, True),
            ("eq", 1, {"tier": "1"}, False),
            ("eq", 1, {"tier": True}, False),
            ("eq", True, {"tier": 1}, False),
            ("eq", True, {"tier": True}, True),
            ("in", ["a", "b"], {"tier": "b"}, True),
            ("not_in", ["a", "b"], {"tier": "c"}, True),
            ("not_in", ["a", "b"], {}, True),
            ("gt", "10", {"tier": 11}, True),
            ("gt", "10", {"tier": "10.5"}, True),
            ("gte", "10", {"tier": 10}, True),
            ("lt", "10", {"tier": "abc"}, False),
            ("lte", "10", {}, False),
        ],
    )
    def test_semantics(self, op: str, value: Any, data: dict[str, Any], passes: bool) -> None:
        from tallybook.catalog.meters import validate_filters

        filters = validate_filters([{"path": "tier", "op": op, "value": value}])
        assert meter(filters=filters).matches(data) is passes

    def test_nested_paths_and_array_indexes(self) -> None:
        compiled = meter(value_path="usage.items.1.n", group_by={"region": "geo.region"})
        found = compiled.contribution(
            {"usage": {"items": [{"n": 1}, {"n": 5}]}, "geo": {"region": "eu"}}
        )
        assert not isinstance(found, Rejection)
        assert found.value == 5 and found.dims_key == '["eu"]'


def test_calendar_windows_are_clipped() -> None:
    windows = windows_between(utc(2026, 1, 31, 12), utc(2026, 3, 2), Window.MONTH)
    assert windows == [
        (utc(2026, 1, 31, 12), utc(2026, 2, 1)),
        (utc(2026, 2, 1), utc(2026, 3, 1)),
        (utc(2026, 3, 1), utc(2026, 3, 2)),
    ]
    assert len(windows_between(utc(2026, 12, 31, 23, 30), utc(2027, 1, 1, 1), Window.HOUR)) == 2


def test_observe_many_matches_observe() -> None:
    registry = CollectorRegistry()
    bulk = Histogram("bulk", "b", registry=registry, buckets=(0.1, 1, 2))
    single = Histogram("single", "s", registry=registry, buckets=(0.1, 1, 2))
    values = [0, 0.1, 0.5, 1, 1.5, 2, 7.25]
    observe_many(bulk, values)
    for value in values:
        single.observe(value)
    lines = generate_latest(registry).decode().splitlines()

    def of(name: str) -> list[str]:
        return [
            line.replace(name, "x")
            for line in lines
            if line.startswith(name + "_") and "_created" not in line
        ]

    assert of("bulk") == of("single")


def test_sqlite_text_matches_what_the_orm_writes(sqlite_db: Database) -> None:
    from tallybook.metering.models import InvoicedThrough

    instant = datetime(2026, 11, 1, 9, 5, 7, 1234, tzinfo=UTC)
    with sqlite_db.transaction() as tx:
        tx.session.add(
            InvoicedThrough(customer_id="c", invoiced_through=instant, updated_at=instant)
        )
    with sqlite_db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT invoiced_through FROM metering_invoiced_through")
        ).scalar()
    assert stored == sqlite_time(instant)
    assert sqlite_time(utc(2026, 11, 1)) == "2026-11-01 00:00:00.000000"
