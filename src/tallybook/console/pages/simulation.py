"""The pricing simulation page: pick a plan version (usually a draft) and a number of closed
periods; see the revenue change in total, a bar chart of per-customer changes and a sortable
table of who would pay more or less. Reads only (any signed-in role may look)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Final

from fastapi import Depends
from starlette.responses import Response

from tallybook.catalog import plans
from tallybook.console import tables
from tallybook.console.charts import Bar, bar_chart
from tallybook.console.web import ConsoleContext, console_router, signed_in
from tallybook.db import Tx
from tallybook.kit.errors import TallybookError
from tallybook.kit.money import Money, currency_exponent
from tallybook.kit.pagination import LIMIT_MAX, PageRequest
from tallybook.simulation import service
from tallybook.simulation.domain import CustomerResult
from tallybook.simulation.service import PERIODS_MAX, SimulationRequest

router = console_router()

#: Bars drawn: the customers with the biggest changes either way.
BARS_MAX: Final = 60
PERIODS_DEFAULT: Final = 3

COLUMNS: Final[list[tables.Column[CustomerResult]]] = [
    tables.Column("customer", "Customer", value=lambda c: (c.name or c.external_id).lower()),
    tables.Column("current", "Current", value=lambda c: c.current_minor, numeric=True),
    tables.Column("proposed", "Proposed", value=lambda c: c.proposed_minor, numeric=True),
    tables.Column("delta", "Change", value=lambda c: c.delta_minor, numeric=True),
    tables.Column("percent", "Change %", value=lambda c: c.delta_percent, numeric=True),
    tables.Column("periods", "Periods", value=lambda c: len(c.periods), numeric=True),
]


def _versions(tx: Tx) -> list[dict[str, Any]]:
    """Every version of every live plan, drafts first within a plan."""
    options: list[dict[str, Any]] = []
    for plan in plans.list_plans(tx, PageRequest(limit=LIMIT_MAX)).data:
        versions = sorted(
            plans.list_versions(tx, plan.id), key=lambda v: (v.status != "draft", -v.version)
        )
        for version in versions:
            options.append(
                {
                    "id": version.id,
                    "label": f"{plan.name} ({plan.key}) v{version.version}: {version.status}",
                }
            )
    return options


def _major(amount_minor: int, currency: str) -> Decimal:
    return Decimal(amount_minor).scaleb(-currency_exponent(currency))


def _bars(customers: list[CustomerResult], currency: str) -> list[Bar]:
    changed = sorted(
        (c for c in customers if c.delta_minor != 0), key=lambda c: -abs(c.delta_minor)
    )[:BARS_MAX]
    return [
        Bar(
            label=c.name or c.external_id,
            value=_major(c.delta_minor, currency),
            hint=f"{c.name or c.external_id}: {Money(c.delta_minor, currency).format()}",
        )
        for c in sorted(changed, key=lambda c: (c.delta_minor, c.customer_id))
    ]


def _periods(raw: str | None) -> int | str:
    try:
        return int(raw) if raw else PERIODS_DEFAULT
    except ValueError:
        return raw or ""


@router.get("/simulation")
def simulation_page(ctx: ConsoleContext = Depends(signed_in())) -> Response:
    params = ctx.request.query_params
    version_id = params.get("plan_version") or ""
    periods = _periods(params.get("periods"))
    names = [n.strip() for n in (params.get("customers") or "").split(",") if n.strip()]
    with ctx.read() as tx:
        form = {
            "versions": _versions(tx),
            "plan_version": version_id,
            "periods": periods,
            "periods_max": PERIODS_MAX,
            "customers": ", ".join(names),
        }
        if not version_id:
            return ctx.render("simulation.html", tx=tx, form=form, report=None, error=None)
        try:
            if not isinstance(periods, int):
                periods = 0  # refused below with the named error
            report = service.simulate(
                tx,
                SimulationRequest(
                    plan_version_id=version_id,
                    customer_ids=tuple(names),
                    all_customers=not names,
                    periods=periods,
                ),
            )
        except TallybookError as error:
            return ctx.render(
                "simulation.html", tx=tx, form=form, report=None, error=error, status_code=400
            )
        table = tables.from_list(
            ctx.request,
            list(report.customers),
            columns=COLUMNS,
            default_sort=tables.Sort("delta", descending=True),
        )
        chart = bar_chart(
            _bars(list(report.customers), report.currency),
            title="Change per customer",
            unit=report.currency,
        )
        return ctx.render(
            "simulation.html",
            tx=tx,
            form=form,
            report=report,
            table=table,
            chart=chart,
            error=None,
        )
