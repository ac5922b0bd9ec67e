"""Entitlement settings, read from the environment once at the edge and passed down.

| variable | default | |
| --- | --- | --- |
| ``TALLYBOOK_ENTITLEMENTS_PAST_DUE_POLICY`` | ``keep`` | ``keep`` or ``restrict_paid`` |
| ``TALLYBOOK_ENTITLEMENTS_UNPAID_POLICY`` | ``restrict_paid`` | ``keep`` or ``restrict_paid`` |
| ``TALLYBOOK_ENTITLEMENTS_MIRROR`` | ``on`` | ``on`` or ``off``: the API keeps checks' state rows (``entitlements.mirror``, PostgreSQL) |
"""

from __future__ import annotations

from typing import Final

from tallybook.entitlements.domain import Policies, UnpaidPolicy
from tallybook.kit.settings import Settings

PAST_DUE_VARIABLE: Final = "TALLYBOOK_ENTITLEMENTS_PAST_DUE_POLICY"
UNPAID_VARIABLE: Final = "TALLYBOOK_ENTITLEMENTS_UNPAID_POLICY"
MIRROR_VARIABLE: Final = "TALLYBOOK_ENTITLEMENTS_MIRROR"


def policies_from(settings: Settings | None) -> Policies:
    extra = settings.extra if settings is not None else {}
    defaults = Policies()
    try:
        return Policies(
            past_due=UnpaidPolicy(extra.get(PAST_DUE_VARIABLE, defaults.past_due)),
            unpaid=UnpaidPolicy(extra.get(UNPAID_VARIABLE, defaults.unpaid)),
        )
    except ValueError as error:
        raise ValueError(
            f"{PAST_DUE_VARIABLE} and {UNPAID_VARIABLE} take keep or restrict_paid: {error}"
        ) from None


def mirror_enabled(settings: Settings | None) -> bool:
    extra = settings.extra if settings is not None else {}
    value = extra.get(MIRROR_VARIABLE, "on").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{MIRROR_VARIABLE} takes on or off, not {value!r}")
    return value == "on"
