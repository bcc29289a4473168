#!/usr/bin/env bash
# The main job in one command, on a fresh machine: sets up .venv (scripts/setup.sh), runs
# the aggregator on an embedded SQLite file behind a rotel collector, feeds it the example
# chat app through the SDK, waits until every task is in, prints the session and user
# views, then serves the web dashboard until Ctrl-C (--exit: stops right away). Extra
# arguments go to tools/demo.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python tools/demo.py "$@"
