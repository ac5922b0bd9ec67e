"""Alerts fired by what checks see: ``limit.exceeded`` when a check is refused for a limit,
``limit.threshold_reached`` when spend reaches a threshold. Each fires once per (customer,
subject, period, threshold), decided by a unique row; a process memo keeps a refused check from
writing on every request after the first."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from tallybook.db import Database, Tx
from tallybook.entitlements import spend
from tallybook.entitlements.domain import ZERO, CheckResult, Reason
from tallybook.kit.quantity import quantity_text

MEMO_SIZE_MAX: Final = 100_000

_memo: set[tuple[str, str, datetime, str, int]] = set()
_memo_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class AlertSpec:
    customer_id: str
    subject: str
    period_start: datetime
    kind: str
    threshold_percent: int
    measured: str
    limit_value: str
    data: dict[str, object]

    @property
    def key(self) -> tuple[str, str, datetime, str, int]:
        return (
            self.customer_id,
            self.subject,
            self.period_start,
            self.kind,
            self.threshold_percent,
        )


def alerts_due(result: CheckResult) -> list[AlertSpec]:
    """What this check's answer says should have fired (pure)."""
    specs: list[AlertSpec] = []
    if result.reason is Reason.LIMIT_EXCEEDED and result.period_start is not None:
        used = (result.used or ZERO) + (result.reserved or ZERO)
        specs.append(
            AlertSpec(
                customer_id=result.customer_id,
                subject=result.feature.id,
                period_start=result.period_start,
                kind="exceeded",
                threshold_percent=0,
                measured=quantity_text(used),
                limit_value=quantity_text(result.effective_limit or ZERO),
                data={"reason": str(result.reason), "feature": result.feature.key},
            )
        )
    facts = result.spend
    if facts is not None:
        if result.reason is Reason.SPEND_LIMIT_EXCEEDED:
            specs.append(
                AlertSpec(
                    customer_id=result.customer_id,
                    subject=spend.SPEND,
                    period_start=facts.period_start,
                    kind="exceeded",
                    threshold_percent=0,
                    measured=str(facts.spend_after_minor),
                    limit_value=str(facts.limit_minor),
                    data={
                        "reason": str(result.reason),
                        "feature": result.feature.key,
                        "currency": facts.currency,
                    },
                )
            )
        for threshold in spend.thresholds_reached(facts):
            specs.append(
                AlertSpec(
                    customer_id=result.customer_id,
                    subject=spend.SPEND,
                    period_start=facts.period_start,
                    kind="threshold",
                    threshold_percent=threshold,
                    measured=str(facts.spend_minor),
                    limit_value=str(facts.limit_minor),
                    data={
                        "currency": facts.currency,
                        "spend_minor": facts.spend_minor,
                        "limit_minor": facts.limit_minor,
                        "period_end": facts.period_end,
                    },
                )
            )
    return specs


def record(tx: Tx, specs: list[AlertSpec]) -> int:
    fired = 0
    for spec in specs:
        fired += spend.record_alert(
            tx,
            customer_id=spec.customer_id,
            subject=spec.subject,
            period_start=spec.period_start,
            kind=spec.kind,
            threshold_percent=spec.threshold_percent,
            measured=spec.measured,
            limit_value=spec.limit_value,
            data=spec.data,
        )
    return fired


def fire_for_check(db: Database, result: CheckResult) -> int:
    """After a (read-only) check: fire what it saw, in a short write transaction, unless this
    process already did."""
    return fire(db, unfired(result))


def unfired(result: CheckResult) -> list[AlertSpec]:
    """The alerts a check saw that this process has not fired yet (no I/O: the API's event
    loop asks this, and hands :func:`fire` to a worker thread only when something is due)."""
    return [spec for spec in alerts_due(result) if spec.key not in _memo]


def fire(db: Database, specs: list[AlertSpec]) -> int:
    """Record ``specs`` in a short write transaction, once per process."""
    if not specs:
        return 0
    with db.transaction(actor="system:entitlements.alerts") as tx:
        fired = record(tx, specs)
    with _memo_lock:
        if len(_memo) + len(specs) > MEMO_SIZE_MAX:
            _memo.clear()
        _memo.update(spec.key for spec in specs)
    return fired
