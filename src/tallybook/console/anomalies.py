"""The anomaly pages: "is anything wrong?" in one place, with a count badge in the nav.

An anomaly page is data: a key (its URL), a title, what it means and what to do about it, a
``count`` for the badge, and a ``context`` function plus a template for the page itself. Slots
(no functions yet) are listed with the domain they arrive with, so people can see what the
console will watch. To fill a slot, write the two functions and a template in a module of this
package and replace the slot in :data:`ANOMALY_PAGES` (see docs/console.md).
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from tallybook.console.roles import Role
from tallybook.db import Tx

if TYPE_CHECKING:
    from tallybook.console.web import ConsoleContext

log = logging.getLogger(__name__)

#: Badge counts are cached this long per process (and dropped after any console action).
BADGE_TTL_SECONDS: Final = 10.0
#: Counts stop here; the badge shows "99+".
BADGE_COUNT_MAX: Final = 99

Count = Callable[[Tx], int]
PageContext = Callable[[Tx, "ConsoleContext"], Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class AnomalyPage:
    key: str
    title: str
    #: What it means and what a person should do (shown on the page).
    description: str
    count: Count | None = None
    context: PageContext | None = None
    template: str | None = None
    role: Role = Role.VIEWER
    #: For a slot: the domain whose arrival fills it.
    arrives_with: str = ""

    @property
    def is_slot(self) -> bool:
        return self.count is None or self.context is None or self.template is None

    @property
    def url(self) -> str:
        return f"/console/anomalies/{self.key}"


def slot(key: str, title: str, description: str, *, arrives_with: str) -> AnomalyPage:
    return AnomalyPage(key=key, title=title, description=description, arrives_with=arrives_with)


def _webhooks_page() -> AnomalyPage:
    from tallybook.console import anomaly_webhooks

    return anomaly_webhooks.PAGE


def _payments_page() -> AnomalyPage:
    from tallybook.console import anomaly_payments

    return anomaly_payments.PAGE


def _metering_pages() -> tuple[AnomalyPage, AnomalyPage]:
    from tallybook.console import anomaly_metering

    return anomaly_metering.DEAD_LETTERS, anomaly_metering.METERING_LAG


def _reconciliation_page() -> AnomalyPage:
    from tallybook.console import anomaly_reconciliation

    return anomaly_reconciliation.PAGE


def anomaly_pages() -> list[AnomalyPage]:
    """In nav order."""
    return [
        _reconciliation_page(),
        _metering_pages()[0],
        _webhooks_page(),
        _payments_page(),
        _metering_pages()[1],
    ]


def page_by_key(key: str) -> AnomalyPage | None:
    return next((page for page in anomaly_pages() if page.key == key), None)


# Badges ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Badge:
    key: str
    title: str
    url: str
    count: int

    @property
    def text(self) -> str:
        return f"{BADGE_COUNT_MAX}+" if self.count > BADGE_COUNT_MAX else str(self.count)


_cache_lock = threading.Lock()
_cache: weakref.WeakKeyDictionary[Any, tuple[float, list[Badge]]] = weakref.WeakKeyDictionary()


def badges(tx: Tx) -> list[Badge]:
    """Counts for every built anomaly page, cached for ``BADGE_TTL_SECONDS`` per database."""
    key = tx.session.get_bind()
    now = time.monotonic()
    cached = _cache.get(key)
    if cached is not None and cached[0] > now:
        return cached[1]
    result = []
    for page in anomaly_pages():
        if page.count is None:
            continue
        try:
            with tx.session.begin_nested():
                count = page.count(tx)
        except Exception:  # a broken counter must not take every page down
            log.exception("anomaly count failed", extra={"anomaly": page.key})
            continue
        result.append(Badge(page.key, page.title, page.url, count))
    with _cache_lock:
        _cache[key] = (now + BADGE_TTL_SECONDS, result)
    return result


def forget_badges() -> None:
    """Drop cached counts (after an action, which may have fixed or caused an anomaly)."""
    with _cache_lock:
        _cache.clear()
