from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tallybook.kit import quantity
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.errors import InvalidRequest, NotFound
from tallybook.kit.ids import ID_PATTERN, id_time_ms, new_id, new_request_id
from tallybook.kit.invariant import InvariantViolation, invariant
from tallybook.kit.pagination import PageRequest
from tallybook.kit.quantity import (
    normalize_quantity,
    quantity_display,
    quantity_text,
    to_decimal,
)


class TestIds:
    def test_shape_and_prefix(self) -> None:
        value = new_id("cus")
        assert value.startswith("cus_")
        assert ID_PATTERN.match(value)

    def test_ids_are_strictly_increasing_in_a_process(self) -> None:
        ids = [new_id("evt") for _ in range(5000)]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)

    def test_embedded_time(self) -> None:
        assert id_time_ms(new_id("txf", at_ms=1_700_000_000_123)) == 1_700_000_000_123

    def test_bad_prefix(self) -> None:
        with pytest.raises(ValueError):
            new_id("Bad")

    def test_the_encoding_is_the_ulid_layout(self) -> None:
        # 48 bits of milliseconds, then 80 random bits, in Crockford base32 (26 characters).
        assert new_id("evt", at_ms=0).startswith("evt_0000000000")
        assert new_id("evt", at_ms=(1 << 48) - 1).startswith("evt_7ZZZZZZZZZ")
        assert id_time_ms(new_id("evt", at_ms=1_234_567_890_123)) == 1_234_567_890_123

    def test_request_ids_are_ids_with_the_time_of_their_request(self) -> None:
        before = time.time_ns() // 1_000_000
        ids = [new_request_id() for _ in range(2000)]
        after = time.time_ns() // 1_000_000
        assert all(ID_PATTERN.match(value) and value.startswith("req_") for value in ids)
        assert len(set(ids)) == len(ids)
        assert before <= id_time_ms(ids[0]) <= id_time_ms(ids[-1]) <= after


class TestClockBehaviour:
    def test_advance_and_never_backwards(self) -> None:
        clock = TestClock(utc(2026, 1, 31))
        clock.advance(days=1)
        assert clock.now() == utc(2026, 2, 1)
        with pytest.raises(InvariantViolation):
            clock.advance(timedelta(seconds=-1))


class TestInvariant:
    def test_raises(self) -> None:
        with pytest.raises(InvariantViolation, match="books"):
            invariant(False, "books must balance")

    def test_survives_python_O(self) -> None:
        code = (
            "from tallybook.kit.invariant import invariant, InvariantViolation\n"
            "try:\n    invariant(1 == 2, 'x')\nexcept InvariantViolation:\n    print('raised')\n"
        )
        out = subprocess.run(
            [sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True
        )
        assert out.stdout.strip() == "raised"


class TestQuantity:
    def test_refuses_float(self) -> None:
        with pytest.raises(InvalidRequest) as err:
            to_decimal(0.5, param="value")
        assert err.value.param == "value"

    def test_parses_strings_and_ints(self) -> None:
        assert to_decimal("0.0000025") == Decimal("0.0000025")
        assert to_decimal(7) == Decimal(7)

    def test_rejects_nan_and_text(self) -> None:
        for bad in ("NaN", "Infinity", "abc", None):
            with pytest.raises(InvalidRequest):
                to_decimal(bad)

    @given(
        st.decimals(
            allow_nan=False, allow_infinity=False, places=12, min_value=-(10**20), max_value=10**20
        )
    )
    def test_text_round_trips(self, value: Decimal) -> None:
        assert Decimal(quantity_text(value)) == normalize_quantity(value)
        assert "E" not in quantity_text(value)

    @given(
        st.decimals(
            allow_nan=False, allow_infinity=False, places=12, min_value=-(10**20), max_value=10**20
        )
    )
    def test_display_groups_the_whole_digits_and_nothing_else(self, value: Decimal) -> None:
        shown = quantity_display(value)
        assert shown.replace(",", "") == quantity_text(value)
        whole, _, fraction = shown.lstrip("-").partition(".")
        assert "," not in fraction
        groups = whole.split(",")
        assert 1 <= len(groups[0]) <= 3 and all(len(group) == 3 for group in groups[1:])

    def test_display_examples(self) -> None:
        assert quantity_display(Decimal("1234567.891")) == "1,234,567.891"
        assert quantity_display(Decimal("-1000")) == "-1,000"
        assert quantity_display(Decimal("999.5")) == "999.5"
        assert quantity_display(Decimal("0.0000025")) == "0.0000025"

    @given(
        sign=st.sampled_from(("", "-")),
        digits=st.text("0123456789", min_size=1, max_size=30),
        exponent=st.integers(-16, 6),
    )
    def test_normalizing_keeps_the_reference_rule(
        self, sign: str, digits: str, exponent: int
    ) -> None:
        """The fast paths give exactly what quantize-to-12-places-then-normalize gives (its
        text too: sign of zero, no exponent), or fail as it does past the maximum."""
        value = Decimal(f"{sign}{digits}E{exponent}")

        def reference(number: Decimal) -> Decimal:
            context = quantity.QUANTITY_CONTEXT
            step = Decimal(1).scaleb(-quantity.QUANTITY_SCALE)
            normalized = number.quantize(step, context=context).normalize(context=context)
            if normalized == normalized.to_integral_value():
                return normalized.quantize(Decimal(1), context=context)
            return normalized

        try:
            expected = reference(value)
        except ArithmeticError:
            with pytest.raises(ArithmeticError):
                normalize_quantity(value)
            return
        assert str(normalize_quantity(value)) == str(expected)


class TestPagination:
    def test_limits(self) -> None:
        with pytest.raises(InvalidRequest):
            PageRequest(limit=0)
        with pytest.raises(InvalidRequest):
            PageRequest(limit=101)

    def test_not_found_names_object(self) -> None:
        error = NotFound("customer", "cus_x")
        assert error.to_wire("req_1")["error"]["code"] == "resource_missing"
