"""Imports every table definition (modules named ``models`` or ``*_models``), so ``Base.metadata`` is complete (migration checks and the
autogenerate helper use it). Not imported by the application itself."""

from __future__ import annotations

import importlib
import pkgutil

import tallybook
from tallybook.db import Base


def load_all_models() -> type[Base]:
    for module in pkgutil.walk_packages(tallybook.__path__, prefix="tallybook."):
        leaf = module.name.rsplit(".", 1)[-1]
        if leaf == "models" or leaf.endswith("_models"):
            importlib.import_module(module.name)
    return Base
