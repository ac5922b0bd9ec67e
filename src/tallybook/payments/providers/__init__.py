"""Payment providers: the interface (``base``), Stripe (``stripe``) and manual (``manual``).

:func:`providers_from_settings` builds the set a process uses; services receive it, so tests
can pass a provider pointed at a local stand-in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tallybook.kit.errors import Conflict
from tallybook.payments.errors import PaymentsCode
from tallybook.payments.providers.base import PaymentProvider, ProviderName
from tallybook.payments.providers.manual import ManualProvider
from tallybook.payments.settings import PaymentsSettings


@dataclass
class Providers:
    """The providers a process can use, and which one customers without a link get."""

    default: ProviderName = ProviderName.MANUAL
    by_name: dict[ProviderName, PaymentProvider] = field(
        default_factory=lambda: {ProviderName.MANUAL: ManualProvider()}
    )

    def get(self, name: str) -> PaymentProvider:
        provider = self.by_name.get(ProviderName(name))
        if provider is None:
            raise Conflict(
                PaymentsCode.PROVIDER_NOT_CONFIGURED,
                f"the {name} provider is not configured (set TALLYBOOK_STRIPE_API_KEY)",
                param="provider",
            )
        return provider

    def configured(self, name: str) -> bool:
        return ProviderName(name) in self.by_name


def providers_from_settings(settings: PaymentsSettings) -> Providers:
    by_name: dict[ProviderName, PaymentProvider] = {ProviderName.MANUAL: ManualProvider()}
    if settings.stripe_api_key:
        from tallybook.payments.providers.stripe import StripeProvider

        by_name[ProviderName.STRIPE] = StripeProvider(
            settings.stripe_api_key,
            api_base=settings.stripe_api_base,
            timeout_seconds=settings.stripe_timeout_seconds,
            connect_timeout_seconds=settings.stripe_connect_timeout_seconds,
            off_session=settings.stripe_off_session,
        )
    return Providers(default=ProviderName(settings.default_provider), by_name=by_name)
