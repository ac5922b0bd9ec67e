"""Alembic migrations, run programmatically (``tallybook db upgrade``; the demo and ``serve``
run it on start). On PostgreSQL an advisory lock makes concurrent upgrades wait for each other.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Engine

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
_MIGRATION_LOCK_KEY: Final = 7_301_990_001
#: ``info`` key of a schema object created on some dialects only (with ``ddl_if``): a tuple of
#: dialect names. Comparing the models with a database skips it elsewhere.
ONLY_ON_DIALECTS: Final = "only_on_dialects"


def include_in_comparison(dialect_name: str) -> Callable[..., bool]:
    """Alembic's ``include_object`` for comparing the models with a ``dialect_name`` database:
    objects marked :data:`ONLY_ON_DIALECTS` for other dialects are left out."""

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        dialects = getattr(obj, "info", {}).get(ONLY_ON_DIALECTS)
        if dialects is None and compare_to is not None:
            dialects = getattr(compare_to, "info", {}).get(ONLY_ON_DIALECTS)
        return dialects is None or dialect_name in dialects

    return include


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def head_revision() -> str:
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # The lock is the session's, held outside any transaction: a transaction left open
        # here would hold a snapshot that ``CREATE INDEX CONCURRENTLY`` waits for forever.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as lock_connection:
            lock_connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            try:
                command.upgrade(config, revision)
            finally:
                lock_connection.execute(
                    text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATION_LOCK_KEY}
                )
        return
    command.upgrade(config, revision)


def is_up_to_date(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


def ensure_schema(engine: Engine) -> None:
    """Upgrade to head unless already there (cheap check first)."""
    if not is_up_to_date(engine):
        upgrade(engine)
