"""Engines for the two supported backends.

``DATABASE_URL`` picks the backend: ``sqlite:///path.sqlite`` (the embedded default) or
``postgresql://user@host:5432/db`` (psycopg 3 is used whatever driver the URL names).

SQLite runs in WAL mode with ``synchronous=NORMAL`` and a 30 s busy timeout. Write
transactions start with ``BEGIN IMMEDIATE`` so that two writers never both read and then
deadlock upgrading their locks; a separate read engine starts ``BEGIN DEFERRED`` so readers
never wait for writers.
"""

from __future__ import annotations

from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from tallybook.kit.hashing import json_dumps, json_loads

SQLITE_BUSY_TIMEOUT_MS: Final = 30_000
PG_POOL_SIZE: Final = 16
PG_POOL_OVERFLOW_MAX: Final = 32
PG_STATEMENT_TIMEOUT_MS: Final = 60_000


def normalize_url(url: str | URL) -> URL:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif parsed.get_backend_name() == "sqlite":
        parsed = parsed.set(drivername="sqlite+pysqlite")
    else:
        raise ValueError(f"unsupported database backend: {parsed.get_backend_name()}")
    return parsed


def _install_sqlite_hooks(engine: Engine, *, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN DEFERRED")


def make_engine(url: str | URL, *, read_only: bool = False, pool_size: int | None = None) -> Engine:
    """Create an engine. ``read_only`` matters for SQLite only (deferred transactions)."""
    parsed = normalize_url(url)
    common: dict[str, Any] = {
        "json_serializer": json_dumps,
        "json_deserializer": json_loads,
    }
    if parsed.get_backend_name() == "sqlite":
        pooling: dict[str, Any] = {}
        if parsed.database not in (None, "", ":memory:"):
            pooling = {"pool_size": pool_size or 8, "max_overflow": 8}
        engine = sa.create_engine(
            parsed,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            **pooling,
            **common,
        )
        _install_sqlite_hooks(engine, immediate=not read_only)
        return engine
    engine = sa.create_engine(
        parsed,
        pool_size=pool_size or PG_POOL_SIZE,
        max_overflow=PG_POOL_OVERFLOW_MAX,
        pool_recycle=1800,
        connect_args={"options": f"-c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"},
        **common,
    )
    return engine


def is_postgres(engine_or_url: Engine | str | URL) -> bool:
    if isinstance(engine_or_url, Engine):
        return engine_or_url.dialect.name == "postgresql"
    return make_url(engine_or_url).get_backend_name() == "postgresql"
