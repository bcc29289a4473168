#!/usr/bin/env bash
# Sets up .venv (with the instrumentation libraries of tests/interop), installs what
# Debian provides when missing and apt-get can install it (clickhouse-server for the
# ClickHouse store's tests, zookeeper for its replicated-cluster test, chromium for the
# dashboard's browser tests, which Playwright drives by its path: never `playwright
# install`), then runs the linter, the type checker and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PHOSPHO_EXTRAS=test,interop bash scripts/setup.sh
apt_install() {  # apt_install PACKAGE: when root and apt-get is there
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    [ -n "${APT_UPDATED:-}" ] || { apt-get update -qq >/dev/null; APT_UPDATED=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
  fi
}
if ! command -v clickhouse-server >/dev/null && [ ! -x /usr/sbin/clickhouse-server ]; then
  apt_install clickhouse-server
fi
# ZooKeeper for the replicated-cluster test (tests/store/clickhouse/test_cluster.py), run
# there as a child process: the `zookeeper` package (zookeeperd without its service).
if [ ! -f /usr/share/java/zookeeper.jar ]; then
  apt_install zookeeper
fi
if [ -z "${PHOSPHO_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  apt_install chromium
fi
.venv/bin/ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
