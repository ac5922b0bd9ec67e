"""Error codes of the pricing simulation. Documented in ``docs/errors.md`` under "Simulation"."""

from __future__ import annotations

from enum import StrEnum


class SimulationCode(StrEnum):
    #: ``periods`` outside 1..PERIODS_MAX.
    PERIODS_INVALID = "simulation_periods_invalid"
    #: Neither ``customers`` nor ``all`` given, both given, or too many customers.
    CUSTOMERS_INVALID = "simulation_customers_invalid"
    #: A chosen customer is billed in another currency than the simulated version's.
    CURRENCY_MISMATCH = "simulation_currency_mismatch"
    #: A chosen customer's periods are of another length than the simulated version's.
    INTERVAL_MISMATCH = "simulation_interval_mismatch"
