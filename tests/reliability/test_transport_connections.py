"""Slow, idle and malformed connections are closed; a connection limit that evicts idle
connections keeps a valid client served (issue 9, defect 9). Real sockets against the
real server, with short timeouts set through the environment."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import make_request, make_span, task_span

SHORT = {
    "PHOSPHO_HEADER_TIMEOUT_S": "0.5",
    "PHOSPHO_BODY_TIMEOUT_S": "0.5",
    "PHOSPHO_BODY_MIN_RATE": "1000000",
    "PHOSPHO_MAX_CONNECTIONS": "20",
}
"""Timeouts of half a second, bodies at 1 MB/s at least after that, 20 connections."""
PATIENCE_S = 3.0
"""How long a test waits for the server to close a connection it should close."""


def serve(tmp_path: Path, env: dict[str, str]) -> AggregatorServer:
    settings = ServerSettings.from_env(env, store=str(tmp_path / "c.db"), http_port=0,
                                       grpc_port=0)
    return AggregatorServer(settings).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    s = serve(tmp_path_factory.mktemp("conn"), SHORT)
    yield s
    s.stop()


def connect(server: AggregatorServer) -> socket.socket:
    assert server.http_port is not None
    sock = socket.create_connection(("127.0.0.1", server.http_port), timeout=PATIENCE_S)
    return sock


def read_to_close(sock: socket.socket, timeout_s: float = PATIENCE_S) -> tuple[bytes, bool]:
    """Everything the server sends until it closes, and whether it closed in time."""
    sock.settimeout(0.05)
    data = b""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return data, True
        if not chunk:
            return data, True
        data += chunk
    return data, False


def trickle(sock: socket.socket, piece: bytes, every_s: float, stop: threading.Event) -> None:
    """Send ``piece`` every ``every_s`` until the server closes or ``stop`` is set."""
    while not stop.is_set():
        try:
            sock.sendall(piece)
        except OSError:
            return
        stop.wait(every_s)


def closed_while_trickling(sock: socket.socket, piece: bytes,
                           every_s: float) -> tuple[bytes, bool]:
    stop = threading.Event()
    sender = threading.Thread(target=trickle, args=(sock, piece, every_s, stop), daemon=True)
    sender.start()
    try:
        return read_to_close(sock)
    finally:
        stop.set()
        sender.join(5)
        sock.close()


def status_of(response: bytes) -> int:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", response)
    assert match, response[:200]
    return int(match.group(1))


def body_bytes() -> bytes:
    return make_request([task_span("conn-ok")]).SerializeToString()


class TestHeaderDeadline:
    """Headers must be complete within the header timeout, from the connection's opening
    or from the first byte after a keep-alive response."""

    def test_idle_connection_closed(self, server: AggregatorServer) -> None:
        """A connection that sends nothing is closed (silently)."""
        data, closed = read_to_close(connect(server))
        assert closed and data == b""

    def test_slow_headers_get_408(self, server: AggregatorServer) -> None:
        """Headers dribbled a byte at a time: 408 and closed."""
        sock = connect(server)
        sock.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: localhost\r\n")
        data, closed = closed_while_trickling(sock, b"X", 0.1)
        assert closed and status_of(data) == 408, data

    def test_slow_headers_after_keepalive(self, server: AggregatorServer) -> None:
        """The deadline starts again for the next request on a kept-alive connection."""
        sock = connect(server)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        first = b""
        while b'"ok"' not in first:
            first += sock.recv(65536)
        sock.sendall(b"GET /api/sessions HTTP/1.1\r\n")
        data, closed = closed_while_trickling(sock, b"X", 0.1)
        assert closed and status_of(data) == 408, data


class TestBodyDeadline:
    """Bodies must keep up a minimum rate after the body timeout."""

    def test_endless_chunked_body(self, server: AggregatorServer) -> None:
        """A chunked body that never ends, slowly: 408 and closed."""
        sock = connect(server)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n")
        data, closed = closed_while_trickling(sock, b"1\r\nx\r\n", 0.05)
        assert closed and status_of(data) == 408, data

    def test_one_byte_at_a_time(self, server: AggregatorServer) -> None:
        """A Content-Length body sent a byte every 100 ms: 408 and closed."""
        sock = connect(server)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n")
        data, closed = closed_while_trickling(sock, b"\x00", 0.1)
        assert closed and status_of(data) == 408, data

    def test_unread_endless_body_closed(self, server: AggregatorServer) -> None:
        """A GET with an endless chunked body: answered, then the connection is closed
        instead of being read forever."""
        sock = connect(server)
        sock.sendall(b"GET /api/sessions HTTP/1.1\r\nHost: localhost\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        data, closed = closed_while_trickling(sock, b"1\r\nx\r\n", 0.05)
        assert closed, data

    def test_fast_large_body_accepted(self, server: AggregatorServer) -> None:
        """A 4 MB body sent in small pieces at loopback speed is not cut off: the
        deadline grows with what arrives."""
        request = make_request([make_span({"blob": "x" * 4000}) for _ in range(1000)])
        body = request.SerializeToString()
        assert len(body) > 4_000_000

        def pieces() -> Iterator[bytes]:
            for i in range(0, len(body), 16384):
                yield body[i:i + 16384]

        r = httpx.post(f"{server.http_url}/v1/traces", content=pieces(),
                       headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert r.status_code == 200, r.content


class TestFraming:
    """RFC 9112 §6.3: Content-Length with Transfer-Encoding -> close after responding."""

    def test_both_lengths_close(self, server: AggregatorServer) -> None:
        """The request is answered and the connection closed."""
        body = body_bytes()
        chunked = f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"
        sock = connect(server)
        sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/x-protobuf\r\n"
                     + f"Content-Length: {len(body)}\r\n".encode()
                     + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
        data, closed = read_to_close(sock, 1.0)  # less than any timeout of the server
        sock.close()
        assert closed, data
        assert status_of(data) in (200, 400), data


class TestConnectionLimit:
    """Past --max-connections the longest-idle connection makes room; when none is idle
    a new one gets 503 and is closed."""

    def test_idle_connections_do_not_starve_a_client(self, server: AggregatorServer) -> None:
        """50 idle connections (limit 20), then a valid client: answered at once."""
        idle = [connect(server) for _ in range(50)]
        try:
            time.sleep(0.1)
            started = time.monotonic()
            r = httpx.get(f"{server.http_url}/api/sessions", timeout=PATIENCE_S)
            assert r.status_code == 200
            assert time.monotonic() - started < 2.0
            assert server.http_port is not None
            closed = 0
            for sock in idle:
                sock.settimeout(0.01)
                try:
                    closed += sock.recv(1) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed += 1
            assert closed >= 30
        finally:
            for sock in idle:
                sock.close()

    def test_all_busy_gets_503(self, tmp_path: Path) -> None:
        """20 connections all sending bodies (none idle): a 21st gets 503 + Retry-After."""
        s = serve(tmp_path, {**SHORT, "PHOSPHO_BODY_TIMEOUT_S": "10",
                             "PHOSPHO_HEADER_TIMEOUT_S": "10"})
        busy = []
        try:
            for _ in range(20):
                sock = connect(s)
                sock.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n"
                             b"Content-Type: application/x-protobuf\r\n"
                             b"Content-Length: 100000\r\n\r\nxx")
                busy.append(sock)
            time.sleep(0.2)
            sock = connect(s)
            data, closed = read_to_close(sock)
            sock.close()
            assert closed and status_of(data) == 503, data
            assert b"retry-after:" in data.lower()
        finally:
            for sock in busy:
                sock.close()
            s.stop()


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


class TestFileDescriptors:
    """At a low ``ulimit -n`` the connection limit stays under it: idle connections
    cannot take the last descriptor from a valid client."""

    def test_low_ulimit(self, tmp_path: Path) -> None:
        """A server at ulimit -n 256; 400 idle connections; a valid client is answered."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "phospho_otel", "serve", "--store", str(tmp_path / "u.db"),
             "--http-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            preexec_fn=_limit_files,
            env={k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")},
        )
        idle: list[socket.socket] = []
        try:
            assert proc.stdout is not None
            port = 0
            for line in proc.stdout:
                match = re.search(r"listening http=\S+:(\d+)", line)
                if match:
                    port = int(match.group(1))
                    break
            assert port, "server did not start"
            for _ in range(400):
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            time.sleep(0.5)
            r = httpx.post(f"http://127.0.0.1:{port}/v1/traces", content=body_bytes(),
                           headers={"Content-Type": "application/x-protobuf"}, timeout=5)
            assert r.status_code == 200
        finally:
            for sock in idle:
                sock.close()
            proc.terminate()
            proc.wait(20)


class TestGrpcConnections:
    """The gRPC port closes connections that never complete the HTTP/2 handshake."""

    def test_silent_connection_closed(self, server: AggregatorServer) -> None:
        """A TCP connection to the gRPC port that sends nothing is closed."""
        assert server.grpc_port is not None
        sock = socket.create_connection(("127.0.0.1", server.grpc_port), timeout=PATIENCE_S)
        _, closed = read_to_close(sock)
        sock.close()
        assert closed
