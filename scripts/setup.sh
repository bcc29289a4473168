#!/usr/bin/env bash
# Creates .venv and installs phospho-otel with the extras in PHOSPHO_EXTRAS (default: its
# server and test dependencies), at the versions of scripts/test-constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -c scripts/test-constraints.txt -e ".[${PHOSPHO_EXTRAS:-test}]"
