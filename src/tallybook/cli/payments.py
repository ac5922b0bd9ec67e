"""CLI commands of this area, attached to the root by ``register``."""

from __future__ import annotations

from tallybook.cli.groups import CliGroups


def register(groups: CliGroups) -> None:
    return None
