"""Shared pieces of the collector tests: the shipped configuration files, rotel started
from ``collector-config/rotel.env``, the aggregator as a real ``phospho-otel serve``
subprocess, and a workload app run as its own process through the SDK.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import httpx

from tools.rotel import RotelCollector, free_port, rotel_binary, wait_for_port

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
ROTEL_ENV = CONFIG_DIR / "rotel.env"
DATA_DIR = Path(__file__).resolve().parent / "data"

_ENV_LINE = re.compile(r"^(?P<key>[A-Z][A-Z0-9_]*)=(?P<value>\S(?:.*\S)?|)$")


def parse_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines as docker ``--env-file``, systemd ``EnvironmentFile`` and
    ``set -a; . file`` all read them the same way: no quotes, no spaces around ``=``,
    ``#`` comment lines. Anything else raises ``ValueError`` naming the line."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            raise ValueError(f"{path.name}:{number}: not a KEY=VALUE line: {raw!r}")
        key, value = match["key"], match["value"]
        if value[:1] in ("'", '"') or "#" in value:
            raise ValueError(f"{path.name}:{number}: quotes or an inline comment in {raw!r}")
        if key in settings:
            raise ValueError(f"{path.name}:{number}: {key} is set twice")
        settings[key] = value
    return settings


@cache
def rotel_help() -> str:
    """``rotel-agent start --help`` of the installed rotel."""
    out = subprocess.run(
        [str(rotel_binary()), "start", "--help"], capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def rotel_help_env_vars() -> set[str]:
    """Every ``ROTEL_*`` variable ``rotel-agent start --help`` lists."""
    return set(re.findall(r"\[env: (ROTEL_[A-Z0-9_]+)=", rotel_help()))


class RotelFromEnvFile(RotelCollector):
    """rotel configured by an env file only (no flags), with its receiver ports and the
    exporter endpoint overridden so that the test owns them (``overrides`` replaces more
    of the file's settings, for the variants its comments describe)."""

    def __init__(
        self,
        env_file: Path,
        exporter_endpoint: str,
        *,
        grpc_port: int | None = None,
        http_port: int | None = None,
        log_path: Path | None = None,
        overrides: dict[str, str] | None = None,
    ) -> None:
        settings = parse_env_file(env_file) | (overrides or {})
        super().__init__(
            exporter_endpoint, grpc_port=grpc_port, http_port=http_port, log_path=log_path
        )
        settings.update(
            ROTEL_OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            ROTEL_OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            ROTEL_OTLP_EXPORTER_ENDPOINT=exporter_endpoint,
        )
        self.env = settings
        self.args = [str(rotel_binary()), "start"]


class AggregatorProcess:
    """``python -m phospho_otel serve`` as a child process, restartable on the same ports
    and database file."""

    READY_LINE = "phospho-otel listening"

    def __init__(self, db: Path, log_path: Path) -> None:
        self.db = db
        self.log_path = log_path
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 30.0) -> AggregatorProcess:
        """Start it and wait until it prints its listening line (then check /healthz)."""
        self.starts += 1
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable, "-m", "phospho_otel", "serve",
                    "--store", str(self.db), "--host", "127.0.0.1",
                    "--http-port", str(self.http_port), "--grpc-port", str(self.grpc_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")},
            )
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            if self.READY_LINE in text:
                break
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(f"the aggregator did not start; its output:\n{text}")
            time.sleep(0.02)
        wait_for_port(self.grpc_port, timeout=timeout)
        assert httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal it (SIGTERM drains, SIGKILL does not) and wait for it to exit."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params or None, timeout=10)
        response.raise_for_status()
        return response.json()


# --------------------------------------------------------------------------------------
# The workload: a real app process logging tasks through the SDK.

APP = Path(__file__).resolve().parent / "workload_app.py"


@dataclass
class Workload:
    """What the app logs: ``sessions`` sessions (numbered from ``first_session``) of
    ``tasks_per_session`` tasks, session ``i`` belonging to user ``i % users``; ``rate``
    tasks per second (0 = as fast as it can); feedback on every ``feedback_every``-th task.
    """

    sessions: int
    tasks_per_session: int
    users: int
    rate: float = 0.0
    feedback_every: int = 0
    first_session: int = 0
    run_id: str = field(default_factory=lambda: os.urandom(4).hex())

    @property
    def total_tasks(self) -> int:
        return self.sessions * self.tasks_per_session

    def argv(self) -> list[str]:
        return [
            "--sessions", str(self.sessions), "--tasks-per-session", str(self.tasks_per_session),
            "--users", str(self.users), "--rate", str(self.rate), "--run-id", self.run_id,
            "--feedback-every", str(self.feedback_every),
            "--first-session", str(self.first_session),
        ]


class AppProcess:
    """The workload app as a child process; its stdout says how many tasks it logged."""

    def __init__(self, workload: Workload, endpoint: str, protocol: str, log_path: Path) -> None:
        self.workload = workload
        self.log_path = log_path
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        with open(log_path, "ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(APP), "--endpoint", endpoint, "--protocol", protocol,
                 *workload.argv()],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=env,
                text=True,
            )
        self.logged = 0
        self.result: dict[str, Any] | None = None

    def lines(self) -> Iterator[str]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("logged "):
                self.logged = int(line.split()[1])
            elif line.startswith("result "):
                self.result = json.loads(line[len("result "):])
            yield line

    def wait_until_logged(self, n: int, timeout: float = 60.0) -> None:
        """Block until the app has logged at least ``n`` tasks."""
        deadline = time.monotonic() + timeout
        for _ in self.lines():
            if self.logged >= n:
                return
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"the app logged {self.logged} < {n} tasks; {self.stderr()}")

    def finish(self, timeout: float = 120.0) -> dict[str, Any]:
        """Wait for the app to log everything, flush and exit; its result line."""
        for _ in self.lines():
            pass
        code = self.process.wait(timeout)
        assert code == 0 and self.result is not None, f"app exit {code}; {self.stderr()}"
        return self.result

    def stderr(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
