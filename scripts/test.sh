#!/usr/bin/env bash
# Sets up .venv, then runs the linter, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
