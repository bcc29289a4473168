"""Run the rotel OpenTelemetry collector (PyPI package ``rotel``) as a foreground child
process: for the demo, the tests and the benchmarks.

rotel's own Python wrapper always daemonizes (shared pid and log files, slow exit);
running the binary in the foreground keeps it our child, logging to a file of ours,
and SIGTERM flushes its held batch and exits at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["RotelCollector", "free_port", "rotel_binary", "wait_for_port"]

_SIGNAL_HANDLER_DELAY_S = 0.3


def rotel_binary() -> Path:
    """Path of the ``rotel-agent`` binary shipped inside the ``rotel`` package."""
    try:
        import rotel
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the rotel collector is not installed: pip install rotel") from exc
    path = Path(rotel.__file__).parent / "rotel-agent"
    if not path.exists():  # pragma: no cover
        raise RuntimeError(f"rotel package has no binary at {path}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while not _accepts(port, host):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")
        time.sleep(0.02)


class RotelCollector:
    """A rotel collector receiving OTLP on 127.0.0.1 and exporting traces over OTLP.

    Args:
        exporter_endpoint: where rotel sends traces, e.g. ``http://127.0.0.1:8318``
            (rotel appends ``/v1/traces`` for HTTP) or ``http://127.0.0.1:8317`` for gRPC.
        exporter_protocol: ``grpc`` or ``http``.
        batch_max_size: spans per export request (rotel's default 8192 exceeds grpcio's
            default 4 MiB message limit for typical task spans).
        batch_timeout: how long rotel holds a batch (its default 200ms adds ~200 ms p50).
        extra_args: more ``rotel start`` flags.
        grpc_port / http_port: receiver ports (free ones by default).
        log_path: where its stdout/stderr go (a temp file by default).
    """

    def __init__(
        self,
        exporter_endpoint: str,
        *,
        exporter_protocol: str = "http",
        batch_max_size: int = 1024,
        batch_timeout: str = "20ms",
        extra_args: Sequence[str] = (),
        grpc_port: int | None = None,
        http_port: int | None = None,
        log_path: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.args = [
            str(rotel_binary()),
            "start",
            "--otlp-grpc-endpoint", f"127.0.0.1:{self.grpc_port}",
            "--otlp-http-endpoint", f"127.0.0.1:{self.http_port}",
            "--exporter", "otlp",
            "--otlp-exporter-endpoint", exporter_endpoint,
            "--otlp-exporter-protocol", exporter_protocol,
            "--traces-batch-max-size", str(batch_max_size),
            "--traces-batch-timeout", batch_timeout,
            *extra_args,
        ]
        self.log_path = Path(log_path) if log_path else None
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None
        self._ready_at = 0.0

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, timeout: float = 10.0) -> RotelCollector:
        """Start rotel and wait until both receivers accept connections."""
        if self.log_path is None:
            import tempfile

            fd, name = tempfile.mkstemp(prefix="rotel-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        log = open(self.log_path, "ab")  # handed to the child process
        env = {**os.environ, **(self.env or {})}
        # Keep rotel's own settings from leaking in from the caller's environment.
        env = {k: v for k, v in env.items() if not k.startswith("ROTEL_")} | (self.env or {})
        self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        for port in (self.grpc_port, self.http_port):
            while not _accepts(port):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    code = self.process.poll()
                    self.stop()
                    why = f"exited with code {code}" if code is not None else "did not start"
                    raise RuntimeError(f"rotel {why}; its log:\n{self.log()}")
                time.sleep(0.02)
        self._ready_at = time.monotonic()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal rotel (SIGTERM flushes what it holds) and wait for it to exit."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            # rotel installs its SIGTERM handler a little after its receivers listen; a
            # SIGTERM before that kills it without flushing what it holds.
            time.sleep(max(0.0, self._ready_at + _SIGNAL_HANDLER_DELAY_S - time.monotonic()))
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
        """What rotel printed so far."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> RotelCollector:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
