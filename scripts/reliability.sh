#!/usr/bin/env bash
# The reliability suite in its long mode (more SIGKILLs, more fuzzing examples, longer
# overload), printing the figures of README's faults table. CI runs the short mode as part
# of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOSPHO_RELIABILITY_LONG=1 .venv/bin/python -m pytest -s -q tests/reliability "$@"
