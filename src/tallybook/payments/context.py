"""What payments services need besides a transaction: settings and providers."""

from __future__ import annotations

from dataclasses import dataclass, field

from tallybook.payments.providers import Providers, providers_from_settings
from tallybook.payments.settings import PaymentsSettings


@dataclass(frozen=True)
class PaymentsContext:
    settings: PaymentsSettings = field(default_factory=PaymentsSettings)
    providers: Providers = field(default_factory=Providers)

    @classmethod
    def of(cls, settings: PaymentsSettings) -> PaymentsContext:
        return cls(settings=settings, providers=providers_from_settings(settings))


_by_settings: dict[PaymentsSettings, PaymentsContext] = {}


def context_from_env() -> PaymentsContext:
    """The context of a worker or CLI process, from ``TALLYBOOK_*`` variables (built once per
    distinct configuration: a provider holds an HTTP connection pool)."""
    settings = PaymentsSettings.from_env()
    context = _by_settings.get(settings)
    if context is None:
        context = PaymentsContext.of(settings)
        _by_settings.clear()
        _by_settings[settings] = context
    return context
