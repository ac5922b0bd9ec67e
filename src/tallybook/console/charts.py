"""Charts drawn on the server as inline SVG: no JavaScript, no downloads, crisp at any size,
readable by screen readers (a title, a description, and a tooltip per point or bar).

All arithmetic is exact (``Decimal``) and coordinates are rounded to a tenth of a pixel, so the
output is deterministic and no float is ever involved. Colours come from CSS classes
(``.chart .s0``…), so the style sheet owns the look.

Pass pre-aggregated points (for example one per day: a year of hourly usage is 365 points, not
8,760); :data:`POINTS_MAX` guards against drawing the raw data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Final

from markupsafe import Markup, escape

from tallybook.kit.invariant import invariant
from tallybook.kit.quantity import quantity_text

POINTS_MAX: Final = 2000
#: Points get a hover tooltip (an SVG <title>) when a series has at most this many.
TOOLTIP_POINTS_MAX: Final = 120
SERIES_CLASSES: Final = 6
MARGIN_LEFT: Final = Decimal(60)
MARGIN_RIGHT: Final = Decimal(16)
MARGIN_TOP: Final = Decimal(16)
MARGIN_BOTTOM: Final = Decimal(30)
Y_TICKS_TARGET: Final = 4
X_TICKS_TARGET: Final = 6
_TENTH: Final = Decimal("0.1")
_MICROSECOND: Final = timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Point:
    at: datetime
    value: Decimal


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    points: Sequence[Point]


@dataclass(frozen=True, slots=True)
class Bar:
    label: str
    value: Decimal
    #: Tooltip text; defaults to ``label: value unit``.
    hint: str | None = None


def _px(value: Decimal) -> str:
    text = format(value.quantize(_TENTH), "f")
    return text[:-2] if text.endswith(".0") else text


def compact(value: Decimal) -> str:
    """``1234567`` → ``1.2M``; ``0.25`` → ``0.25``; for axis labels."""
    magnitude = abs(value)
    for threshold, suffix in ((Decimal(10**9), "B"), (Decimal(10**6), "M"), (Decimal(10**3), "k")):
        if magnitude >= threshold:
            scaled = (value / threshold).quantize(_TENTH)
            text = format(scaled, "f")
            return (text[:-2] if text.endswith(".0") else text) + suffix
    if value == value.to_integral_value():
        return format(value.quantize(Decimal(1)), "f")
    return quantity_text(value.quantize(Decimal("0.01")).normalize())


def nice_step(span: Decimal, ticks: int = Y_TICKS_TARGET) -> Decimal:
    """A step of 1, 2 or 5 × 10^k that cuts ``span`` into about ``ticks`` parts."""
    invariant(span > 0, "nice_step needs a positive span")
    raw = span / ticks
    power = Decimal(10) ** raw.adjusted()
    fraction = raw / power
    for nice in (Decimal(1), Decimal(2), Decimal(5)):
        if fraction <= nice:
            return nice * power
    return Decimal(10) * power


def _y_axis(values: Sequence[Decimal]) -> tuple[Decimal, Decimal, list[Decimal]]:
    low = min([Decimal(0), *values])
    high = max([Decimal(0), *values])
    if low == high:
        high = low + 1
    step = nice_step(high - low)
    start = (low / step).to_integral_value(rounding=ROUND_FLOOR) * step
    end = (high / step).to_integral_value(rounding=ROUND_CEILING) * step
    ticks = []
    tick = start
    while tick <= end:
        ticks.append(tick)
        tick += step
    return start, end, ticks


class _Frame:
    """The plot area and the value → pixel mapping on the y axis."""

    def __init__(self, width: int, height: int, values: Sequence[Decimal]) -> None:
        self.width = Decimal(width)
        self.height = Decimal(height)
        self.left = MARGIN_LEFT
        self.right = self.width - MARGIN_RIGHT
        self.top = MARGIN_TOP
        self.bottom = self.height - MARGIN_BOTTOM
        self.low, self.high, self.ticks = _y_axis(values)

    def y(self, value: Decimal) -> Decimal:
        share = (value - self.low) / (self.high - self.low)
        return self.bottom - share * (self.bottom - self.top)

    def grid(self, unit: str) -> list[str]:
        parts = []
        for tick in self.ticks:
            y = _px(self.y(tick))
            css = "axis zero" if tick == 0 else "grid"
            parts.append(
                f'<line class="{css}" x1="{_px(self.left)}" x2="{_px(self.right)}" '
                f'y1="{y}" y2="{y}"/>'
            )
            parts.append(
                f'<text class="ylabel" x="{_px(self.left - 6)}" y="{y}" '
                f'text-anchor="end" dominant-baseline="middle">{escape(compact(tick))}</text>'
            )
        if unit:
            parts.append(
                f'<text class="unit" x="{_px(self.left)}" y="{_px(self.top - 5)}" '
                f'text-anchor="start">{escape(unit)}</text>'
            )
        return parts


def _svg(width: int, height: int, title: str, description: str, body: list[str]) -> Markup:
    ident = "c" + hashlib.sha256("".join((title, description, *body)).encode()).hexdigest()[:10]
    return Markup(
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'preserveAspectRatio="xMidYMid meet" role="img" '
        f'aria-labelledby="{ident}t {ident}d" xmlns="http://www.w3.org/2000/svg">'
        f'<title id="{ident}t">{escape(title)}</title>'
        f'<desc id="{ident}d">{escape(description)}</desc>' + "".join(body) + "</svg>"
    )


def _time_label(moment: datetime, span: timedelta) -> str:
    if span <= timedelta(days=2):
        return moment.strftime("%H:%M")
    if span <= timedelta(days=120):
        return moment.strftime("%d %b")
    return moment.strftime("%b %Y")


def _empty(width: int, height: int, title: str, note: str) -> Markup:
    return _svg(
        width,
        height,
        title,
        note,
        [
            f'<text class="empty" x="{width // 2}" y="{height // 2}" '
            f'text-anchor="middle">{escape(note)}</text>'
        ],
    )


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 220,
) -> Markup:
    """Lines over time, one per series (for example usage per meter per day)."""
    points = [p for s in series for p in s.points]
    invariant(len(points) <= POINTS_MAX, f"line_chart draws at most {POINTS_MAX} points")
    if not points:
        return _empty(width, height, title, "No data in this period")
    frame = _Frame(width, height, [p.value for p in points])
    start = min(p.at for p in points)
    end = max(p.at for p in points)
    span = end - start if end > start else timedelta(hours=1)
    span_us = Decimal(span // _MICROSECOND)

    def x(moment: datetime) -> Decimal:
        share = Decimal((moment - start) // _MICROSECOND) / span_us
        return frame.left + share * (frame.right - frame.left)

    body = frame.grid(unit)
    for index in range(X_TICKS_TARGET):
        moment = start + span * index / (X_TICKS_TARGET - 1)
        body.append(
            f'<text class="xlabel" x="{_px(x(moment))}" y="{_px(frame.bottom + 18)}" '
            f'text-anchor="middle">{escape(_time_label(moment, span))}</text>'
        )
    for number, one in enumerate(series):
        css = f"s{number % SERIES_CLASSES}"
        ordered = sorted(one.points, key=lambda p: p.at)
        coordinates = " ".join(f"{_px(x(p.at))},{_px(frame.y(p.value))}" for p in ordered)
        body.append(f'<polyline class="line {css}" fill="none" points="{coordinates}"/>')
        if len(ordered) <= TOOLTIP_POINTS_MAX:
            for point in ordered:
                body.append(
                    f'<circle class="dot {css}" cx="{_px(x(point.at))}" '
                    f'cy="{_px(frame.y(point.value))}" r="2.5"><title>'
                    f"{escape(one.name)} · {escape(point.at.strftime('%Y-%m-%d %H:%M'))} UTC: "
                    f"{escape(quantity_text(point.value))} {escape(unit)}</title></circle>"
                )
    if len(series) > 1:
        offset = frame.left
        for number, one in enumerate(series):
            css = f"s{number % SERIES_CLASSES}"
            body.append(
                f'<rect class="key {css}" x="{_px(offset)}" y="2" width="10" height="10"/>'
                f'<text class="legend" x="{_px(offset + 14)}" y="11">{escape(one.name)}</text>'
            )
            offset += Decimal(24 + 7 * len(one.name))
    description = (
        f"{len(series)} series from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC, "
        f"values {compact(min(p.value for p in points))} to "
        f"{compact(max(p.value for p in points))} {unit}".strip()
    )
    return _svg(width, height, title, description, body)


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    unit: str = "",
    width: int = 720,
    height: int = 220,
    labels_max: int = 12,
) -> Markup:
    """Bars by category, positive up and negative down from zero (revenue deltas work)."""
    invariant(len(bars) <= POINTS_MAX, f"bar_chart draws at most {POINTS_MAX} bars")
    if not bars:
        return _empty(width, height, title, "No data")
    frame = _Frame(width, height, [b.value for b in bars])
    slot = (frame.right - frame.left) / len(bars)
    gap = min(slot * Decimal("0.2"), Decimal(6))
    zero = frame.y(Decimal(0))
    label_every = max(1, -(-len(bars) // labels_max))
    body = frame.grid(unit)
    for index, bar in enumerate(bars):
        left = frame.left + slot * index + gap / 2
        top = frame.y(bar.value)
        y, bar_height = (top, zero - top) if bar.value >= 0 else (zero, top - zero)
        css = "bar neg" if bar.value < 0 else "bar"
        hint = bar.hint or f"{bar.label}: {quantity_text(bar.value)} {unit}".strip()
        body.append(
            f'<rect class="{css}" x="{_px(left)}" y="{_px(y)}" width="{_px(slot - gap)}" '
            f'height="{_px(max(bar_height, Decimal("0.5")))}"><title>{escape(hint)}</title></rect>'
        )
        if index % label_every == 0:
            body.append(
                f'<text class="xlabel" x="{_px(left + (slot - gap) / 2)}" '
                f'y="{_px(frame.bottom + 18)}" text-anchor="middle">{escape(bar.label)}</text>'
            )
    total = sum((b.value for b in bars), Decimal(0))
    description = f"{len(bars)} bars totalling {compact(total)} {unit}".strip()
    return _svg(width, height, title, description, body)


def daily_counts(moments: Sequence[datetime], *, end: datetime, days: int) -> list[Bar]:
    """Bars counting ``moments`` per UTC day over the ``days`` up to ``end`` (zeros kept)."""
    first_day = (end - timedelta(days=days - 1)).date()
    counts = {first_day + timedelta(days=n): 0 for n in range(days)}
    for moment in moments:
        day = moment.date()
        if day in counts:
            counts[day] += 1
    return [
        Bar(label=day.strftime("%d %b"), value=Decimal(count), hint=f"{day:%Y-%m-%d}: {count}")
        for day, count in counts.items()
    ]
