"""The one place invoicing talks to grants (credit grants and promotions), per ADR 0002.

Grants was built in parallel with invoicing: this module imports it lazily and answers "no
credits" / "no discounts" when it is absent, so invoices are exact either way. Everything
grants-specific is converted here into invoicing's own plain values
(:class:`~tallybook.invoicing.domain.UnitCredit`, ``MoneyCredit``, ``DiscountTerm``), keeping
the grants objects alongside to hand back when applying:

- ``grants.service.credit_sources(tx, customer, at=)`` → the live grants with their balances;
- ``grants.domain.burn_down(sources, demands)`` → applications, one demand at a time (usage
  demands name the meter's unit asset, ``U_<KEY>``, so grants of every version of a meter
  count), ``grants.domain.remaining_after`` between demands;
- ``grants.service.apply_credits(tx, applications, invoice_id=)`` at finalization;
- ``grants.promotions.discounts_for`` / ``record_discount_use``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from types import ModuleType
from typing import Any

from tallybook.db import Tx
from tallybook.invoicing.domain import (
    DiscountTerm,
    MoneyCredit,
    NoCredits,
    UnitCredit,
    UnitDemand,
)
from tallybook.kit.money import Money

log = logging.getLogger(__name__)


def _module(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def grants_available() -> bool:
    service = _module("tallybook.grants.service")
    domain = _module("tallybook.grants.domain")
    return (
        service is not None
        and domain is not None
        and hasattr(service, "credit_sources")
        and hasattr(service, "apply_credits")
        and hasattr(domain, "burn_down")
        and hasattr(domain, "Demand")
    )


def _field(obj: Any, *names: str) -> Any:
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return None


@dataclass
class GrantsBurner:
    """Burns a customer's credit sources in grants' order (``grants.domain.burn_down``)."""

    sources: list[Any]
    domain: ModuleType
    #: meter id → its unit asset (``U_TOKENS``), filled by the caller before assembly.
    meter_assets: dict[str, str] = field(default_factory=dict)
    #: Every application made, to hand to ``apply_credits`` at finalization.
    applications: list[Any] = field(default_factory=list)

    def _remaining(self) -> list[Any]:
        return list(self.domain.remaining_after(self.sources, self.applications))

    def units(self, demands: Sequence[UnitDemand]) -> list[UnitCredit]:
        if not self.sources or not demands:
            return []
        result: list[UnitCredit] = []
        for demand in demands:  # in line order: each burns what the previous ones left
            asset = self.meter_assets.get(demand.meter_id)
            if asset is not None:
                wanted = self.domain.Demand.units(
                    asset, demand.quantity, key=str(demand.index), meter_id=demand.meter_id
                )
            else:
                wanted = self.domain.UnitDemand(demand.meter_id, demand.quantity, str(demand.index))
            for application in self.domain.burn_down(self._remaining(), [wanted]):
                quantity = application.quantity
                if quantity is None or quantity <= 0:
                    continue
                self.applications.append(application)
                result.append(
                    UnitCredit(
                        demand_index=demand.index,
                        grant_id=application.grant_id,
                        meter_id=demand.meter_id,
                        quantity=Decimal(quantity),
                        source=application,
                    )
                )
        return result

    def money(self, amount: Money) -> list[MoneyCredit]:
        if not self.sources or amount.amount_minor <= 0:
            return []
        wanted = self.domain.Demand.money(amount, key="invoice")
        result = []
        for application in self.domain.burn_down(self._remaining(), [wanted]):
            if application.amount_minor <= 0:
                continue
            self.applications.append(application)
            result.append(
                MoneyCredit(
                    grant_id=application.grant_id,
                    amount_minor=application.amount_minor,
                    source=application,
                )
            )
        return result


def credit_context(
    tx: Tx, customer_id: str, *, currency: str, at: datetime, meter_ids: Sequence[str] = ()
) -> GrantsBurner | NoCredits:
    """The burner for one invoice: the customer's live credit sources, or none."""
    if not grants_available():
        return NoCredits()
    service = importlib.import_module("tallybook.grants.service")
    domain = importlib.import_module("tallybook.grants.domain")
    sources = [
        source
        for source in service.credit_sources(tx, customer_id, at=at)
        if source.currency == currency or source.meter_id is not None
    ]
    if not sources:
        return NoCredits()
    from tallybook.catalog import meters as catalog_meters
    from tallybook.kit.assets import unit_asset_for_meter_key

    assets = {
        meter_id: unit_asset_for_meter_key(catalog_meters.get_meter(tx, meter_id).key)
        for meter_id in sorted(set(meter_ids))
    }
    return GrantsBurner(sources=sources, domain=domain, meter_assets=assets)


