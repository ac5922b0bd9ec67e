"""Under CI=true an unreachable PostgreSQL fails the run; elsewhere it skips with instructions.

Runs a one-test pytest session in a subprocess pointed at a closed port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE_TEST = """
from tallybook.db import Database

def test_needs_pg(pg_db: Database) -> None:
    assert pg_db.is_postgres
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_probe(tmp_path: Path, *, ci: bool) -> subprocess.CompletedProcess[str]:
    probe_dir = ROOT / "tests" / "ci" / f"_probe_{os.getpid()}_{tmp_path.name}"
    probe_dir.mkdir()
    try:
        (probe_dir / "__init__.py").write_text("")
        (probe_dir / "test_probe.py").write_text(PROBE_TEST)
        env = {
            **os.environ,
            "TALLYBOOK_TEST_PG_URL": f"postgresql://postgres@127.0.0.1:{closed_port()}/test",
            "CI": "true" if ci else "",
        }
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", str(probe_dir)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for child in probe_dir.iterdir():
            child.unlink()
        probe_dir.rmdir()


def test_unreachable_postgres_fails_under_ci(tmp_path: Path) -> None:
    result = run_probe(tmp_path, ci=True)
    assert result.returncode != 0, result.stdout
    assert "CI=true and PostgreSQL is not reachable" in result.stdout


def test_unreachable_postgres_skips_with_instructions_elsewhere(tmp_path: Path) -> None:
    result = run_probe(tmp_path, ci=False)
    assert result.returncode == 0, result.stdout
    assert "1 skipped" in result.stdout
    assert "TALLYBOOK_TEST_PG_URL" in result.stdout
