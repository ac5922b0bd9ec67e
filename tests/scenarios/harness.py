"""Plays a billing scenario against the real services and lists the lines each invoice would
carry, the way invoicing will assemble them:

- at every period boundary (and when a period ends early: an immediate cancellation, a change
  of interval), an invoice dated that instant takes the pending charges whose service has
  started (in-advance fees, prorations) and the lines rated at the end of every period that
  ended (usage per phase, in-arrears fees, minimum true-up);
- usage is the sum of the scenario's usage events inside each requested window (exact,
  half-open), standing in for the metering query.

A script line is ``<instant>  <action> [args]``::

    2027-02-01            subscribe basic [anchor=2027-03-01] [trial=14] [trial_end=cancel]
    2027-03-16 12:00:00   change pro [prorate_now|now_without_proration|period_end]
    2027-03-20            usage tokens 1500
    2027-03-31 23:59:59   cancel now [credit|no_credit] | cancel period_end
    2027-04-02            resume
    2027-06-01            until

An expected table has one line per invoice line, columns separated by two or more spaces::

    2027-03-01   fee_advance   Basic/fee   2027-03-01 → 2027-04-01   10.00
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tallybook.catalog.domain import ChangePolicy
from tallybook.db import Database
from tallybook.kit.clock import TestClock
from tallybook.kit.money import Money
from tallybook.rating import UsageRequest
from tallybook.subscriptions import service
from tallybook.subscriptions.domain import CancelAt, CancelRequest, ChangeRequest, CreateRequest
from tests.fixtures.catalog_factories import create_version
from tests.fixtures.factories import create_customer, create_meter


@dataclass(frozen=True)
class Scenario:
    name: str
    plans: dict[str, dict[str, Any]]
    script: str
    expected: str

    def __str__(self) -> str:
        return self.name


def when(text: str) -> datetime:
    for layout in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
    raise ValueError(f"bad instant {text!r}")


def show(instant: datetime) -> str:
    if instant.second:
        return instant.strftime("%Y-%m-%d %H:%M:%S")
    if instant.hour or instant.minute:
        return instant.strftime("%Y-%m-%d %H:%M")
    return instant.strftime("%Y-%m-%d")


def parse_table(text: str) -> list[tuple[str, ...]]:
    rows = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rows.append(tuple(re.split(r"\s{2,}", line)))
    return rows


def format_table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))] if rows else []
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows
    )


@dataclass
class Player:
    db: Database
    clock: TestClock
    plans: dict[str, dict[str, Any]]
    versions: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    meters: dict[str, str] = field(default_factory=dict)
    usage_events: list[tuple[datetime, str, Decimal]] = field(default_factory=list)
    rows: list[tuple[str, ...]] = field(default_factory=list)
    billed_periods: set[str] = field(default_factory=set)
    subscription_id: str | None = None
    customer_id: str = ""

    def setup(self) -> None:
        with self.db.transaction() as tx:
            self.customer_id = create_customer(tx).id
            for name, spec in self.plans.items():
                prices = []
                for price in spec.get("prices", []):
                    price = dict(price)
                    meter_key = price.pop("meter", None)
                    if meter_key is not None:
                        if meter_key not in self.meters:
                            self.meters[meter_key] = create_meter(
                                tx, key=meter_key, event_type=f"{meter_key}.used"
                            ).id
                        price["meter_id"] = self.meters[meter_key]
                    prices.append(price)
                fields = {k: v for k, v in spec.items() if k != "prices"}
                version = create_version(
                    tx, plan_key=name.lower(), plan_name=name, prices=prices, **fields
                )
                self.versions[name] = version.id
                self.names[version.id] = name

    # Usage and billing --------------------------------------------------------------------

    def usage(self, customer_id: str, request: UsageRequest) -> Decimal:
        key = next(k for k, v in self.meters.items() if v == request.meter_id)
        return sum(
            (
                q
                for at, meter, q in self.usage_events
                if meter == key and request.start <= at < request.end
            ),
            start=Decimal(0),
        )

    def row(
        self,
        billed_at: datetime,
        kind: str,
        version_id: str | None,
        key: str | None,
        start: datetime,
        end: datetime,
        amount_minor: int,
        currency: str,
    ) -> None:
        what = (
            f"{self.names.get(version_id or '', '?')}/{key}"
            if key
            else self.names.get(version_id or "", "commitment")
        )
        money = Money(amount_minor, currency).format().split(" ")[0]
        self.rows.append((show(billed_at), kind, what, f"{show(start)} → {show(end)}", money))

    def bill(self) -> None:
        """An invoice at the current instant."""
        assert self.subscription_id is not None
        now = self.clock.now()
        with self.db.transaction() as tx:
            service.advance_by_id(tx, self.subscription_id)
            for period in service.periods(tx, self.subscription_id):
                if period.status != "ended" or period.id in self.billed_periods:
                    continue
                self.billed_periods.add(period.id)
                if period.kind == "trial":
                    continue
                assert period.id is not None
                rated = service.rate_period(tx, period.id, self.usage)
                for line in rated.lines:
                    self.row(
                        now,
                        str(line.kind),
                        line.plan_version_id,
                        line.price_key,
                        line.service_start,
                        line.service_end,
                        line.amount_minor,
                        line.currency,
                    )
            pending = service.pending_charges(tx, self.subscription_id, now)
            for charge in pending:
                self.row(
                    now,
                    charge.kind,
                    charge.plan_version_id,
                    charge.price_key,
                    charge.service_start_at,
                    charge.service_end_at,
                    charge.amount_minor,
                    charge.currency,
                )
            if pending:
                service.mark_charges_invoiced(tx, [c.id for c in pending], f"in_{len(self.rows)}")

    def next_boundary(self) -> datetime | None:
        assert self.subscription_id is not None
        with self.db.read() as tx:
            sub = service.view(tx, self.subscription_id)
        if sub.status == "trialing":
            return sub.trial_end_at
        if sub.status in ("active", "past_due", "unpaid"):
            return sub.current_period_end_at
        return None

    def run_until(self, target: datetime) -> None:
        while self.subscription_id is not None:
            boundary = self.next_boundary()
            if boundary is None or boundary > target:
                break
            self.clock.set(boundary)
            self.bill()
        self.clock.set(max(target, self.clock.now()))

    def period_ended_now(self) -> bool:
        assert self.subscription_id is not None
        with self.db.read() as tx:
            return any(
                p.status == "ended" and p.id not in self.billed_periods
                for p in service.periods(tx, self.subscription_id)
            )

    # Actions ------------------------------------------------------------------------------

    def act(self, action: str, args: list[str]) -> None:
        options = dict(a.split("=", 1) for a in args if "=" in a)
        flags = [a for a in args if "=" not in a]
        with self.db.transaction() as tx:
            if action == "subscribe":
                result = service.create(
                    tx,
                    CreateRequest(
                        customer=self.customer_id,
                        plan_version_id=self.versions[flags[0]],
                        billing_anchor=when(options["anchor"]) if "anchor" in options else None,
                        trial_period_days=int(options["trial"]) if "trial" in options else None,
                        trial_end_behavior=options.get("trial_end", "convert"),
                    ),
                )
                self.subscription_id = result.subscription.id
            elif action == "change":
                assert self.subscription_id is not None
                policy = ChangePolicy(flags[1]) if len(flags) > 1 else None
                request = ChangeRequest(plan_version_id=self.versions[flags[0]], policy=policy)
                service.change_plan(tx, self.subscription_id, request)
            elif action == "cancel":
                assert self.subscription_id is not None
                if flags[0] == "now":
                    credit = None if len(flags) < 2 else flags[1] == "credit"
                    cancel = CancelRequest(at=CancelAt.NOW, credit_unused=credit)
                else:
                    cancel = CancelRequest(at=CancelAt.PERIOD_END)
                service.cancel(tx, self.subscription_id, cancel)
            elif action == "resume":
                assert self.subscription_id is not None
                service.resume(tx, self.subscription_id)
            else:
                raise ValueError(f"unknown action {action!r}")
        if action == "subscribe" or self.period_ended_now():
            self.bill()


def play(db: Database, scenario: Scenario) -> list[tuple[str, ...]]:
    steps = []
    for raw in scenario.script.strip().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instant_text, rest = re.split(r"\s{2,}", line, maxsplit=1)
        steps.append((when(instant_text), rest.split()))
    clock = TestClock(steps[0][0])
    player = Player(db.with_clock(clock), clock, scenario.plans)
    player.setup()
    for instant, words in steps:
        player.run_until(instant)
        action, args = words[0], words[1:]
        if action == "until":
            continue
        if action == "usage":
            player.usage_events.append((instant, args[0], Decimal(args[1])))
            continue
        player.act(action, args)
    return player.rows
