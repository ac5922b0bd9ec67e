"""The customer page's panels: each domain adds its view of a customer as one panel.

A panel is data: a key, a title, the least role that may see it, a function
``(tx, customer) -> template context`` and a template under ``templates/panels/``. Until a
domain brings its panel, its place is a **slot** that says what will be there and which domain
fills it. Adding the invoices panel is one function, one template and one line here::

    # console/panel_invoices.py
    def context(tx: Tx, customer: Customer) -> dict[str, Any]:
        return {"invoices": invoicing_service.list_for_customer(tx, customer.id, limit=20)}

    # here, replacing the slot:
    Panel("invoices", "Invoices", context=panel_invoices.context,
          template="panels/invoices.html", wide=True),

Each panel runs inside its own savepoint and is rendered on its own: a panel that fails shows
an error box with the request id; the rest of the page still answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup

from tallybook.console.roles import Role
from tallybook.console.templating import ENV
from tallybook.customers.models import Customer
from tallybook.db import Tx

log = logging.getLogger(__name__)

PanelContext = Callable[[Tx, Customer], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Panel:
    key: str
    title: str
    context: PanelContext | None = None
    template: str | None = None
    role: Role = Role.VIEWER
    #: Spans the full width of the page (tables with many columns, charts).
    wide: bool = False
    #: For a slot: the domain that fills it.
    arrives_with: str = ""

    @property
    def is_slot(self) -> bool:
        return self.context is None or self.template is None


def slot(key: str, title: str, *, arrives_with: str, wide: bool = False) -> Panel:
    return Panel(key=key, title=title, arrives_with=arrives_with, wide=wide)


def customer_panels() -> list[Panel]:
    """The customer page's panels, in page order."""
    from tallybook.console import panels_billing as billing

    return [
        Panel(
            "subscriptions",
            "Subscriptions and periods",
            context=billing.subscriptions_context,
            template="panels/subscriptions.html",
        ),
        Panel(
            "entitlements",
            "Entitlements and usage against limits",
            context=billing.entitlements_context,
            template="panels/entitlements.html",
        ),
        Panel(
            "grants",
            "Credit grants and balances",
            context=billing.grants_context,
            template="panels/grants.html",
        ),
        Panel(
            "payments",
            "Payments",
            context=billing.payments_context,
            template="panels/payments.html",
        ),
        Panel(
            "usage",
            "Usage per meter",
            context=billing.usage_context,
            template="panels/usage.html",
            wide=True,
        ),
        Panel(
            "invoices",
            "Invoices",
            context=billing.invoices_context,
            template="panels/invoices.html",
            wide=True,
        ),
    ]


@dataclass(frozen=True, slots=True)
class RenderedPanel:
    panel: Panel
    html: Markup | None = None
    #: Set when the panel failed: the page shows this instead of the panel.
    error: str | None = None


def render_panels(
    tx: Tx, customer: Customer, role: Role, page_context: Mapping[str, Any]
) -> list[RenderedPanel]:
    """Render every panel ``role`` may see. ``page_context`` (now, csrf token, helpers) is
    passed to each panel template alongside the panel's own context and ``customer``."""
    rendered = []
    for panel in customer_panels():
        if not role.at_least(panel.role):
            continue
        if panel.is_slot:
            rendered.append(RenderedPanel(panel))
            continue
        assert panel.context is not None and panel.template is not None
        try:
            with tx.session.begin_nested():
                own = panel.context(tx, customer)
            html = ENV.get_template(panel.template).render(
                {**page_context, **own, "customer": customer, "panel": panel}
            )
        except Exception:
            log.exception("console panel failed", extra={"panel": panel.key})
            rendered.append(RenderedPanel(panel, error="This panel failed to load."))
            continue
        rendered.append(RenderedPanel(panel, html=Markup(html)))
    return rendered
