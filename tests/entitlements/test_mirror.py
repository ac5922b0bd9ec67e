"""The check's mirror (``entitlements.mirror``) on PostgreSQL: kept state rows answer checks
with the notices applied since, and every answer equals the portable path's. (Every scenario
test's ``checked`` also runs its checks through a mirror, twice.)"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from tallybook.api.app import create_app
from tallybook.db import Database
from tallybook.db import listen as listen_module
from tallybook.entitlements import fast_pg
from tallybook.entitlements import service as entitlements
from tallybook.entitlements.domain import CheckResult
from tallybook.entitlements.fast import fast_check_async
from tallybook.entitlements.mirror import CHECKS, Mirror
from tallybook.entitlements.settings import MIRROR_VARIABLE, mirror_enabled
from tallybook.kit.clock import TestClock, utc
from tallybook.kit.settings import Settings
from tests.entitlements.conftest import lane_loop
from tests.fixtures.catalog_factories import create_feature
from tests.fixtures.factories import create_meter
from tests.fixtures.grants_factories import Metered, metered_setup, send_usage
from tests.fixtures.serving import served_on_thread


def counts() -> tuple[float, float]:
    """State rows answered so far: (kept by the mirror, read from the database)."""
    return CHECKS.labels("kept")._value.get(), CHECKS.labels("read")._value.get()


def mirrored(
    db: Database, customer: str, feature: str, quantity: int | None = None
) -> tuple[CheckResult, str]:
    """The check through the mirror (then settled), asserted equal to the portable path's,
    and where its state row came from."""
    runner = lane_loop()
    mirror = runner.mirror(db)
    runner.run(mirror.settle())  # the changes made so far are known
    kept, read = counts()
    result = runner.run(
        fast_check_async(db, runner.hot(db), customer, feature, quantity=quantity, mirror=mirror)
    )
    runner.run(mirror.settle())
    with db.read() as tx:
        assert result == entitlements.check(tx, customer, feature, quantity=quantity)
    now_kept, now_read = counts()
    source = "kept" if now_kept > kept else "read" if now_read > read else "neither"
    return result, source


def setup(db: Database, **fields: Any) -> Metered:
    with db.transaction() as tx:
        return metered_setup(tx, **fields)


def test_a_kept_row_answers_with_the_usage_ingested_since(pg_db: Database) -> None:
    metered = setup(pg_db, limit=100, external_id="mirror-sum")
    feature = metered.feature.key
    first, source = mirrored(pg_db, "mirror-sum", feature)
    assert (first.used, source) == (Decimal(0), "read")
    send_usage(pg_db, metered.customer, 30)
    answer, source = mirrored(pg_db, "mirror-sum", feature)
    assert (answer.used, answer.remaining, source) == (Decimal(30), Decimal(70), "kept")
    send_usage(pg_db, metered.customer, "12.5")
    refused, source = mirrored(pg_db, "mirror-sum", feature, quantity=60)
    assert (refused.allowed, refused.used, source) == (False, Decimal("42.5"), "kept")


def test_a_max_meter_keeps_its_row_while_the_maximum_only_grows(pg_db: Database) -> None:
    with pg_db.transaction() as tx:
        create_meter(tx, key="peak", event_type="peak.used", aggregation="max", value_path="value")
    metered = setup(pg_db, limit=10, meter_key="peak", external_id="mirror-max")
    feature = metered.feature.key
    assert mirrored(pg_db, "mirror-max", feature)[1] == "read"
    for value, expected in ((5, 5), (3, 5), (9, 9)):
        send_usage(pg_db, metered.customer, value, meter_key="peak")
        answer, source = mirrored(pg_db, "mirror-max", feature)
        assert (answer.used, source) == (Decimal(expected), "kept")


def test_usage_in_a_partial_hour_of_the_window_reads_the_row_again(
    pg_db: Database, clock: TestClock
) -> None:
    clock.set(utc(2026, 11, 1, 9, 30))  # the period starts mid-hour: 09:30 to 10:00 is raw
    metered = setup(pg_db, limit=100, external_id="mirror-edge")
    feature = metered.feature.key
    mirrored(pg_db, "mirror-edge", feature)
    clock.advance(minutes=10)
    send_usage(pg_db, metered.customer, 5)
    answer, source = mirrored(pg_db, "mirror-edge", feature)
    assert (answer.used, source) == (Decimal(5), "read")
    clock.advance(minutes=30)  # 10:10: a full hour of the window, read from rollups
    send_usage(pg_db, metered.customer, 7)
    answer, source = mirrored(pg_db, "mirror-edge", feature)
    assert (answer.used, source) == (Decimal(12), "kept")


def _read_with(
    pg_db: Database, customer: str, feature: str, between: Any
) -> tuple[Any, ...] | None:
    """Read the state row as the check does, run ``between`` (a change, or nothing) after
    the statement answered and before the mirror is told, then what the mirror kept."""
    runner = lane_loop()
    mirror = runner.mirror(pg_db)
    hot = runner.hot(pg_db)
    now = pg_db.clock.now()

    async def read() -> None:
        token = mirror.reading()
        params = {"customer": customer, "feature": feature, "now": now}
        row = await hot.fetchone(fast_pg.HOT_STATE_SQL, params)
        between()
        mirror.read(token, customer, feature, now, row)

    runner.run(read())
    runner.run(mirror.settle())
    return runner.run(mirror.state(customer, feature, now))


def test_a_row_is_kept_only_if_nothing_changed_while_it_was_read(pg_db: Database) -> None:
    metered = setup(pg_db, limit=100, external_id="mirror-race")
    feature = metered.feature.key
    # Usage committed after the statement's snapshot: the row read does not count it, so it
    # must not be kept (the usage's notice arrives after the statement was sent).
    assert (
        _read_with(pg_db, "mirror-race", feature, lambda: send_usage(pg_db, metered.customer, 9))
        is None
    )
    kept = _read_with(pg_db, "mirror-race", feature, lambda: None)
    assert kept is not None and kept[0] == metered.customer.id
    answer, source = mirrored(pg_db, "mirror-race", feature)
    assert (answer.used, source) == (Decimal(9), "kept")


def test_customer_changes_and_catalog_changes_drop_kept_rows(
    pg_db: Database, clock: TestClock
) -> None:
    metered = setup(pg_db, limit=100, external_id="mirror-drop")
    feature = metered.feature.key
    mirrored(pg_db, "mirror-drop", feature)
    assert mirrored(pg_db, "mirror-drop", feature)[1] == "kept"
    with pg_db.transaction(actor="key_support") as tx:
        entitlements.create_override(
            tx,
            entitlements.OverrideInput(
                customer=metered.customer.id,
                feature=feature,
                limit=500,
                expires_at=clock.now() + timedelta(hours=2),
                reason="launch",
            ),
        )
    lifted, source = mirrored(pg_db, "mirror-drop", feature)
    assert (lifted.limit, source) == (Decimal(500), "read")
    assert mirrored(pg_db, "mirror-drop", feature)[1] == "kept"
    # The override expires by the clock alone: the kept row stops holding then.
    clock.advance(hours=2)
    expired, source = mirrored(pg_db, "mirror-drop", feature)
    assert (expired.limit, source) == (Decimal(100), "read")
    # Any catalog change empties the mirror.
    with pg_db.transaction() as tx:
        create_feature(tx, key="mirror-new-flag")
    assert mirrored(pg_db, "mirror-drop", feature)[1] == "read"


def test_a_reservation_counts_at_once_and_stops_counting_when_it_expires(
    pg_db: Database, clock: TestClock
) -> None:
    metered = setup(pg_db, limit=100, external_id="mirror-hold")
    feature = metered.feature.key
    mirrored(pg_db, "mirror-hold", feature)
    with pg_db.transaction() as tx:
        entitlements.reserve(
            tx,
            entitlements.ReservationInput(
                customer=metered.customer.id, feature=feature, quantity=40, timeout_seconds=60
            ),
        )
    held, source = mirrored(pg_db, "mirror-hold", feature)
    assert (held.reserved, source) == (Decimal(40), "read")
    assert mirrored(pg_db, "mirror-hold", feature)[1] == "kept"
    clock.advance(seconds=61)
    lapsed, source = mirrored(pg_db, "mirror-hold", feature)
    assert (lapsed.reserved, source) == (Decimal(0), "read")


def test_a_lost_listener_forgets_every_row_and_listens_again(
    pg_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listen_module, "RECONNECT_SECONDS", 0.05)
    metered = setup(pg_db, limit=100, external_id="mirror-lost")
    feature = metered.feature.key
    mirror = lane_loop().mirror(pg_db)
    mirrored(pg_db, "mirror-lost", feature)
    assert mirrored(pg_db, "mirror-lost", feature)[1] == "kept"
    connection = mirror._listener._connection
    assert connection is not None
    with psycopg.connect(str(pg_db.url).replace("+psycopg", ""), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (connection.pgconn.backend_pid,))
    send_usage(pg_db, metered.customer, 4)  # its notice is never heard by the lost listener
    deadline = time.monotonic() + 20
    while mirror._listener._connection is connection:  # until the loss is seen
        assert time.monotonic() < deadline
        time.sleep(0.01)
    answer, _ = mirrored(pg_db, "mirror-lost", feature)
    assert answer.used == Decimal(4)
    while not mirror.listening:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    mirrored(pg_db, "mirror-lost", feature)
    answer, source = mirrored(pg_db, "mirror-lost", feature)
    assert (answer.used, source) == (Decimal(4), "kept")


def test_the_api_holds_a_mirror_unless_it_is_turned_off(pg_db: Database) -> None:
    for extra, expected in (({}, True), ({MIRROR_VARIABLE: "off"}, False)):
        app = create_app(pg_db, Settings.from_env(extra))
        with served_on_thread(app):
            mirror = app.app.state.entitlements_mirror
            assert isinstance(mirror, Mirror) is expected
            if expected:
                assert mirror.listening
    with pytest.raises(ValueError, match=MIRROR_VARIABLE):
        mirror_enabled(Settings.from_env({MIRROR_VARIABLE: "maybe"}))


def test_every_table_the_state_statement_reads_announces_its_changes(pg_db: Database) -> None:
    """A table read by the check without a notice trigger would leave kept rows stale."""
    read = set(
        re.findall(r"(?:FROM|JOIN)\s+([a-z_]+)", fast_pg.HOT_STATE_SQL + fast_pg.USAGE_SQL)
    ) - {"c", "f", "s", "w", "unnest"}  # the statement's own names, and a function
    with pg_db.read() as tx:
        triggers = {
            (table, name)
            for table, name in tx.session.execute(
                text(
                    "SELECT tgrelid::regclass::text, tgname FROM pg_trigger"
                    " WHERE tgname LIKE 'tb_entitlements_%'"
                )
            )
        }
    # Events need none of their own: never updated, and each stored event changes its rollups
    # in the same transaction (whose trigger announces it).
    for table in read - {"metering_events"}:
        assert (table, "tb_entitlements_notice") in triggers, table
    for table in read:
        assert (table, "tb_entitlements_truncate_notice") in triggers, table
