"""Print the Alembic operations that would bring a database at the current head up to the
models (``Base.metadata``). Paste the output into your migration file, then review it.

    .venv/bin/python scripts/autogen_migration.py            # against a temp SQLite file
    .venv/bin/python scripts/autogen_migration.py --pg       # against a temp PostgreSQL db
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid

from alembic.autogenerate import produce_migrations, render_python_code
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from tallybook.all_models import load_all_models
from tallybook.db import Database
from tallybook.db.migrate import upgrade


def tidy(code: str) -> str:
    """Use the project's type names instead of their expanded variants."""
    return (
        code.replace(
            "sa.JSON().with_variant(postgresql.JSONB(astext_type=Text()), 'postgresql')", "JSONType"
        )
        .replace("tallybook.db.types.UTCDateTime(timezone=True)", "UTCDateTime()")
        .replace("tallybook.db.types.DecimalType(precision=38, scale=12)", "DecimalType()")
    )


def main() -> None:
    metadata = load_all_models().metadata
    if "--pg" in sys.argv:
        admin_url = os.environ.get(
            "TALLYBOOK_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        )
        name = f"tb_autogen_{uuid.uuid4().hex[:8]}"
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = admin_url.rsplit("/", 1)[0] + "/" + name
        try:
            db = Database(url)
            upgrade(db.engine)
            with db.engine.connect() as conn:
                ops = produce_migrations(MigrationContext.configure(conn), metadata)
                print(tidy(render_python_code(ops.upgrade_ops)))
            db.dispose()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/autogen.sqlite")
        upgrade(db.engine)
        with db.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"render_as_batch": False})
            ops = produce_migrations(context, metadata)
            print(tidy(render_python_code(ops.upgrade_ops)))


if __name__ == "__main__":
    main()
