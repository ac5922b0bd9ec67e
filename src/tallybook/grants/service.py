"""The grants domain's service API: what other domains, the API and the CLI call. Services
take a ``Tx`` and never commit.

Credits (ADR 0002; invoicing and entitlements call these)::

    credit_sources(tx, customer_id, *, at, currency=None, meter_id=None) -> list[CreditSource]
    apply_credits(tx, applications, *, invoice_id) -> None
    # with grants.domain.burn_down(sources, demands) -> list[CreditApplication]

Grants::

    issue_grant(tx, GrantInput(...), issued_by=None) -> Grant
    void_grant(tx, grant_id, *, reason) -> Grant
    expire_grant(tx, grant_id) -> bool
    get_grant(tx, grant_id) / get_view(tx, grant_id) -> GrantView (with its ledger balance)
    list_views(tx, PageRequest, customer=None, status=None) -> Page[GrantView]

Recurring grants and included-in-plan credits::

    create_recurring(tx, RecurringInput(...)) -> RecurringGrant
    cancel_recurring(tx, recurring_id, *, reason) -> RecurringGrant
    issue_due(tx, recurring_id) -> list[Grant]
    create_rule(tx, PlanCreditRuleInput(...)) / archive_rule / sync(tx, rule_id)

Promotion codes live in :mod:`tallybook.grants.promotions` (``discounts_for``,
``record_discount_use``, ``redeem``…).
"""

from tallybook.grants.credits import apply_credits, credit_sources
from tallybook.grants.domain import (
    CreditApplication,
    CreditSource,
    Demand,
    GrantKind,
    GrantSource,
    GrantStatus,
    burn_down,
)
from tallybook.grants.issuance import (
    GrantInput,
    GrantView,
    expire_grant,
    get_grant,
    get_view,
    issue_grant,
    list_views,
    sweep_if_ended,
    view,
    void_grant,
)
from tallybook.grants.plan_credits import (
    PlanCreditRuleInput,
    archive_rule,
    create_rule,
    get_rule,
    list_rules,
    sync,
)
from tallybook.grants.recurring import (
    RecurringInput,
    cancel_recurring,
    create_recurring,
    get_recurring,
    issue_due,
    list_recurring,
)

__all__ = [
    "CreditApplication",
    "CreditSource",
    "Demand",
    "GrantInput",
    "GrantKind",
    "GrantSource",
    "GrantStatus",
    "GrantView",
    "PlanCreditRuleInput",
    "RecurringInput",
    "apply_credits",
    "archive_rule",
    "burn_down",
    "cancel_recurring",
    "create_recurring",
    "create_rule",
    "credit_sources",
    "expire_grant",
    "get_grant",
    "get_recurring",
    "get_rule",
    "get_view",
    "issue_due",
    "issue_grant",
    "list_recurring",
    "list_rules",
    "list_views",
    "sweep_if_ended",
    "sync",
    "view",
    "void_grant",
]
