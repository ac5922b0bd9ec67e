"""The README's main job: a demo on an embedded SQLite file."""

from __future__ import annotations

import os

from tallybook.cli.context import console
from tallybook.cli.demo_invoicing import run_invoicing_demo
from tallybook.cli.demo_ledger import run_ledger_demo
from tallybook.cli.demo_metering import run_metering_demo
from tallybook.db import Database
from tallybook.db.migrate import upgrade


def run_demo(path: str, *, fresh: bool = True) -> None:
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(path + suffix):
                os.remove(path + suffix)
    db = Database(f"sqlite:///{path}")
    upgrade(db.engine)
    console.print(f"[bold]tallybook demo[/bold] on {path}")
    run_ledger_demo(db, console)
    # --- metering: a synthetic month of usage (tallybook.cli.demo_metering) ---
    run_metering_demo(db, console)
    # --- end metering ---
    # --- invoicing: close the synthetic month (tallybook.cli.demo_invoicing) ---
    run_invoicing_demo(db, console)
    # --- end invoicing ---
