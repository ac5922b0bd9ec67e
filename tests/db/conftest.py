"""Fixtures of the database layer's tests."""

from __future__ import annotations

from typing import Any

import pytest

from tests.fixtures.aio import Run, loop_runner


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request: pytest.FixtureRequest) -> Run[Any]:
    """Runs a scenario on a fresh event loop: asyncio's, or uvloop's."""
    return loop_runner(request.param)
