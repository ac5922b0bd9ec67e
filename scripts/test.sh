#!/usr/bin/env bash
# The whole test suite, on SQLite and PostgreSQL (TALLYBOOK_TEST_PG_URL, default the local
# server). Installs what it needs into .venv first (and Debian's Chromium for the browser tests,
# when run as root). Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv "test"
ensure_chromium
exec .venv/bin/python -m pytest -n auto "$@"
