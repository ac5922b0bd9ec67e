"""Browser test fixtures: a real ``tallybook serve`` on 127.0.0.1 and a free port, on the
test's database, driven by Playwright through Debian's Chromium (never a downloaded browser).

Without Chromium the browser tests skip with instructions, except under ``CI=true``, where
they fail. Screenshots land in ``artifacts/screenshots/`` (kept by CI as artifacts).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from tallybook.db import Database
from tests.fixtures.databases import IN_CI, database_url_of

CHROMIUM: Final = os.environ.get("TALLYBOOK_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS: Final = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS: Final = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
SERVER_START_SECONDS_MAX: Final = 60.0


def _require_browser() -> None:
    problem = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        problem = "the playwright package is missing (pip install -e '.[test]')"
    if problem is None and not os.access(CHROMIUM, os.X_OK):
        problem = (
            f"Chromium is not installed at {CHROMIUM}. Install Debian's package "
            "(`sudo apt-get install -y chromium`; scripts/test.sh does it when run as root) "
            "or point TALLYBOOK_CHROMIUM at a Chromium binary. Never `playwright install`."
        )
    if problem is None:
        return
    if IN_CI:
        pytest.fail(f"CI=true and {problem}", pytrace=False)
    pytest.skip(problem)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server(db: Database, tmp_path: Path) -> Iterator[str]:
    """``tallybook serve`` in its own process, on this test's database."""
    _require_browser()
    port = _free_port()
    log = (tmp_path / "server.log").open("wb")
    env = {
        **os.environ,
        "DATABASE_URL": database_url_of(db),
        "TALLYBOOK_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tallybook", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS_MAX
    try:
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise RuntimeError(
                    "tallybook serve did not start:\n" + (tmp_path / "server.log").read_text()
                )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    _require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Shots:
    """Numbered screenshots named after the test: ``<test>-<n>-<step>.png``."""

    def __init__(self, page: Any, test_name: str) -> None:
        self.page = page
        self.prefix = re.sub(r"[^A-Za-z0-9_.-]+", "-", test_name).strip("-")
        self.count = 0
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, step: str) -> Path:
        self.count += 1
        path = SCREENSHOTS / f"{self.prefix}-{self.count:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def page(chromium: Any, server: str, request: pytest.FixtureRequest) -> Iterator[Any]:
    context = chromium.new_context(base_url=server, viewport={"width": 1360, "height": 900})
    context.set_default_timeout(15_000)
    browser_page = context.new_page()
    browser_page.shots = Shots(browser_page, request.node.name)
    try:
        yield browser_page
    finally:
        context.close()
