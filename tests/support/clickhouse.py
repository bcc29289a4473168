"""A real ClickHouse server for the tests: Debian's ``clickhouse-server`` package (18.16,
the oldest engine supported), started as a child process on free ports of 127.0.0.1 with
its data in a temporary directory, once per test run (``shared_server``); each test
opens stores in a database of its own (``new_database``).

When the server cannot be started, ClickHouse tests fail with the reason under CI
(``CI=true``: never a silent skip there) and are skipped with the reason elsewhere
(``require_server``). ``.ci/run`` installs the package.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from clickhouse_driver import Client

from phospho_otel.store.clickhouse import ClickHouseStore
from tools.rotel import free_port

__all__ = ["ClickHouseServer", "new_database", "open_clickhouse_store", "require_server",
           "server_command", "shared_server"]

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/error.log</errorlog>
    <console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp_port}</tcp_port>
  <http_port>{http_port}</http_port>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <user_files_path>{dir}/user_files/</user_files_path>
  <format_schema_path>{dir}/format_schemas/</format_schema_path>
  <timezone>UTC</timezone>
  <mark_cache_size>67108864</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
</yandex>
"""
_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default></default></quotas>
</yandex>
"""
START_TIMEOUT_S = 60.0


def server_command() -> list[str] | None:
    """How to run the server here: ``clickhouse-server`` (Debian puts it in /usr/sbin) or
    the single ``clickhouse`` binary of newer packages; None when neither is installed."""
    for candidate in (shutil.which("clickhouse-server"), "/usr/sbin/clickhouse-server",
                      "/usr/bin/clickhouse-server"):
        if candidate and os.access(candidate, os.X_OK):
            return [candidate]
    single = shutil.which("clickhouse")
    return [single, "server"] if single else None


class ClickHouseServer:
    """One ``clickhouse-server`` process on free ports, its files in ``directory``."""

    def __init__(self, directory: Path) -> None:
        command = server_command()
        if command is None:
            raise RuntimeError("clickhouse-server is not installed"
                               " (apt-get install -y clickhouse-server)")
        self.directory = directory
        self.port = free_port()
        http_port = free_port()
        config = directory / "config.xml"
        config.write_text(_CONFIG.format(dir=directory, tcp_port=self.port,
                                         http_port=http_port))
        (directory / "users.xml").write_text(_USERS)
        self._command = [*command, f"--config-file={config}"]
        self.start()

    def start(self) -> None:
        """Start the server process (again, after ``stop``: same ports, same data) and
        wait until it answers."""
        self._output = open(self.directory / "stdout.log", "ab")
        self.process = subprocess.Popen(
            self._command, cwd=self.directory, stdout=self._output, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={**os.environ, "TZ": "UTC"})
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"clickhouse-server exited with {self.process.returncode}:"
                                   f" {self._log_tail()}")
            client = Client("127.0.0.1", port=self.port, connect_timeout=1)
            try:
                client.execute("SELECT 1")
                return
            except Exception as exc:
                last = exc
                time.sleep(0.1)
            finally:
                client.disconnect()
        raise RuntimeError(f"clickhouse-server not ready after {START_TIMEOUT_S:.0f} s ({last}):"
                           f" {self._log_tail()}")

    def _log_tail(self) -> str:
        texts = []
        for name in ("stdout.log", "error.log"):
            path = self.directory / name
            if path.exists():
                texts.append(path.read_text(errors="replace")[-1500:])
        return " | ".join(t.strip() for t in texts if t.strip()) or "(no output)"

    def client(self) -> Client:
        return Client("127.0.0.1", port=self.port)

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s; ``kill``: SIGKILL at
        once). Idempotent."""
        if self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._output.close()


_server: ClickHouseServer | None = None
_failure: str | None = None
_databases = itertools.count()


def _cleanup(directory: str) -> None:
    if _server is not None:
        _server.stop()
    shutil.rmtree(directory, ignore_errors=True)


def shared_server() -> ClickHouseServer:
    """The test run's server, started on first use and stopped at exit."""
    global _server, _failure
    if _server is not None:
        return _server
    if _failure is None:
        directory = tempfile.mkdtemp(prefix="phospho-clickhouse-")
        try:
            _server = ClickHouseServer(Path(directory))
        except Exception as exc:
            shutil.rmtree(directory, ignore_errors=True)
            _failure = f"cannot start a ClickHouse server: {exc}"
        else:
            atexit.register(_cleanup, directory)
            return _server
    require_server()
    raise AssertionError("unreachable")


def require_server() -> None:
    """Fail (under CI) or skip (elsewhere) when the server could not be started."""
    if _failure is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{_failure} (CI=true: ClickHouse tests must run)", pytrace=False)
    pytest.skip(_failure)


def new_database(name: str) -> str:
    """A database name not used before in this test run (not created yet)."""
    safe = "".join(c if c.isalnum() else "_" for c in name)[:40]
    return f"t{os.getpid()}_{next(_databases)}_{safe}"


def open_clickhouse_store(name: str, **options: object) -> ClickHouseStore:
    """A new empty store on the shared server, in a database of its own."""
    server = shared_server()
    return ClickHouseStore("127.0.0.1", server.port, new_database(name),
                           **options)  # type: ignore[arg-type]