def apply_credits(tx: Tx, burner: GrantsBurner | NoCredits, *, invoice_id: str) -> None:
    """Post the credit transfers of an invoice (grants' ids: ``icr:``/``iuc:<invoice>:…``)."""
    if isinstance(burner, NoCredits) or not burner.applications:
        return
    service = importlib.import_module("tallybook.grants.service")
    service.apply_credits(tx, list(burner.applications), invoice_id=invoice_id)


def credit_transfer_ids(invoice_id: str, credits: Sequence[dict[str, Any]]) -> list[str]:
    """The ledger ids of the credit transfers an invoice's recorded credits were posted as."""
    domain = _module("tallybook.grants.domain")
    if domain is None or not hasattr(domain, "invoice_credit_transfer_id"):
        return []
    ids = []
    for credit in credits:
        kind = {"money": "monetary", "units": "usage"}.get(str(credit.get("type")))
        if kind is not None:
            ids.append(
                domain.invoice_credit_transfer_id(
                    invoice_id, str(credit["grant_id"]), domain.GrantKind(kind)
                )
            )
    return list(dict.fromkeys(ids))


def discount_terms(
    tx: Tx, subscription_id: str, *, period_start: datetime, period_end: datetime
) -> list[DiscountTerm]:
    promotions = _module("tallybook.grants.promotions")
    if promotions is None or not hasattr(promotions, "discounts_for"):
        return []
    terms = []
    for term in promotions.discounts_for(
        tx, subscription_id, period_start=period_start, period_end=period_end
    ):
        percent = _field(term, "percent_off")
        amount = _field(term, "amount_off_minor")
        terms.append(
            DiscountTerm(
                redemption_id=str(term.redemption_id),
                code=str(_field(term, "code") or ""),
                percent_off=Decimal(percent) if percent is not None else None,
                amount_off_minor=int(amount) if amount is not None else None,
                currency=_field(term, "currency"),
                source=term,
            )
        )
    return terms


def record_discount_use(
    tx: Tx, redemption_id: str, *, invoice_id: str, period_start: datetime
) -> None:
    promotions = _module("tallybook.grants.promotions")
    if promotions is None or not hasattr(promotions, "record_discount_use"):
        return
    promotions.record_discount_use(
        tx, redemption_id, invoice_id=invoice_id, period_start=period_start
    )


def customers_with_grants(tx: Tx, customer_ids: Sequence[str], *, at: datetime) -> set[str] | None:
    """Customers with an active grant effective at ``at`` (one read for a batch; those
    without one need no ``credit_sources`` call). None when grants is absent."""
    models = _module("tallybook.grants.models")
    if models is None or not grants_available():
        return None
    from sqlalchemy import or_, select

    grant = models.Grant
    found: set[str] = set()
    ids = sorted(set(customer_ids))
    for offset in range(0, len(ids), 500):
        found |= set(
            tx.session.scalars(
                select(grant.customer_id)
                .where(
                    grant.customer_id.in_(ids[offset : offset + 500]),
                    grant.status == "active",
                    grant.effective_at <= at,
                    or_(grant.expires_at.is_(None), grant.expires_at > at),
                )
                .distinct()
            )
        )
    return found


def subscriptions_with_redemptions(tx: Tx, subscription_ids: Sequence[str]) -> set[str] | None:
    """Subscriptions with a promotion redemption (those without one have no discount)."""
    models = _module("tallybook.grants.models")
    if models is None or not hasattr(models, "PromotionRedemption"):
        return None
    from sqlalchemy import select

    redemption = models.PromotionRedemption
    found: set[str] = set()
    ids = sorted(set(subscription_ids))
    for offset in range(0, len(ids), 500):
        found |= {
            s
            for s in tx.session.scalars(
                select(redemption.subscription_id)
                .where(redemption.subscription_id.in_(ids[offset : offset + 500]))
                .distinct()
            )
            if s is not None
        }
    return found
