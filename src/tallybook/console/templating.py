"""Jinja2 for the console: the environment, filters for money, quantities and times, and the
vendored static files (served with content-hashed URLs, so browsers cache them for good).

Money is always shown with its currency through :meth:`Money.format`, with the integer part
grouped by thousands for reading (``1,234,567.89 USD``). Times are UTC, with a relative hint
computed against the request's instant.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from typing import Any, Final

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup, escape

from tallybook.kit.clock import isoformat_z
from tallybook.kit.hashing import json_dumps
from tallybook.kit.money import Money
from tallybook.kit.quantity import group_digits, quantity_text


def money_text(value: Money) -> str:
    amount, _, currency = value.format().partition(" ")
    return f"{group_digits(amount)} {currency}"


def money_html(value: Money | None) -> Markup:
    if value is None:
        return Markup('<span class="muted">—</span>')
    css = "money neg" if value.amount_minor < 0 else "money"
    return Markup(f'<span class="{css}">{escape(money_text(value))}</span>')


def minor_html(amount_minor: int | None, currency: str) -> Markup:
    """An integer amount in minor units of ``currency``, shown like :func:`money_html`."""
    return money_html(Money(amount_minor, currency) if amount_minor is not None else None)


def quantity_html(value: Decimal | int | None, unit: str = "") -> Markup:
    if value is None:
        return Markup('<span class="muted">—</span>')
    text = group_digits(quantity_text(Decimal(value)))
    suffix = f" {escape(unit)}" if unit else ""
    return Markup(f'<span class="num">{escape(text)}{suffix}</span>')


def relative(moment: datetime, now: datetime) -> str:
    """A short human hint: ``just now``, ``5 min ago``, ``in 3 h``, ``12 days ago``."""
    delta = now - moment
    future = delta < timedelta(0)
    seconds = abs(delta) // timedelta(seconds=1)
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        amount = f"{max(1, (seconds + 30) // 60)} min"
    elif seconds < 86400 * 2:
        amount = f"{seconds // 3600} h"
    elif seconds < 86400 * 60:
        amount = f"{seconds // 86400} days"
    elif seconds < 86400 * 730:
        amount = f"{seconds // (86400 * 30)} months"
    else:
        amount = f"{seconds // (86400 * 365)} years"
    return f"in {amount}" if future else f"{amount} ago"


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@pass_context
def timestamp_html(context: Context, moment: datetime | None, hint: bool = True) -> Markup:
    if moment is None:
        return Markup('<span class="muted">—</span>')
    now = context.get("now")
    text = escape(utc_text(moment))
    iso = escape(isoformat_z(moment))
    if not hint or not isinstance(now, datetime):
        return Markup(f'<time datetime="{iso}">{text}</time>')
    return Markup(
        f'<time datetime="{iso}">{text}</time> '
        f'<span class="rel">{escape(relative(moment, now))}</span>'
    )


def pretty_json(value: Any) -> str:
    import orjson

    return orjson.dumps(
        orjson.loads(json_dumps(value)), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS
    ).decode()


def summary(data: Any, limit: int = 4) -> str:
    """``key: value`` pairs of a JSON object, shortened for a table cell."""
    if not isinstance(data, dict):
        return "" if data is None else str(data)[:120]
    parts = []
    for key, value in list(data.items())[:limit]:
        shown = value if isinstance(value, (str, int)) or value is None else json_dumps(value)
        parts.append(f"{key}: {str(shown)[:60]}")
    if len(data) > limit:
        parts.append("…")
    return ", ".join(parts)


# Static files ------------------------------------------------------------------------------

STATIC_TYPES: Final = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}


def _load_static() -> dict[str, tuple[bytes, str, str]]:
    files: dict[str, tuple[bytes, str, str]] = {}
    root = resources.files("tallybook.console").joinpath("static")
    for entry in root.iterdir():
        suffix = "." + entry.name.rpartition(".")[2]
        if entry.is_file() and suffix in STATIC_TYPES:
            content = entry.read_bytes()
            digest = hashlib.sha256(content).hexdigest()[:12]
            files[entry.name] = (content, STATIC_TYPES[suffix], digest)
    return files


STATIC_FILES: Final = _load_static()


def static_url(name: str) -> str:
    return f"/console/static/{name}?v={STATIC_FILES[name][2]}"


def make_environment() -> Environment:
    env = Environment(
        loader=PackageLoader("tallybook.console", "templates"),
        autoescape=select_autoescape(["html", "svg"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        money=money_html,
        minor=minor_html,
        quantity=quantity_html,
        ts=timestamp_html,
        pretty_json=pretty_json,
        summary=summary,
        group_digits=group_digits,
    )
    env.globals.update(static_url=static_url, utc_text=utc_text)
    return env


ENV: Final = make_environment()
