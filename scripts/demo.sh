#!/usr/bin/env bash
# The main job: installs tallybook into .venv and runs the demo on an embedded SQLite file.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
ensure_venv ""
exec .venv/bin/tallybook demo "$@"
