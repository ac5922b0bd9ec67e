"""The README's main command, end to end on a fresh SQLite file: every section of the demo
runs after the others (a demo section that breaks a later one fails here, not on a new
user's machine)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tallybook.cli.demo import run_demo


def test_demo_runs_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_demo(str(tmp_path / "demo.sqlite"))
    out = capsys.readouterr().out
    assert "closing the synthetic month" in out
    assert "One invoice explained" in out
