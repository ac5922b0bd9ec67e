"""Payments settings, read from ``TALLYBOOK_*`` environment variables via ``kit.settings``.

Without ``TALLYBOOK_STRIPE_API_KEY`` the default provider is ``manual`` (bank transfers marked
paid by finance) and nothing ever calls Stripe.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from tallybook.kit.settings import Settings

STRIPE_TIMEOUT_SECONDS_DEFAULT: Final = 20.0
STRIPE_CONNECT_TIMEOUT_SECONDS_DEFAULT: Final = 5.0
WEBHOOK_TOLERANCE_SECONDS_DEFAULT: Final = 300
#: Days after the first failed attempt on which an invoice is retried (Stripe's smart-retry
#: default is similar: four retries within a week or so).
RETRY_DAYS_DEFAULT: Final = (1, 3, 5, 7)
RETRY_DAYS_COUNT_MAX: Final = 12
RETRY_DAY_MAX: Final = 60
INBOX_ATTEMPTS_MAX_DEFAULT: Final = 8
#: A payment whose outcome is still unknown after this long is polled from the provider.
SYNC_AFTER_MINUTES_DEFAULT: Final = 30


class AfterRetries(StrEnum):
    """What happens to the subscription once every retry failed."""

    UNPAID = "unpaid"
    CANCEL = "cancel"


class InvoiceAfterRetries(StrEnum):
    """What happens to the invoice once every retry failed."""

    LEAVE_OPEN = "leave_open"
    MARK_UNCOLLECTIBLE = "mark_uncollectible"


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() not in ("0", "false", "no", "off", "")


def parse_retry_days(text: str) -> tuple[int, ...]:
    """``"1,3,5,7"`` → ``(1, 3, 5, 7)``: strictly increasing whole days, at most 12 of them.
    An empty string means no retries (the first failure is final)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    days = tuple(int(part) for part in parts)
    if len(days) > RETRY_DAYS_COUNT_MAX:
        raise ValueError(f"at most {RETRY_DAYS_COUNT_MAX} retry days, got {len(days)}")
    if any(day < 0 or day > RETRY_DAY_MAX for day in days):
        raise ValueError(f"retry days must be 0 to {RETRY_DAY_MAX}: {text!r}")
    if any(later <= earlier for earlier, later in zip(days, days[1:], strict=False)):
        raise ValueError(f"retry days must be strictly increasing: {text!r}")
    return days


