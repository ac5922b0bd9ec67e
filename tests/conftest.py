"""Shared fixtures. Every test that takes ``db`` runs twice: on SQLite and on PostgreSQL.
Tests that need real parallel connections take ``pg_db`` (PostgreSQL only)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tallybook.api.app import create_app
from tallybook.auth.service import create_api_key
from tallybook.db import Database
from tallybook.http.edge import clear_caller_cache
from tallybook.kit.clock import TestClock, utc
from tests.fixtures.databases import (
    PgWorkerDatabase,
    pg_worker_database,
    sqlite_database_from,
    sqlite_template,
)

__all__ = ["pg_worker_database", "sqlite_template"]

#: Every test starts at this instant unless it moves the clock.
TEST_EPOCH: datetime = utc(2026, 11, 1, 9, 0, 0)


@pytest.fixture
def clock() -> TestClock:
    return TestClock(TEST_EPOCH)


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path, clock: TestClock) -> Iterator[Database]:
    db = Database(sqlite_database_from(sqlite_template, tmp_path), clock=clock)
    yield db
    db.dispose()


@pytest.fixture
def pg_db(pg_worker_database: PgWorkerDatabase, clock: TestClock) -> Iterator[Database]:
    db = pg_worker_database.base.with_clock(clock)
    try:
        yield db
    finally:
        pg_worker_database.truncate()


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest) -> Database:
    """The same test on both backends."""
    name = "sqlite_db" if request.param == "sqlite" else "pg_db"
    database = request.getfixturevalue(name)
    assert isinstance(database, Database)
    return database


class ApiClient(TestClient):
    """A TestClient that authenticates with an admin key unless told otherwise."""

    db: Database

    def key_with(self, *scopes: str) -> str:
        with self.db.transaction(actor="test") as tx:
            _, secret = create_api_key(tx, name="test " + " ".join(scopes), scopes=list(scopes))
        return secret

    def as_key(self, secret: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def api(db: Database) -> Iterator[ApiClient]:
    clear_caller_cache()
    app = create_app(db)
    with db.transaction(actor="test") as tx:
        _, secret = create_api_key(tx, name="test admin", scopes=["admin"])
    client = ApiClient(app, headers={"Authorization": f"Bearer {secret}"})
    client.db = db
    with client:
        yield client
    clear_caller_cache()
