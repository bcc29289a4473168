#!/usr/bin/env bash
# Sets up .venv (with the instrumentation libraries of tests/interop, and Debian's
# clickhouse-server for the ClickHouse store's tests when missing and apt-get can install
# it), then runs the linter, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOSPHO_EXTRAS=test,interop bash scripts/setup.sh
if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ] \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server >/dev/null
fi
.venv/bin/ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
