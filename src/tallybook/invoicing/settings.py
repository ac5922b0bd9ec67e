"""Invoicing settings from ``TALLYBOOK_*`` environment variables (via ``kit.settings``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from tallybook.kit.settings import Settings

NUMBER_PREFIX_DEFAULT: Final = "TB"
#: How far back the period-close job looks for ended periods still to invoice (each minute)…
CLOSE_LOOKBACK_DAYS_DEFAULT: Final = 35
#: …and the daily sweep (anything older the renewals may have left behind).
SWEEP_LOOKBACK_DAYS_DEFAULT: Final = 400
#: Periods per transaction in the period-close job.
CLOSE_BATCH_DEFAULT: Final = 250
CLOSE_BATCH_MAX: Final = 1000


@dataclass(frozen=True, slots=True)
class InvoicingSettings:
    #: ``TALLYBOOK_LATE_EVENT_GRACE_HOURS``: after a period ends, wait this long for late events
    #: before finalizing its invoice (a draft shows it meanwhile).
    late_event_grace_hours: int = 1
    #: ``TALLYBOOK_INVOICE_NUMBER_PREFIX``: invoices are numbered ``<prefix>-<year>-000123``.
    number_prefix: str = NUMBER_PREFIX_DEFAULT
    #: ``TALLYBOOK_INVOICE_CLOSE_LOOKBACK_DAYS``.
    close_lookback_days: int = CLOSE_LOOKBACK_DAYS_DEFAULT
    #: ``TALLYBOOK_INVOICE_SWEEP_LOOKBACK_DAYS``.
    sweep_lookback_days: int = SWEEP_LOOKBACK_DAYS_DEFAULT
    #: ``TALLYBOOK_INVOICE_CLOSE_BATCH``: periods per transaction (1 to 1,000).
    close_batch: int = CLOSE_BATCH_DEFAULT

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> InvoicingSettings:
        settings = settings or Settings.from_env()
        env = settings.extra
        prefix = env.get("TALLYBOOK_INVOICE_NUMBER_PREFIX", NUMBER_PREFIX_DEFAULT).strip()
        if not prefix.replace("-", "").isalnum() or len(prefix) > 12:
            raise ValueError("TALLYBOOK_INVOICE_NUMBER_PREFIX must be 1-12 letters or digits")
        return cls(
            late_event_grace_hours=settings.late_event_grace_hours,
            number_prefix=prefix.upper(),
            close_lookback_days=int(
                env.get("TALLYBOOK_INVOICE_CLOSE_LOOKBACK_DAYS", CLOSE_LOOKBACK_DAYS_DEFAULT)
            ),
            sweep_lookback_days=int(
                env.get("TALLYBOOK_INVOICE_SWEEP_LOOKBACK_DAYS", SWEEP_LOOKBACK_DAYS_DEFAULT)
            ),
            close_batch=max(
                1,
                min(
                    CLOSE_BATCH_MAX,
                    int(env.get("TALLYBOOK_INVOICE_CLOSE_BATCH", CLOSE_BATCH_DEFAULT)),
                ),
            ),
        )