@dataclass(frozen=True, slots=True)
class PaymentsSettings:
    #: ``TALLYBOOK_STRIPE_API_KEY``: a secret key (``sk_…`` or a restricted ``rk_…``).
    stripe_api_key: str | None = None
    #: ``TALLYBOOK_STRIPE_API_BASE``: another API address (a local stand-in in tests).
    stripe_api_base: str | None = None
    #: ``TALLYBOOK_STRIPE_TIMEOUT_SECONDS`` / ``…_CONNECT_TIMEOUT_SECONDS``: every call has one.
    stripe_timeout_seconds: float = STRIPE_TIMEOUT_SECONDS_DEFAULT
    stripe_connect_timeout_seconds: float = STRIPE_CONNECT_TIMEOUT_SECONDS_DEFAULT
    #: ``TALLYBOOK_STRIPE_OFF_SESSION``: confirm saved cards as merchant-initiated.
    stripe_off_session: bool = True
    #: ``TALLYBOOK_STRIPE_WEBHOOK_SECRETS``: comma-separated ``whsec_…``; several during rotation.
    stripe_webhook_secrets: tuple[str, ...] = ()
    #: ``TALLYBOOK_STRIPE_WEBHOOK_TOLERANCE_SECONDS``: how old a signature's timestamp may be.
    webhook_tolerance_seconds: int = WEBHOOK_TOLERANCE_SECONDS_DEFAULT
    #: ``TALLYBOOK_PAYMENTS_PROVIDER``: ``stripe`` or ``manual`` for customers without a link
    #: (default: stripe when a key is set, else manual).
    default_provider: str = "manual"
    #: ``TALLYBOOK_PAYMENTS_RETRY_DAYS``: e.g. ``1,3,5,7`` (days after the first failure).
    retry_days: tuple[int, ...] = RETRY_DAYS_DEFAULT
    #: ``TALLYBOOK_PAYMENTS_AFTER_RETRIES``: ``unpaid`` or ``cancel`` (the subscription).
    after_retries: AfterRetries = AfterRetries.UNPAID
    #: ``TALLYBOOK_PAYMENTS_INVOICE_AFTER_RETRIES``: ``leave_open`` or ``mark_uncollectible``.
    invoice_after_retries: InvoiceAfterRetries = InvoiceAfterRetries.LEAVE_OPEN
    #: ``TALLYBOOK_PAYMENTS_RETRY_ON_NEW_PAYMENT_METHOD``: retry at once when a customer in
    #: dunning adds or changes a payment method.
    retry_on_new_payment_method: bool = True
    #: ``TALLYBOOK_PAYMENTS_INBOX_ATTEMPTS_MAX``: failures before an inbound event is parked.
    inbox_attempts_max: int = INBOX_ATTEMPTS_MAX_DEFAULT
    #: ``TALLYBOOK_PAYMENTS_SYNC_AFTER_MINUTES``: poll payments still unresolved after this.
    sync_after_minutes: int = SYNC_AFTER_MINUTES_DEFAULT

    @property
    def stripe_configured(self) -> bool:
        return bool(self.stripe_api_key)

    @classmethod
    def from_settings(cls, settings: Settings | None) -> PaymentsSettings:
        env = settings.extra if settings is not None else {}
        api_key = env.get("TALLYBOOK_STRIPE_API_KEY") or None
        secrets = tuple(
            s.strip()
            for s in env.get("TALLYBOOK_STRIPE_WEBHOOK_SECRETS", "").split(",")
            if s.strip()
        )
        provider = env.get("TALLYBOOK_PAYMENTS_PROVIDER", "stripe" if api_key else "manual")
        provider = provider.strip().lower()
        if provider not in ("stripe", "manual"):
            raise ValueError(
                f"TALLYBOOK_PAYMENTS_PROVIDER must be stripe or manual, not {provider!r}"
            )
        if provider == "stripe" and not api_key:
            raise ValueError("TALLYBOOK_PAYMENTS_PROVIDER=stripe needs TALLYBOOK_STRIPE_API_KEY")
        retry_text = env.get("TALLYBOOK_PAYMENTS_RETRY_DAYS")
        return cls(
            stripe_api_key=api_key,
            stripe_api_base=env.get("TALLYBOOK_STRIPE_API_BASE") or None,
            stripe_timeout_seconds=float(
                env.get("TALLYBOOK_STRIPE_TIMEOUT_SECONDS", STRIPE_TIMEOUT_SECONDS_DEFAULT)
            ),
            stripe_connect_timeout_seconds=float(
                env.get(
                    "TALLYBOOK_STRIPE_CONNECT_TIMEOUT_SECONDS",
                    STRIPE_CONNECT_TIMEOUT_SECONDS_DEFAULT,
                )
            ),
            stripe_off_session=_flag(env.get("TALLYBOOK_STRIPE_OFF_SESSION"), True),
            stripe_webhook_secrets=secrets,
            webhook_tolerance_seconds=int(
                env.get(
                    "TALLYBOOK_STRIPE_WEBHOOK_TOLERANCE_SECONDS", WEBHOOK_TOLERANCE_SECONDS_DEFAULT
                )
            ),
            default_provider=provider,
            retry_days=RETRY_DAYS_DEFAULT if retry_text is None else parse_retry_days(retry_text),
            after_retries=AfterRetries(
                env.get("TALLYBOOK_PAYMENTS_AFTER_RETRIES", AfterRetries.UNPAID).strip().lower()
            ),
            invoice_after_retries=InvoiceAfterRetries(
                env.get("TALLYBOOK_PAYMENTS_INVOICE_AFTER_RETRIES", InvoiceAfterRetries.LEAVE_OPEN)
                .strip()
                .lower()
            ),
            retry_on_new_payment_method=_flag(
                env.get("TALLYBOOK_PAYMENTS_RETRY_ON_NEW_PAYMENT_METHOD"), True
            ),
            inbox_attempts_max=int(
                env.get("TALLYBOOK_PAYMENTS_INBOX_ATTEMPTS_MAX", INBOX_ATTEMPTS_MAX_DEFAULT)
            ),
            sync_after_minutes=int(
                env.get("TALLYBOOK_PAYMENTS_SYNC_AFTER_MINUTES", SYNC_AFTER_MINUTES_DEFAULT)
            ),
        )

    @classmethod
    def from_env(cls) -> PaymentsSettings:
        return cls.from_settings(Settings.from_env())
