"""API shapes of a pricing simulation (a report, never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tallybook.simulation.domain import (
    CustomerResult,
    PeriodResult,
    PriceRow,
    SimulationReport,
    Skipped,
)
from tallybook.simulation.service import PERIODS_MAX, SimulationRequest


class SimulationBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_version: str = Field(description="The version to simulate (usually a draft): pv_…")
    customers: list[str] = Field(
        default_factory=list, description="Customer ids or external ids (or use all)"
    )
    all: bool = Field(
        default=False,
        description="Every customer with a live subscription on any version of the same plan",
    )
    periods: int = Field(
        default=1, description=f"How many last closed periods to re-rate (1 to {PERIODS_MAX})"
    )

    def to_request(self) -> SimulationRequest:
        return SimulationRequest(
            plan_version_id=self.plan_version,
            customer_ids=tuple(self.customers),
            all_customers=self.all,
            periods=self.periods,
        )


def _pct(value: object) -> str | None:
    return None if value is None else str(value)


class SimulationPriceOut(BaseModel):
    key: str = Field(description="The price key (the simulated version's when matched)")
    match: str = Field(description="matched, added, removed, minimum or other")
    meter: str | None
    current_minor: int
    proposed_minor: int
    delta_minor: int

    @classmethod
    def of(cls, row: PriceRow) -> SimulationPriceOut:
        return cls(
            key=row.key,
            match=str(row.match),
            meter=row.meter_id,
            current_minor=row.current_minor,
            proposed_minor=row.proposed_minor,
            delta_minor=row.delta_minor,
        )


class SimulationPeriodOut(BaseModel):
    subscription: str
    period: str
    start_at: datetime
    end_at: datetime
    invoiced_minor: int = Field(description="What its finalized, non-void invoices billed for it")
    current_minor: int = Field(description="Re-rated on the versions it was billed on")
    proposed_minor: int = Field(description="Rated on the simulated version")
    delta_minor: int
    prices: list[SimulationPriceOut]

    @classmethod
    def of(cls, period: PeriodResult) -> SimulationPeriodOut:
        return cls(
            subscription=period.subscription_id,
            period=period.period_id,
            start_at=period.start,
            end_at=period.end,
            invoiced_minor=period.invoiced_minor,
            current_minor=period.current_minor,
            proposed_minor=period.proposed_minor,
            delta_minor=period.delta_minor,
            prices=[SimulationPriceOut.of(row) for row in period.prices],
        )


class SimulationCustomerOut(BaseModel):
    customer: str
    external_id: str
    name: str | None
    currency: str
    invoiced_minor: int
    current_minor: int
    proposed_minor: int
    delta_minor: int
    delta_percent: str | None = Field(description="Decimal string, one place; null from zero")
    periods: list[SimulationPeriodOut]

    @classmethod
    def of(cls, result: CustomerResult) -> SimulationCustomerOut:
        return cls(
            customer=result.customer_id,
            external_id=result.external_id,
            name=result.name,
            currency=result.currency,
            invoiced_minor=result.invoiced_minor,
            current_minor=result.current_minor,
            proposed_minor=result.proposed_minor,
            delta_minor=result.delta_minor,
            delta_percent=_pct(result.delta_percent),
            periods=[SimulationPeriodOut.of(p) for p in result.periods],
        )


class SimulationSkippedOut(BaseModel):
    customer: str
    code: str
    reason: str

    @classmethod
    def of(cls, item: Skipped) -> SimulationSkippedOut:
        return cls(customer=item.customer_id, code=item.code, reason=item.reason)


class SimulationOut(BaseModel):
    object: Literal["simulation"] = "simulation"
    plan_version: str
    plan: str
    plan_key: str
    version: int
    version_status: str
    currency: str
    periods: int
    created_at: datetime
    invoiced_minor: int
    current_minor: int
    proposed_minor: int
    delta_minor: int
    delta_percent: str | None
    winners: list[str] = Field(description="Customers who would pay less, biggest saving first")
    losers: list[str] = Field(description="Customers who would pay more, biggest increase first")
    unchanged_count: int
    prices: list[SimulationPriceOut]
    customers: list[SimulationCustomerOut]
    skipped: list[SimulationSkippedOut]

    @classmethod
    def of(cls, report: SimulationReport) -> SimulationOut:
        return cls(
            plan_version=report.plan_version_id,
            plan=report.plan_id,
            plan_key=report.plan_key,
            version=report.version,
            version_status=report.version_status,
            currency=report.currency,
            periods=report.periods_max,
            created_at=report.generated_at,
            invoiced_minor=report.invoiced_minor,
            current_minor=report.current_minor,
            proposed_minor=report.proposed_minor,
            delta_minor=report.delta_minor,
            delta_percent=_pct(report.delta_percent),
            winners=[c.customer_id for c in report.winners],
            losers=[c.customer_id for c in report.losers],
            unchanged_count=report.unchanged_count,
            prices=[SimulationPriceOut.of(row) for row in report.prices],
            customers=[SimulationCustomerOut.of(c) for c in report.customers],
            skipped=[SimulationSkippedOut.of(s) for s in report.skipped],
        )
