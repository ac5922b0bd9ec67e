"""Plays an invoicing scenario against the real services and jobs, and lists every finalized
invoice's lines and totals, then the ledger balances.

The script language extends the subscriptions harness (``tests/scenarios/harness.py``)::

    2027-01-01             subscribe Basic
    2027-01-10             usage tokens 1500
    2027-02-03             usage tokens 200 at=2027-01-20      # a late event
    2027-01-16             change Pro [prorate_now|period_end] [invoice_now]
    2027-01-20             cancel now [credit|no_credit] | cancel period_end
    2027-01-15             threshold                             # run the threshold job
    2027-01-15             customer_threshold 5000               # a per-customer override
    2027-02-02             pay <invoice number>                  # payment of the amount due
    2027-02-02             credit_note <invoice number> [<line position>=<amount>]
    2027-02-02             void <invoice number>
    2027-01-01             grant 25.00 [priority=N] [expires=2027-02-01]   # monetary credit grant
    2027-01-01             grant 500 tokens [priority=N]                   # usage credit grant
    2027-01-01             promotion CODE percent 20 [once|forever|repeating=N]
    2027-01-01             promotion CODE amount 5.00 [once|forever|repeating=N]
    2027-04-01             until

Between actions the clock walks through every period boundary, one grace hour and a minute
past it, running the subscriptions and period-close jobs there (and once more at each action's
instant). The expected table lists, per invoice in number order, one row per line (a usage
line whose billable quantity usage credits reduced ends with ``credited <units>``), a
``discount`` and a ``credits`` row when the invoice has them, and a total row; then ``ledger``
rows::

    TB-2027-000001  opening  fee_advance     Basic/fee     10.00
    TB-2027-000001  discount  -2.00
    TB-2027-000001  credits   -5.00
    TB-2027-000001  total    8.00  due 3.00
    ledger  accounts_receivable  10.00
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from tallybook.catalog.domain import ChangePolicy
from tallybook.db import Database
from tallybook.grants import promotions
from tallybook.grants import service as grants
from tallybook.invoicing import postings
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.models import Invoice
from tallybook.invoicing.tasks import close_due, threshold_due
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.clock import TestClock, isoformat_z
from tallybook.kit.ids import new_id
from tallybook.kit.money import Money
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.ledger.values import AccountKind, AccountSpec, Leg, TransferRequest
from tallybook.metering import service as metering
from tallybook.subscriptions import service as subscriptions
from tallybook.subscriptions.domain import CancelAt, CancelRequest, ChangeRequest, CreateRequest
from tallybook.subscriptions.tasks import advance_due
from tallybook.work.schedule import JobContext
from tests.fixtures.catalog_factories import create_version
from tests.fixtures.factories import create_customer, create_meter
from tests.scenarios.harness import parse_table, when

GRACE = timedelta(hours=1, minutes=1)
LEDGER_CODES = (
    "accounts_receivable",
    "customer_balance",
    "revenue_fees",
    "revenue_usage",
    "discounts",
    "credit_grant",
    "promotion_expense",
    "bad_debt",
)


@dataclass(frozen=True)
class InvoiceScenario:
    name: str
    plans: dict[str, dict[str, Any]]
    script: str
    expected: str

    def __str__(self) -> str:
        return self.name


@dataclass
class Player:
    db: Database
    clock: TestClock
    plans: dict[str, dict[str, Any]]
    versions: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    meters: dict[str, str] = field(default_factory=dict)
    customer_id: str = ""
    external_id: str = ""
    subscription_id: str | None = None

    def setup(self) -> None:
        with self.db.transaction() as tx:
            customer = create_customer(tx)
            self.customer_id, self.external_id = customer.id, customer.external_id
            for name, spec in self.plans.items():
                prices = []
                for price in spec.get("prices", []):
                    price = dict(price)
                    meter_key = price.pop("meter", None)
                    if meter_key is not None:
                        if meter_key not in self.meters:
                            self.meters[meter_key] = create_meter(
                                tx,
                                key=meter_key,
                                event_type=f"{meter_key}.used",
                                value_path="value",
                            ).id
                        price["meter_id"] = self.meters[meter_key]
                    prices.append(price)
                fields = {k: v for k, v in spec.items() if k != "prices"}
                version = create_version(
                    tx, plan_key=name.lower(), plan_name=name, prices=prices, **fields
                )
                self.versions[name] = version.id
                self.names[version.id] = name

    # Time ---------------------------------------------------------------------------------

    def jobs(self) -> None:
        context = JobContext(owner="scenario")
        advance_due(self.db, context)
        close_due(self.db, context)

    def next_boundary(self) -> datetime | None:
        if self.subscription_id is None:
            return None
        with self.db.read() as tx:
            sub = subscriptions.view(tx, self.subscription_id)
        if sub.status == "trialing":
            return sub.trial_end_at
        if sub.status in ("active", "past_due", "unpaid"):
            return sub.current_period_end_at
        return None

    def run_until(self, target: datetime) -> None:
        while True:
            boundary = self.next_boundary()
            if boundary is None or boundary + GRACE > target:
                break
            self.clock.set(max(self.clock.now(), boundary + GRACE))
            self.jobs()
        if target > self.clock.now():
            self.clock.set(target)
        self.jobs()

    # Actions ------------------------------------------------------------------------------

    def invoice_by_number(self, number: str) -> InvoiceView:
        with self.db.read() as tx:
            return invoicing.get_invoice(tx, number)

    def act(self, instant: datetime, action: str, args: list[str]) -> None:
        options = dict(a.split("=", 1) for a in args if "=" in a and not a[0].isdigit())
        flags = [a for a in args if a not in {f"{k}={v}" for k, v in options.items()}]
        if action == "usage":
            at = when(options["at"].replace("T", " ")) if "at" in options else instant
            event = {
                "specversion": "1.0",
                "id": new_id("ev"),
                "source": "scenario",
                "type": f"{flags[0]}.used",
                "subject": self.external_id,
                "time": isoformat_z(at),
                "data": {"value": flags[1]},
            }
            with self.db.transaction() as tx:
                outcome = metering.ingest_events(tx, [event]).outcomes[0]
            assert outcome.status == "accepted", outcome
            return
        if action == "threshold":
            self.clock.advance(minutes=1)
            threshold_due(self.db, JobContext(owner="scenario"))
            return
        with self.db.transaction() as tx:
            if action == "subscribe":
                result = subscriptions.create(
                    tx,
                    CreateRequest(
                        customer=self.customer_id,
                        plan_version_id=self.versions[flags[0]],
                        trial_period_days=int(options["trial"]) if "trial" in options else None,
                    ),
                )
                self.subscription_id = result.subscription.id
            elif action == "change":
                assert self.subscription_id is not None
                policy = next(
                    (ChangePolicy(f) for f in flags[1:] if f in tuple(ChangePolicy)), None
                )
                subscriptions.change_plan(
                    tx,
                    self.subscription_id,
                    ChangeRequest(
                        plan_version_id=self.versions[flags[0]],
                        policy=policy,
                        invoice_now="invoice_now" in flags,
                    ),
                )
            elif action == "cancel":
                assert self.subscription_id is not None
                if flags[0] == "now":
                    credit = None if len(flags) < 2 else flags[1] == "credit"
                    request = CancelRequest(at=CancelAt.NOW, credit_unused=credit)
                else:
                    request = CancelRequest(at=CancelAt.PERIOD_END)
                subscriptions.cancel(tx, self.subscription_id, request)
            elif action == "customer_threshold":
                invoicing.set_billing_threshold(tx, self.customer_id, int(flags[0]))
            elif action == "pay":
                invoice = invoicing.get_invoice(tx, flags[0])
                assert invoice.id is not None
                # What the payments domain does: its own transfer, then record_payment.
                payment_id = new_id("pay")
                amount = Money(invoice.amount_remaining_minor, invoice.currency)
                clearing = ledger.open_account(
                    tx, AccountSpec.system("manual_clearing", amount.currency, AccountKind.ASSET)
                )
                receivable = postings.account_id(tx, postings.AR, amount.currency, self.customer_id)
                ledger.create_transfer(
                    tx,
                    TransferRequest(
                        id=f"payment:{payment_id}",
                        legs=[Leg.debit(clearing.id, amount), Leg.credit(receivable, amount)],
                        reason_code="payment",
                    ),
                ).raise_for_error()
                invoicing.record_payment(
                    tx,
                    invoice.id,
                    payment_id=payment_id,
                    amount_minor=amount.amount_minor,
                    currency=invoice.currency,
                    at=instant,
                )
            elif action == "credit_note":
                invoice = invoicing.get_invoice(tx, flags[0])
                assert invoice.id is not None
                lines = None
                if len(flags) > 1:
                    lines = []
                    for item in flags[1:]:
                        position, amount = item.split("=")
                        line_id = invoice.lines[int(position) - 1].id
                        assert line_id is not None
                        lines.append(invoicing.CreditLine(line_id, int(Decimal(amount) * 100)))
                invoicing.create_credit_note(tx, invoice.id, lines=lines)
            elif action == "grant":
                self.grant(tx, flags, options)
            elif action == "promotion":
                self.promotion(tx, flags)
            elif action == "void":
                invoice = invoicing.get_invoice(tx, flags[0])
                assert invoice.id is not None
                invoicing.void(tx, invoice.id)
            else:
                raise ValueError(f"unknown action {action!r}")
        if action in ("subscribe", "change", "cancel"):
            self.jobs()

    def grant(self, tx: Any, flags: list[str], options: dict[str, str]) -> None:
        fields: dict[str, Any] = {"customer": self.customer_id, "reason": "scenario"}
        if "priority" in options:
            fields["priority"] = int(options["priority"])
        if "expires" in options:
            fields["expires_at"] = when(options["expires"])
        if len(flags) > 1:  # usage: <units> <meter>
            fields.update(kind="usage", meter=flags[1], quantity=Decimal(flags[0]))
        else:
            fields["amount_minor"] = int(Decimal(flags[0]) * 100)
        grants.issue_grant(tx, grants.GrantInput(**fields))

    def promotion(self, tx: Any, flags: list[str]) -> None:
        code, kind, value, *rest = flags
        duration = rest[0] if rest else "once"
        periods = None
        if duration.startswith("repeating="):
            duration, periods = "repeating", int(duration.split("=", 1)[1])
        if kind == "percent":
            terms: dict[str, Any] = {"kind": "percent_off", "percent_off": Decimal(value)}
        else:
            terms = {
                "kind": "amount_off",
                "amount_off_minor": int(Decimal(value) * 100),
                "currency": "USD",
            }
        promotions.create_code(
            tx,
            promotions.PromotionCodeInput(
                code=code, duration=duration, duration_periods=periods, **terms
            ),
        )
        assert self.subscription_id is not None
        promotions.redeem(tx, code, customer=self.customer_id, subscription=self.subscription_id)

    # Output -------------------------------------------------------------------------------

    def rows(self) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = []
        with self.db.read() as tx:
            ids = list(
                tx.session.scalars(
                    select(Invoice.id)
                    .where(Invoice.number.is_not(None))
                    .order_by(Invoice.finalized_at, Invoice.number)
                )
            )
            invoices = [invoicing.get_invoice(tx, invoice_id) for invoice_id in ids]
            for invoice in invoices:
                number = invoice.number or "?"
                for line in invoice.lines:
                    what = (
                        f"{self.names.get(line.plan_version_id or '', '-')}/{line.price_key or '-'}"
                    )
                    if "minimum_true_up" in (line.kind, line.breakdown.get("adjusts")):
                        what = "commitment"
                    row: tuple[str, ...] = (
                        number,
                        invoice.kind,
                        line.kind,
                        what,
                        _money(line.amount_minor, line.currency),
                    )
                    if line.usage_credit_quantity:
                        row += (f"credited {line.usage_credit_quantity.normalize():f}",)
                    rows.append(row)
                if invoice.discount_minor:
                    rows.append(
                        (number, "discount", _money(-invoice.discount_minor, invoice.currency))
                    )
                if invoice.credits_applied_minor:
                    rows.append(
                        (
                            number,
                            "credits",
                            _money(-invoice.credits_applied_minor, invoice.currency),
                        )
                    )
                total: tuple[str, ...] = (
                    number,
                    "total",
                    _money(invoice.total_minor, invoice.currency),
                    f"due {_money(invoice.amount_due_minor, invoice.currency)}",
                )
                if invoice.status != "open":
                    total += (invoice.status,)
                rows.append(total)
            accounts = ledger.list_accounts(tx, PageRequest(limit=100)).data
            balances: dict[str, int] = {}
            for account in accounts:
                if account.code in LEDGER_CODES and not account.currency.startswith("U_"):
                    posted = ledger.balance(tx, account.id).posted.amount_minor
                    balances[account.code] = balances.get(account.code, 0) + posted
            for code in LEDGER_CODES:
                if balances.get(code):
                    rows.append(("ledger", code, _money(balances[code], "USD")))
            assert ledger.check_invariants(tx).ok
        return rows


def _money(amount_minor: int, currency: str) -> str:
    return Money(amount_minor, currency).format().split(" ")[0]


def play(db: Database, scenario: InvoiceScenario) -> list[tuple[str, ...]]:
    steps = []
    for raw in scenario.script.strip().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        instant_text, rest = re.split(r"\s{2,}", line, maxsplit=1)
        steps.append((when(instant_text), rest.split()))
    clock = TestClock(steps[0][0].replace(tzinfo=UTC))
    player = Player(db.with_clock(clock), clock, scenario.plans)
    player.setup()
    for instant, words in steps:
        player.run_until(instant)
        action, args = words[0], words[1:]
        if action == "until":
            continue
        player.act(instant, action, args)
    return player.rows()


def expected_rows(text: str) -> list[tuple[str, ...]]:
    """The expected table; ``# …`` after a row is a comment."""
    return parse_table("\n".join(line.split("#", 1)[0] for line in text.splitlines()))
