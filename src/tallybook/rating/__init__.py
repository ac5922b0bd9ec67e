"""Rating: pure functions from price definitions and quantities to priced, explained lines.

No I/O and no SQLAlchemy: callers (subscriptions, entitlements, invoicing) load the terms and
measure the usage, then ask rating what it costs. Every amount is computed exactly and rounded
once per line (``kit.money.round_to_minor``, half-even).

Entry points:

- :func:`rate_subscription_period`: everything billed at the end of a period (usage per phase,
  in-arrears fees, minimum true-up), with :func:`usage_requests` to know what to measure;
- :func:`advance_fee_lines`: the in-advance fees billed at the start of a period;
- :func:`proration_charge_lines` / :func:`proration_credit_lines`: a mid-period change;
- :func:`usage_line` / :func:`model_charge`: one usage price on one quantity (overage pricing
  for spend limits).
"""

from tallybook.rating.fees import (
    PrepaidCharge,
    advance_fee_lines,
    fee_share_line,
    proration_charge_lines,
    proration_credit_line,
    proration_credit_lines,
)
from tallybook.rating.inputs import BillingPeriod, RatingPhase, UsageRequest, usage_requests
from tallybook.rating.lines import LineKind, RatedLine, total_minor
from tallybook.rating.period import RatedPeriod, rate_subscription_period, usage_line
from tallybook.rating.usage import ModelCharge, TierUsage, model_charge

__all__ = [
    "BillingPeriod",
    "LineKind",
    "ModelCharge",
    "PrepaidCharge",
    "RatedLine",
    "RatedPeriod",
    "RatingPhase",
    "TierUsage",
    "UsageRequest",
    "advance_fee_lines",
    "fee_share_line",
    "model_charge",
    "proration_charge_lines",
    "proration_credit_line",
    "proration_credit_lines",
    "rate_subscription_period",
    "total_minor",
    "usage_line",
    "usage_requests",
]
