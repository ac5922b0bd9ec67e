from __future__ import annotations

import os

import typer
import uvicorn

from tallybook.api.app import create_app
from tallybook.cli.context import open_database, settings
from tallybook.http.server import uvicorn_options
from tallybook.observability.logging import configure_logging


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind"),
    port: int = typer.Option(8000, help="Port"),
    access_log: bool = typer.Option(False, help="Log every request"),
    workers: int = typer.Option(
        1, min=1, help="Worker processes (each a Python interpreter: more cores for the API)"
    ),
) -> None:
    """Run the API (and the console under /console). Migrates the database on first run."""
    current = settings()
    configure_logging(json_lines=current.log_json, level=current.log_level)
    db = open_database(migrate=True)
    if workers > 1:
        # Each worker process builds its own app from the environment (api.app.app_from_env).
        db.dispose()
        os.environ["DATABASE_URL"] = current.database_url
        uvicorn.run(
            "tallybook.api.app:app_from_env",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            access_log=access_log,
            log_config=None,
            **uvicorn_options(),
        )
        return
    app = create_app(db, current)
    uvicorn.run(
        app, host=host, port=port, access_log=access_log, log_config=None, **uvicorn_options()
    )
