# Shared by scripts/demo.sh and scripts/test.sh: a project virtualenv, installed on demand.
# Reinstalls only when pyproject.toml changes (a stamp file remembers its hash).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3 python3.13 python3.12 python3.11 python; do
    if command -v "$candidate" >/dev/null 2>&1 && \
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$candidate"; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "tallybook needs Python 3.11 or newer on PATH (python3)." >&2
  exit 2
fi

ensure_venv() {
  local extras="$1"
  local stamp=".venv/.tallybook-installed-${extras:-base}"
  local want
  want="$("$PYTHON" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/python -m pip install --quiet --upgrade pip
    if [ -n "$extras" ]; then
      .venv/bin/python -m pip install --quiet -e ".[${extras}]"
    else
      .venv/bin/python -m pip install --quiet -e .
    fi
    echo "$want" > "$stamp"
  fi
}

# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser). When it
# is missing and we are root with apt-get, install it (about 30 s); `apt-get update` only if the
# install fails for want of package lists. Otherwise the browser tests skip (and fail under CI).
ensure_chromium() {
  local chromium="${TALLYBOOK_CHROMIUM:-/usr/bin/chromium}"
  if [ -x "$chromium" ]; then
    return 0
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Chromium for the browser tests (apt-get install chromium)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -qq chromium >/dev/null 2>&1; then
      if ! { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium >/dev/null 2>&1; }; then
        echo "Could not install Chromium; the browser tests will skip (and fail under CI=true)." >&2
      fi
    fi
  else
    echo "No Chromium at $chromium: the browser tests will skip (and fail under CI=true)." \
      "Install it with: sudo apt-get install -y chromium" >&2
  fi
}
