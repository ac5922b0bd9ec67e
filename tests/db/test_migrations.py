"""The migrations produce exactly the tables the models describe, on both backends."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from tallybook.all_models import load_all_models
from tallybook.db import Database
from tallybook.db.migrate import head_revision, include_in_comparison, is_up_to_date, upgrade


def test_models_match_migrations(db: Database) -> None:
    metadata = load_all_models().metadata
    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_object": include_in_comparison(conn.dialect.name)}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_upgrade_is_repeatable(db: Database) -> None:
    upgrade(db.engine)
    upgrade(db.engine)
    assert is_up_to_date(db.engine)
    assert head_revision()
