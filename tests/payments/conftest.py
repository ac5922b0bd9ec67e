"""Fixtures for payments tests: localstripe (started by the tests, one per worker), providers
and contexts pointed at it, a customer with an open invoice, and an outbox relay that runs this
domain's handlers with the test's context."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tallybook.db import Database
from tallybook.invoicing import service as invoicing
from tallybook.invoicing.views import InvoiceView
from tallybook.kit.clock import utc
from tallybook.kit.pagination import PageRequest
from tallybook.ledger import service as ledger
from tallybook.payments import repository
from tallybook.payments.context import PaymentsContext
from tallybook.payments.models import Collection, Payment
from tallybook.payments.providers import Providers
from tallybook.payments.providers.base import ProviderName
from tallybook.payments.providers.manual import ManualProvider
from tallybook.payments.providers.stripe import StripeProvider
from tallybook.payments.service import postings
from tallybook.payments.settings import PaymentsSettings
from tallybook.payments.tasks import outbox_handlers
from tallybook.work.outbox import relay_once
from tests.fixtures.catalog_factories import flat_price
from tests.fixtures.invoicing_factories import Billing, setup_billing

STRIPE_TEST_KEY = "sk_test_tallybook"
WEBHOOK_SECRET = "whsec_test_current"
OLD_WEBHOOK_SECRET = "whsec_test_previous"
#: localstripe refuses ``off_session`` on confirm (real Stripe takes it); tests turn it off.
LOCALSTRIPE_OFF_SESSION = False
DECLINING_CARD = "4000000000000341"
GOOD_CARD = "4242424242424242"


@pytest.fixture(scope="session")
def localstripe_url() -> Iterator[str]:
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("localstripe_server.py"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    port_line = process.stdout.readline()
    if not port_line.strip().isdigit():
        process.kill()
        pytest.fail(f"localstripe did not start: {port_line!r}")
    try:
        yield f"http://127.0.0.1:{int(port_line)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def stripe_settings(url: str, **overrides: Any) -> PaymentsSettings:
    fields: dict[str, Any] = {
        "stripe_api_key": STRIPE_TEST_KEY,
        "stripe_api_base": url,
        "stripe_timeout_seconds": 10.0,
        "stripe_off_session": LOCALSTRIPE_OFF_SESSION,
        "stripe_webhook_secrets": (WEBHOOK_SECRET,),
        "default_provider": "stripe",
    }
    fields.update(overrides)
    return PaymentsSettings(**fields)


def stripe_context(
    url: str, *, provider: StripeProvider | None = None, **overrides: Any
) -> PaymentsContext:
    settings = stripe_settings(url, **overrides)
    stripe_provider = provider or StripeProvider(
        STRIPE_TEST_KEY,
        api_base=url,
        timeout_seconds=settings.stripe_timeout_seconds,
        off_session=settings.stripe_off_session,
    )
    return PaymentsContext(
        settings=settings,
        providers=Providers(
            default=ProviderName.STRIPE,
            by_name={ProviderName.MANUAL: ManualProvider(), ProviderName.STRIPE: stripe_provider},
        ),
    )


@pytest.fixture
def stripe_ctx(localstripe_url: str) -> PaymentsContext:
    return stripe_context(localstripe_url)


@pytest.fixture
def manual_ctx() -> PaymentsContext:
    return PaymentsContext(settings=PaymentsSettings(stripe_webhook_secrets=(WEBHOOK_SECRET,)))


def stripe_client(ctx: PaymentsContext) -> Any:
    provider = ctx.providers.by_name[ProviderName.STRIPE]
    assert isinstance(provider, StripeProvider)
    return provider.client


def attach_card(ctx: PaymentsContext, stripe_customer_id: str, number: str) -> str:
    """Save a card on the Stripe customer and make it the default (what Stripe Elements or
    Checkout would do for the customer)."""
    client = stripe_client(ctx)
    method = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(method["id"], params={"customer": stripe_customer_id})
    client.v1.customers.update(
        stripe_customer_id, params={"invoice_settings": {"default_payment_method": method["id"]}}
    )
    return str(method["id"])


def create_stripe_customer(ctx: PaymentsContext, email: str = "buyer@example.com") -> str:
    return str(stripe_client(ctx).v1.customers.create(params={"email": email})["id"])


def charges_of(ctx: PaymentsContext, stripe_customer_id: str) -> list[Any]:
    listing = stripe_client(ctx).v1.charges.list(
        params={"customer": stripe_customer_id, "limit": 100}
    )
    return list(listing["data"])


@dataclass
class World:
    """A customer on a 20.00 USD monthly plan (fee in advance), with its opening invoice."""

    billing: Billing
    ctx: PaymentsContext
    delivered: list[dict[str, int]] = field(default_factory=list)

    @property
    def db(self) -> Database:
        return self.billing.db

    @property
    def customer_id(self) -> str:
        return self.billing.customer_id

    def invoice(self) -> InvoiceView:
        (opening,) = [i for i in self.billing.invoices() if i.kind == "opening"]
        return opening

    @property
    def invoice_id(self) -> str:
        invoice_id = self.invoice().id
        assert invoice_id is not None
        return invoice_id

    def relay(self, rounds: int = 20) -> dict[str, int]:
        """Deliver this domain's outbox messages until none is due."""
        totals: dict[str, int] = {}
        handlers = outbox_handlers(self.ctx)
        for _ in range(rounds):
            outcome = relay_once(self.db, handlers)
            for key, count in outcome.items():
                totals[key] = totals.get(key, 0) + count
            if not any(outcome.values()):
                break
        self.delivered.append(totals)
        return totals

    def outbox_errors(self) -> list[str]:
        from sqlalchemy import select

        from tallybook.work.models import OutboxMessage

        with self.db.read() as tx:
            rows = tx.session.scalars(
                select(OutboxMessage).where(OutboxMessage.last_error.is_not(None))
            )
            return [f"{m.topic} {m.status}: {m.last_error}" for m in rows]

    def collection(self) -> Collection:
        # A committed unit of work keeps loaded rows readable (a read one expires them).
        with self.db.transaction(actor="test") as tx:
            found = repository.collection_for_invoice(tx, self.invoice_id)
        assert found is not None
        return found

    def payments(self) -> list[Payment]:
        with self.db.transaction(actor="test") as tx:
            return repository.payments_of_collection(tx, self.collection().id)

    def receivable_minor(self) -> int:
        """The customer's receivable balance: what the ledger says they owe."""
        with self.db.read() as tx:
            page = ledger.list_accounts(
                tx,
                PageRequest(limit=1),
                customer_id=self.customer_id,
                code=postings.AR,
                currency="USD",
            )
            return ledger.balance(tx, page.data[0].id).posted.amount_minor if page.data else 0

    def clearing_minor(self, provider: str = "stripe") -> int:
        with self.db.read() as tx:
            return postings.clearing_balance(tx, "USD", provider=provider).posted.amount_minor

    def assert_ledger_agrees_with_invoice(self) -> None:
        """The ADR 0002 invariant: what the receivable says the customer owes is what the
        invoice says remains."""
        invoice = self.invoice()
        assert self.receivable_minor() == invoice.amount_remaining_minor, (
            self.receivable_minor(),
            invoice.status,
            invoice.amount_remaining_minor,
        )
        with self.db.read() as tx:
            assert ledger.check_invariants(tx).ok


