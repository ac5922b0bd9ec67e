"""The building blocks: money and time formatting, sortable paged tables, SVG charts."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

from tallybook.console import charts, tables
from tallybook.console.templating import group_digits, money_html, money_text, relative
from tallybook.kit.clock import utc
from tallybook.kit.money import Money

SVG = "{http://www.w3.org/2000/svg}"


class TestFormatting:
    @pytest.mark.parametrize(
        ("money", "text"),
        [
            (Money(123456789, "USD"), "1,234,567.89 USD"),
            (Money(-5, "EUR"), "-0.05 EUR"),
            (Money(1200, "JPY"), "1,200 JPY"),
            (Money(1234567, "BHD"), "1,234.567 BHD"),
            (Money(0, "USD"), "0.00 USD"),
        ],
    )
    def test_money_always_carries_its_currency(self, money: Money, text: str) -> None:
        assert money_text(money) == text

    @given(st.integers(min_value=-(10**15), max_value=10**15))
    def test_grouping_never_changes_the_amount(self, amount_minor: int) -> None:
        money = Money(amount_minor, "USD")
        assert Decimal(money_text(money).split()[0].replace(",", "")) == money.to_major()

    def test_negative_money_is_marked(self) -> None:
        assert 'class="money neg"' in money_html(Money(-1, "USD"))
        assert "—" in money_html(None)

    def test_group_digits(self) -> None:
        assert group_digits("-1234567.891") == "-1,234,567.891"
        assert group_digits("999") == "999"

    @pytest.mark.parametrize(
        ("delta", "text"),
        [
            (timedelta(seconds=10), "just now"),
            (timedelta(minutes=5), "5 min ago"),
            (timedelta(hours=3), "3 h ago"),
            (timedelta(days=12), "12 days ago"),
            (timedelta(days=200), "6 months ago"),
            (timedelta(days=-2, hours=-1), "in 2 days"),
        ],
    )
    def test_relative_hints(self, delta: timedelta, text: str) -> None:
        now = utc(2026, 11, 1, 9)
        assert relative(now - delta, now) == text


def request_for(query: str) -> Request:
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/console/x",
            "query_string": query.encode(),
            "headers": [],
        }
    )


ROWS = [{"name": n, "amount": a} for n, a in [("b", 3), ("a", None), ("c", 1), ("d", 2)]]
COLUMNS: list[tables.Column[dict[str, Any]]] = [
    tables.Column("name", "Name", value=lambda r: r["name"]),
    tables.Column("amount", "Amount", value=lambda r: r["amount"], numeric=True),
    tables.Column("notes", "Notes"),
]


class TestTables:
    def test_sorts_pages_and_keeps_other_parameters(self) -> None:
        table = tables.from_list(
            request_for("q=x&sort=name&dir=asc&page=2&done=aud_1"),
            ROWS,
            columns=COLUMNS,
            default_sort=tables.Sort("name"),
            per_page=3,
        )
        assert [r["name"] for r in table.rows] == ["d"]
        assert (table.page, table.total, table.has_next, table.first_number) == (2, 4, False, 4)
        assert table.sort_url("name") == "/console/x?dir=desc&q=x&sort=name"
        assert table.sort_url("amount") == "/console/x?dir=asc&q=x&sort=amount"
        assert table.page_url(1) == "/console/x?dir=asc&q=x&sort=name"
        assert table.aria_sort("name") == "ascending"

    def test_blanks_sort_last_both_ways(self) -> None:
        for direction in ("asc", "desc"):
            table = tables.from_list(
                request_for(f"sort=amount&dir={direction}"),
                ROWS,
                columns=COLUMNS,
                default_sort=tables.Sort("name"),
            )
            assert table.rows[-1]["name"] == "a"

    def test_unknown_sort_and_bad_page_fall_back(self) -> None:
        table = tables.from_list(
            request_for("sort=notes&page=abc"),
            ROWS,
            columns=COLUMNS,
            default_sort=tables.Sort("name", descending=False),
        )
        assert table.sort == tables.Sort("name", descending=False)
        assert [r["name"] for r in table.rows] == ["a", "b", "c", "d"]
        beyond = tables.from_list(
            request_for("page=99"),
            ROWS,
            columns=COLUMNS,
            default_sort=tables.Sort("name"),
            per_page=3,
        )
        assert beyond.page == 2  # clamped to the last page

    def test_query_tables_ask_for_one_more_row(self) -> None:
        asked: list[tuple[tables.Sort, int, int]] = []

        def fetch(sort: tables.Sort, offset: int, limit: int) -> list[int]:
            asked.append((sort, offset, limit))
            return list(range(offset, min(offset + limit, 12)))

        columns: list[tables.Column[int]] = [tables.Column("time", "Time", sortable=True)]
        table = tables.from_query(
            request_for("tpage=2&tsort=time&tdir=asc"),
            fetch,
            columns=columns,
            default_sort=tables.Sort("time"),
            per_page=5,
            prefix="t",
        )
        assert asked == [(tables.Sort("time", descending=False), 5, 6)]
        assert table.rows == [5, 6, 7, 8, 9] and table.has_next and table.total is None


def parse(svg: str) -> ElementTree.Element:
    return ElementTree.fromstring(svg)


class TestCharts:
    def test_line_chart_is_valid_svg_with_tooltips(self) -> None:
        start = utc(2026, 10, 1)
        series = [
            charts.Series(
                "tokens",
                [charts.Point(start + timedelta(days=d), Decimal(d * 1000)) for d in range(30)],
            ),
            charts.Series(
                "requests",
                [charts.Point(start + timedelta(days=d), Decimal("2.5")) for d in range(30)],
            ),
        ]
        svg = parse(charts.line_chart(series, title="Usage per meter", unit="units"))
        assert svg.find(f"{SVG}title").text == "Usage per meter"  # type: ignore[union-attr]
        lines = svg.findall(f"{SVG}polyline")
        assert len(lines) == 2
        first = [tuple(map(Decimal, p.split(","))) for p in lines[0].get("points", "").split()]
        xs = [x for x, _ in first]
        assert xs == sorted(xs) and xs[0] == 60 and xs[-1] == 704  # the plot area's edges
        assert first[0][1] > first[-1][1]  # bigger values are higher (smaller y)
        tips = [t.text for t in svg.iter(f"{SVG}title")]
        assert "tokens · 2026-10-30 00:00 UTC: 29000 units" in tips
        assert "30k" in [t.text for t in svg.iter(f"{SVG}text")]

    def test_bar_chart_handles_negative_values(self) -> None:
        bars = [charts.Bar("Jan", Decimal(120)), charts.Bar("Feb", Decimal(-40))]
        svg = parse(charts.bar_chart(bars, title="Revenue delta", unit="USD"))
        up, down = svg.findall(f"{SVG}rect")
        zero = next(e for e in svg.iter(f"{SVG}line") if "zero" in e.get("class", ""))
        assert Decimal(up.get("y", "0")) + Decimal(up.get("height", "0")) == Decimal(
            zero.get("y1", "0")
        )
        assert Decimal(down.get("y", "0")) == Decimal(zero.get("y1", "0"))
        assert "neg" in down.get("class", "")

    def test_empty_and_flat_data(self) -> None:
        assert "No data in this period" in charts.line_chart([], title="Nothing")
        flat = charts.line_chart(
            [charts.Series("x", [charts.Point(utc(2026, 1, 1), Decimal(0))])], title="Flat"
        )
        parse(flat)

    def test_deterministic_and_float_free(self) -> None:
        bars = charts.daily_counts(
            [utc(2026, 11, 1, 3), utc(2026, 11, 1, 5)], end=utc(2026, 11, 2), days=3
        )
        assert [b.value for b in bars] == [Decimal(0), Decimal(2), Decimal(0)]
        first = charts.bar_chart(bars, title="t")
        assert first == charts.bar_chart(bars, title="t")
        assert "e-" not in first and "E" not in first.split("<title")[0]

    @given(
        st.lists(
            st.decimals(
                min_value=-(10**9), max_value=10**9, allow_nan=False, allow_infinity=False, places=3
            ),
            min_size=1,
            max_size=40,
        )
    )
    def test_bars_stay_inside_the_frame(self, values: list[Decimal]) -> None:
        svg = parse(
            charts.bar_chart(
                [charts.Bar(str(i), v) for i, v in enumerate(values)],
                title="t",
                width=400,
                height=200,
            )
        )
        for rect in svg.findall(f"{SVG}rect"):
            top = Decimal(rect.get("y", "0"))
            assert Decimal(0) <= top and top + Decimal(rect.get("height", "0")) <= 200

    def test_nice_steps(self) -> None:
        assert charts.nice_step(Decimal(7)) == 2
        assert charts.nice_step(Decimal(12345)) == 5000
        assert charts.nice_step(Decimal("0.03")) == Decimal("0.01")
        assert charts.compact(Decimal(1234567)) == "1.2M"
        assert charts.compact(Decimal(1500)) == "1.5k"
