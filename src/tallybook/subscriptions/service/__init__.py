"""Subscription use cases (never commit). One import for callers::

    from tallybook.subscriptions import service as subscriptions
    result = subscriptions.change_plan(tx, "sub_…", ChangeRequest(plan_version_id="pv_…"))

See ``docs/subscriptions.md`` for the contract other domains rely on.
"""

from tallybook.subscriptions.service.changes import (
    MigrationOutcome,
    cancel,
    cancel_scheduled_change,
    change_plan,
    migrate,
    resume,
)
from tallybook.subscriptions.service.lifecycle import (
    advance,
    advance_by_id,
    create,
    end_trial,
    mark_active,
    mark_past_due,
    mark_unpaid,
    update_metadata,
)
from tallybook.subscriptions.service.queries import (
    PeriodRatingInput,
    changes,
    charges,
    current_period,
    ended_periods,
    for_customer,
    get,
    get_period,
    list_page,
    mark_charges_invoiced,
    pending_charges,
    period_rating_input,
    periods,
    phases,
    phases_overlapping,
    rate_period,
    subscriptions_with_period_ending_between,
    view,
)

__all__ = [
    "MigrationOutcome",
    "PeriodRatingInput",
    "advance",
    "advance_by_id",
    "cancel",
    "cancel_scheduled_change",
    "change_plan",
    "changes",
    "charges",
    "create",
    "current_period",
    "end_trial",
    "ended_periods",
    "for_customer",
    "get",
    "get_period",
    "list_page",
    "mark_active",
    "mark_charges_invoiced",
    "mark_past_due",
    "mark_unpaid",
    "migrate",
    "pending_charges",
    "period_rating_input",
    "periods",
    "phases",
    "phases_overlapping",
    "rate_period",
    "resume",
    "subscriptions_with_period_ending_between",
    "update_metadata",
    "view",
]
