"""The command groups that domain CLI modules attach to."""

from __future__ import annotations

from dataclasses import dataclass

import typer


@dataclass(frozen=True)
class CliGroups:
    root: typer.Typer
    #: ``tallybook worker …``: long-running processes (scheduler, metering consumers).
    worker: typer.Typer
