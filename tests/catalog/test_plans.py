"""Features, plans and versions through the service, on both backends."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from tallybook.catalog import features, plans
from tallybook.catalog.domain import ChangePolicy, FeatureType, LimitEnforcement
from tallybook.db import Database
from tallybook.kit.errors import NotFound, TallybookError
from tallybook.work.models import DomainEvent
from tests.fixtures.catalog_factories import create_feature, create_version, flat_price, usage_price
from tests.fixtures.factories import create_meter


def error(call: Any, *args: Any, **kwargs: Any) -> tuple[str, str | None]:
    with pytest.raises(TallybookError) as caught:
        call(*args, **kwargs)
    return caught.value.code, caught.value.param


class TestFeatures:
    def test_boolean_config_and_metered(self, db: Database) -> None:
        with db.transaction() as tx:
            meter = create_meter(tx)
            sso = create_feature(tx, key="sso", type="boolean")
            models = create_feature(tx, key="models", type="config")
            tokens = create_feature(tx, key="tokens", type="metered", meter_id=meter.id)
            assert (sso.type, models.type, tokens.meter_id) == ("boolean", "config", meter.id)
            assert features.resolve(tx, "tokens").id == tokens.id

    def test_named_errors(self, db: Database) -> None:
        with db.transaction() as tx:
            meter = create_meter(tx)
            create_feature(tx, key="sso")
            assert error(create_feature, tx, key="sso") == ("feature_key_taken", "key")
            assert error(create_feature, tx, key="Bad Key") == ("feature_key_invalid", "key")
            assert error(create_feature, tx, key="t", type="metered") == (
                "feature_meter_required",
                "meter_id",
            )
            assert error(create_feature, tx, key="t", type="metered", meter_id="mtr_nope") == (
                "feature_meter_not_found",
                "meter_id",
            )
            assert error(create_feature, tx, key="t", type="boolean", meter_id=meter.id) == (
                "feature_meter_not_allowed",
                "meter_id",
            )


class TestVersions:
    def test_draft_edit_publish(self, db: Database) -> None:
        with db.transaction() as tx:
            meter = create_meter(tx)
            version = create_version(tx, plan_key="pro", publish=False)
            assert (version.status, version.version) == ("draft", 1)
            plans.update_version(
                tx,
                version.id,
                {
                    "prices": [
                        flat_price(4900, name="Pro monthly"),
                        usage_price(meter.id, unit_price="0.0000025", key="tokens"),
                    ],
                    "minimum_commitment_minor": 10000,
                    "change_policy": {"downgrade": "prorate_now"},
                },
            )
            published = plans.publish(tx, version.id)
            assert published.status == "published" and published.published_at is not None
            terms = plans.version_terms(tx, version.id)
            assert [p.key for p in terms.prices] == ["fee", "tokens"]
            assert terms.prices[1].meter_unit == "tokens"
            assert terms.prices[1].unit_price == Decimal("0.0000025")
            assert terms.minimum_commitment_minor == 10000
            assert terms.change_policies.downgrade == ChangePolicy.PRORATE_NOW
            assert terms.change_policies.upgrade == ChangePolicy.PRORATE_NOW
            # Idempotent.
            assert plans.publish(tx, version.id).published_at == published.published_at
        with db.read() as tx:
            events = list(
                tx.session.scalars(
                    sa.select(DomainEvent).where(DomainEvent.type == "plan_version.published")
                )
            )
            assert len(events) == 1
            assert events[0].data["prices"][1]["unit_price"] == "0.0000025"

    def test_a_published_version_is_immutable(self, db: Database) -> None:
        with db.transaction() as tx:
            version = create_version(tx)
            assert error(plans.update_version, tx, version.id, {"currency": "EUR"}) == (
                "plan_version_immutable",
                "version",
            )

    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE catalog_prices SET amount_minor = 1",
            "DELETE FROM catalog_prices",
            "UPDATE catalog_plan_versions SET currency = 'EUR'",
            "UPDATE catalog_plan_versions SET status = 'draft'",
            "DELETE FROM catalog_plan_versions",
        ],
    )
    def test_the_database_refuses_edits_of_published_versions(
        self, db: Database, statement: str
    ) -> None:
        with db.transaction() as tx:
            create_version(tx)
        with pytest.raises(DBAPIError) as caught, db.transaction() as tx:
            tx.session.execute(sa.text(statement))
        assert "plan_version_immutable" in str(caught.value)

    def test_the_database_allows_archiving_and_draft_edits(self, db: Database) -> None:
        with db.transaction() as tx:
            published = create_version(tx)
            draft = create_version(tx, publish=False)
        with db.transaction() as tx:
            tx.session.execute(
                sa.text("UPDATE catalog_prices SET amount_minor = 5 WHERE plan_version_id = :v"),
                {"v": draft.id},
            )
            plans.archive_version(tx, published.id)
        with db.read() as tx:
            assert plans.get_version(tx, published.id).status == "archived"
            assert plans.version_terms(tx, draft.id).prices[0].amount_minor == 5

    def test_copy_from_starts_a_new_draft(self, db: Database) -> None:
        with db.transaction() as tx:
            first = create_version(tx, plan_key="pro", prices=[flat_price(2000)])
            second = plans.create_version(
                tx, first.plan_id, {"copy_from": first.id, "interval": "year"}
            )
            first_terms = plans.version_terms(tx, first.id)
            second_terms = plans.version_terms(tx, second.id)
            assert second.version == 2 and second.status == "draft"
            assert second_terms.interval.unit == "year"
            assert second_terms.prices[0].amount_minor == 2000
            assert second_terms.prices[0].id != first_terms.prices[0].id
            other = create_version(tx, plan_key="other")
            assert error(plans.create_version, tx, other.plan_id, {"copy_from": first.id}) == (
                "plan_version_copy_plan_mismatch",
                "copy_from",
            )

    def test_entitlement_definitions(self, db: Database) -> None:
        with db.transaction() as tx:
            meter = create_meter(tx)
            create_feature(tx, key="sso")
            create_feature(tx, key="models", type="config")
            create_feature(tx, key="tokens", type="metered", meter_id=meter.id)
            version = create_version(
                tx,
                entitlements=[
                    {"feature": "sso", "enabled": True},
                    {"feature": "models", "config": ["small", "large"]},
                    {"feature": "tokens", "limit": "1000000", "enforcement": "soft"},
                ],
            )
            by_key = {e.feature_key: e for e in plans.version_terms(tx, version.id).entitlements}
            assert by_key["sso"].enabled is True
            assert by_key["models"].config == ["small", "large"]
            assert by_key["tokens"].feature_type == FeatureType.METERED
            assert by_key["tokens"].limit_quantity == Decimal(1000000)
            assert by_key["tokens"].enforcement == LimitEnforcement.SOFT
            assert by_key["tokens"].meter_id == meter.id

    @pytest.mark.parametrize(
        ("entitlements", "code", "param"),
        [
            ([{"feature": "nope"}], "entitlement_feature_not_found", "entitlements[0].feature"),
            (
                [{"feature": "sso"}, {"feature": "sso"}],
                "entitlement_duplicate",
                "entitlements[1].feature",
            ),
            (
                [{"feature": "sso", "limit": 5}],
                "entitlement_value_invalid",
                "entitlements[0].limit",
            ),
            ([{"feature": "models"}], "entitlement_value_invalid", "entitlements[0].config"),
            (
                [{"feature": "tokens", "limit": -1}],
                "price_negative",
                "entitlements[0].limit",
            ),
        ],
    )
    def test_entitlement_errors(
        self, db: Database, entitlements: list[dict[str, Any]], code: str, param: str
    ) -> None:
        with db.transaction() as tx:
            meter = create_meter(tx)
            create_feature(tx, key="sso")
            create_feature(tx, key="models", type="config")
            create_feature(tx, key="tokens", type="metered", meter_id=meter.id)
            assert error(create_version, tx, entitlements=entitlements) == (code, param)

    @pytest.mark.parametrize(
        ("fields", "code", "param"),
        [
            ({"currency": "XXQ"}, "currency_invalid", "currency"),
            ({"interval": "fortnight"}, "plan_interval_invalid", "interval"),
            ({"interval_count": 37}, "plan_interval_invalid", "interval_count"),
            (
                {"prices": [usage_price("mtr_nope", unit_price=1)]},
                "price_meter_not_found",
                "prices[0].meter_id",
            ),
            ({"trial_period_days": -1}, "plan_trial_invalid", "trial_period_days"),
            ({"minimum_commitment_minor": -5}, "price_negative", "minimum_commitment_minor"),
            ({"billing_threshold_minor": 0}, "amount_invalid", "billing_threshold_minor"),
            ({"change_policy": {"upgrade": "later"}}, "parameter_invalid", "change_policy.upgrade"),
        ],
    )
    def test_version_errors(
        self, db: Database, fields: dict[str, Any], code: str, param: str
    ) -> None:
        with db.transaction() as tx:
            assert error(create_version, tx, **fields) == (code, param)

    def test_which_version_a_subscription_may_use(self, db: Database) -> None:
        with db.transaction() as tx:
            draft = create_version(tx, plan_key="pro", publish=False)
            assert error(plans.version_for_subscription, tx, plan_version_id=draft.id) == (
                "plan_version_not_published",
                "plan_version",
            )
            assert error(plans.version_for_subscription, tx, plan="pro") == (
                "plan_has_no_published_version",
                "plan",
            )
            plans.publish(tx, draft.id)
            newer = create_version(tx, plan_key="pro")
            assert plans.version_for_subscription(tx, plan="pro").id == newer.id
            plans.archive_version(tx, newer.id)
            assert plans.version_for_subscription(tx, plan="pro").id == draft.id
            assert error(plans.version_for_subscription, tx, plan_version_id=newer.id) == (
                "plan_version_archived",
                "plan_version",
            )
            plans.archive_plan(tx, draft.plan_id)
            assert error(plans.version_for_subscription, tx, plan="pro")[0] == "plan_archived"
            assert error(plans.create_version, tx, draft.plan_id, {})[0] == "plan_archived"

    def test_plan_keys(self, db: Database) -> None:
        with db.transaction() as tx:
            plans.create_plan(tx, plans.PlanInput(key="pro", name="Pro"))
            assert error(plans.create_plan, tx, plans.PlanInput(key="pro", name="x")) == (
                "plan_key_taken",
                "key",
            )
            assert error(plans.create_plan, tx, plans.PlanInput(key="P R O", name="x")) == (
                "plan_key_invalid",
                "key",
            )
            with pytest.raises(NotFound):
                plans.resolve_plan(tx, "missing")


def test_a_publish_that_rolls_back_leaves_no_cached_terms(db: Database) -> None:
    """Terms of published versions are cached; a version published in a transaction that
    then failed is still an editable draft, and its edits must show."""
    with db.transaction() as tx:
        draft = create_version(tx, publish=False, prices=[flat_price(1000)])

    def publish_then_fail() -> None:
        with db.transaction() as tx:
            plans.publish(tx, draft.id)
            assert plans.version_terms(tx, draft.id).status == "published"
            raise RuntimeError("the request failed after publishing")

    with pytest.raises(RuntimeError):
        publish_then_fail()
    with db.transaction() as tx:
        plans.update_version(tx, draft.id, {"prices": [flat_price(5000)]})
    with db.read() as tx:
        assert plans.version_terms(tx, draft.id).prices[0].amount_minor == 5000
    with db.transaction() as tx:
        plans.publish(tx, draft.id)
    with db.read() as tx:
        assert plans.version_terms(tx, draft.id).prices[0].amount_minor == 5000
        assert plans.version_terms(tx, draft.id).prices[0].amount_minor == 5000  # cached