def make_world(db: Database, ctx: PaymentsContext, *, fee_minor: int = 2000) -> World:
    billing = setup_billing(db, start=utc(2026, 11, 1, 9), prices=lambda m: [flat_price(fee_minor)])
    billing.run_jobs()
    world = World(billing, ctx)
    assert world.invoice().status == "open"
    return world


def invoice_view(db: Database, invoice_id: str) -> InvoiceView:
    with db.read() as tx:
        return invoicing.get_invoice(tx, invoice_id)


def offline_stripe_ctx(**overrides: Any) -> PaymentsContext:
    """Stripe is the provider, but no API is reachable: events are processed from their
    payloads alone (the processor only re-reads Stripe when it is configured)."""
    fields: dict[str, Any] = {
        "default_provider": "stripe",
        "stripe_webhook_secrets": (WEBHOOK_SECRET,),
    }
    fields.update(overrides)
    return PaymentsContext(
        settings=PaymentsSettings(**fields),
        providers=Providers(
            default=ProviderName.STRIPE, by_name={ProviderName.MANUAL: ManualProvider()}
        ),
    )


@dataclass(frozen=True)
class Started:
    """An attempt whose PaymentIntent exists at Stripe (its confirmation's answer not in yet)."""

    payment_id: str
    intent_id: str
    charge_id: str
    stripe_customer_id: str


def start_offline_attempt(world: World, *, n: int = 1) -> Started:
    from tallybook.payments.service import collections

    suffix = world.customer_id[-10:]
    started = Started(
        payment_id="",
        intent_id=f"pi_1Tb{suffix}{n:04d}",
        charge_id=f"ch_1Tb{suffix}{n:04d}",
        stripe_customer_id=f"cus_Tb{suffix}",
    )
    with world.db.transaction(actor="test") as tx:
        collection = repository.collection_for_invoice(tx, world.invoice_id)
        if collection is None:
            collection = collections.start(tx, world.invoice_id, world.ctx)
        payment = repository.payment_for_attempt(tx, world.invoice_id, n)
        assert payment is not None
        payment.provider_payment_id = started.intent_id
        account = repository.account_for_customer(tx, world.customer_id)
        assert account is not None
        account.provider_customer_id = started.stripe_customer_id
        payment_id = payment.id
    return Started(payment_id, started.intent_id, started.charge_id, started.stripe_customer_id)


@dataclass
class Webhooks:
    """Signs events the way Stripe does and posts them to ``/v1/webhooks/stripe``."""

    client: Any
    world: World
    secrets: list[str]

    def now(self) -> int:
        return int(self.world.billing.clock.now().timestamp())

    def send(
        self,
        event_body: dict[str, Any],
        *,
        secrets: list[str] | None = None,
        timestamp: int | None = None,
    ) -> Any:
        from tests.payments.stripe_events import signed

        payload, headers = signed(
            event_body, secrets or self.secrets, self.now() if timestamp is None else timestamp
        )
        return self.client.post("/v1/webhooks/stripe", content=payload, headers=headers)

    def process(self, ctx: PaymentsContext | None = None) -> dict[str, int]:
        from tallybook.payments.inbox import processor

        return processor.process_due(self.world.db, ctx or self.world.ctx)


def webhooks_for(world: World, *, secrets: str = WEBHOOK_SECRET) -> Iterator[Webhooks]:
    from fastapi.testclient import TestClient

    from tallybook.api.app import create_app
    from tallybook.kit.settings import Settings

    app = create_app(
        world.db,
        Settings(extra={"TALLYBOOK_STRIPE_WEBHOOK_SECRETS": secrets}),
    )
    with TestClient(app) as client:
        yield Webhooks(client, world, [WEBHOOK_SECRET])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The stripe SDK hands httpx raw bytes as ``data=`` (its choice, not ours)."""
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(
                pytest.mark.filterwarnings(
                    "ignore:Use 'content=<...>' to upload raw bytes:DeprecationWarning"
                )
            )
