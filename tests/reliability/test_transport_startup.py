"""Start-up failures of the ports and the host: ``python -m phospho_otel serve`` says what
is wrong in one line on stderr (no traceback, no gRPC log line) and exits non-zero
(issue 9, defect 14, the ports' half)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.errors import ConfigurationError
from phospho_otel.server import AggregatorServer, ServerSettings


def serve(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``serve`` with ``args`` until it exits (it must: each case is a failure)."""
    return subprocess.run(
        [sys.executable, "-m", "phospho_otel", "serve", "--store", str(tmp_path / "s.db"),
         *args],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if not k.startswith(("PHOSPHO_", "GRPC_"))},
    )


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line of stderr of a failed start."""
    assert result.returncode != 0, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another program listens on (127.0.0.1)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield int(sock.getsockname()[1])
    sock.close()


class TestPortFailures:
    """Each way the ports cannot be had: one line naming the port and the server."""

    def test_same_port_for_both(self, tmp_path: Path) -> None:
        """--http-port 9 --grpc-port 9: refused before anything is bound, naming both."""
        line = one_line(serve(tmp_path, "--http-port", "9", "--grpc-port", "9"))
        assert "9" in line and "http" in line.lower() and "grpc" in line.lower(), line
        assert not (tmp_path / "s.db").exists(), "the store was touched"

    def test_busy_http_port(self, tmp_path: Path, busy_port: int) -> None:
        """The HTTP port is taken: the line names the port and says HTTP."""
        line = one_line(serve(tmp_path, "--http-port", str(busy_port), "--grpc-port", "0"))
        assert str(busy_port) in line and "HTTP" in line and "in use" in line, line

    def test_busy_grpc_port(self, tmp_path: Path, busy_port: int) -> None:
        """The gRPC port is taken: the line names the port and says gRPC; grpcio's own
        log line does not appear."""
        line = one_line(serve(tmp_path, "--http-port", "0", "--grpc-port", str(busy_port)))
        assert str(busy_port) in line and "gRPC" in line and "in use" in line, line

    @pytest.mark.parametrize("host", ["192.0.2.1", "no-such-host.invalid"])
    def test_host_cannot_be_bound(self, tmp_path: Path, host: str) -> None:
        """An address that is not this machine's, or a name that does not resolve."""
        line = one_line(serve(tmp_path, "--host", host, "--http-port", "0", "--grpc-port", "0"))
        assert host in line and "--host" in line, line


class TestInProcess:
    """The same conditions through ``AggregatorServer``: the errors ``cli`` prints."""

    def test_same_port_is_a_configuration_error(self, tmp_path: Path) -> None:
        """Equal non-zero ports are refused by the settings themselves."""
        with pytest.raises(ConfigurationError, match="different ports"):
            ServerSettings(store=str(tmp_path / "x.db"), http_port=8000, grpc_port=8000)
        ServerSettings(store=str(tmp_path / "x.db"), http_port=0, grpc_port=0)  # any free ones

    def test_busy_port_is_an_oserror(self, tmp_path: Path, busy_port: int) -> None:
        """``start`` raises ``OSError`` naming the port; the store is not opened."""
        server = AggregatorServer(ServerSettings(store=str(tmp_path / "y.db"),
                                                 http_port=busy_port, grpc_port=0))
        with pytest.raises(OSError, match=f"HTTP.*{busy_port}"):
            server.start()
        assert server.store is None and not (tmp_path / "y.db").exists()
