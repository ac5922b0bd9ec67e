"""Invoice documents: a clean, self-contained HTML page per invoice (lines, credits, totals).

Rendered with Jinja2 from ``invoicing/templates/invoice.html`` (autoescaped; inline CSS so the
page prints and archives as one file). PDF is left to the browser's "print to PDF" for now:
the pure-Python PDF libraries on PyPI either need system packages (WeasyPrint: Pango) or would
mean laying the invoice out a second time by hand (fpdf2, ReportLab); see docs/invoicing.md.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from tallybook.customers import service as customers
from tallybook.db import Tx
from tallybook.invoicing.service.lifecycle import get_invoice
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.money import Money
from tallybook.kit.quantity import quantity_display

_environment = Environment(
    loader=PackageLoader("tallybook.invoicing", "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format()


def _quantity(value: Decimal | str | int | None) -> str:
    """Thousands separators, exact digits (breakdowns hold quantities as decimal strings)."""
    if value is None or value == "":
        return ""
    return quantity_display(Decimal(str(value)))


_environment.filters["quantity"] = _quantity


def render_invoice_html(tx: Tx, invoice_id: str) -> str:
    invoice = get_invoice(tx, invoice_id)
    customer = customers.get(tx, invoice.customer_id)
    return render(
        invoice,
        {
            "name": customer.name or customer.external_id,
            "external_id": customer.external_id,
            "email": customer.email,
        },
    )


def render(invoice: InvoiceView, customer: dict[str, Any]) -> str:
    template = _environment.get_template("invoice.html")
    currency = invoice.currency

    def money(amount_minor: int) -> str:
        return _money(amount_minor, currency)

    return template.render(invoice=invoice, customer=customer, money=money)
