"""Access: the bearer scheme in any case, the token from a file (out of the process
list), loopback Host names only when open on loopback, and gRPC bound to exactly the
address given (issue 9, defect 15)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.errors import ConfigurationError, Unauthorized
from phospho_otel.receiver.auth import BearerToken
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import make_request, task_span

TOKEN = "s3cret-token"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
PROTOBUF = {"Content-Type": "application/x-protobuf"}
LINE = re.compile(r"listening http=\S+:(\d+) grpc=\S+:(\d+)")


def export(target: str, authorization: str | None) -> None:
    """One gRPC Export of a task span (raises ``grpc.RpcError`` on refusal)."""
    with grpc.insecure_channel(target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT)
        metadata = (("authorization", authorization),) if authorization else ()
        call(make_request([task_span("grpc-auth")]).SerializeToString(), metadata=metadata,
             timeout=10)


@pytest.fixture(scope="module")
def with_token(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    path = tmp_path_factory.mktemp("access") / "token.db"
    with AggregatorServer(ServerSettings(store=str(path), http_port=0, grpc_port=0,
                                         token=TOKEN)) as server:
        yield server


@pytest.fixture(scope="module")
def open_loopback(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    path = tmp_path_factory.mktemp("access") / "open.db"
    with AggregatorServer(ServerSettings(store=str(path), http_port=0, grpc_port=0)) as server:
        yield server


class TestBearerScheme:
    """RFC 7235: the auth-scheme is case-insensitive; the token itself is not."""

    @pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
    def test_any_case_of_the_scheme(self, with_token: AggregatorServer, scheme: str) -> None:
        """HTTP API, OTLP/HTTP and OTLP/gRPC accept the scheme in any case."""
        value = f"{scheme} {TOKEN}"
        r = httpx.get(f"{with_token.http_url}/api/sessions", headers={"Authorization": value})
        assert r.status_code == 200, r.text
        r = httpx.post(f"{with_token.http_url}/v1/traces", headers={
            **PROTOBUF, "Authorization": value},
            content=make_request([task_span(f"http-{scheme}")]).SerializeToString())
        assert r.status_code == 200, r.text
        export(f"127.0.0.1:{with_token.grpc_port}", value)

    @pytest.mark.parametrize("value", [
        f"Bearer {TOKEN.upper()}", f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "Bearer ",
        f"Bearer {TOKEN} extra",
    ])
    def test_wrong_values_still_refused(self, value: str) -> None:
        """The token is compared exactly; another scheme or no scheme is refused."""
        with pytest.raises(Unauthorized):
            BearerToken(TOKEN).check(value)

    def test_grpc_wrong_token(self, with_token: AggregatorServer) -> None:
        """gRPC: a lower-case scheme with a wrong token is still UNAUTHENTICATED."""
        with pytest.raises(grpc.RpcError) as info:
            export(f"127.0.0.1:{with_token.grpc_port}", "bearer nope")
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


def start_serving(tmp_path: Path, *args: str,
                  env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], int]:
    """``python -m phospho_otel serve`` on free ports; (process, HTTP port)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "phospho_otel", "serve", "--store", str(tmp_path / "t.db"),
         "--http-port", "0", "--grpc-port", "0", *args],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")},
             **(env or {})},
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        match = LINE.search(line)
        if match:
            return proc, int(match.group(1))
    proc.wait(10)
    raise AssertionError(f"serve did not start (exit {proc.returncode})")


class TestTokenFile:
    """``--token-file PATH`` / ``PHOSPHO_TOKEN_FILE``: the token never on the command line."""

    @pytest.mark.parametrize("how", ["flag", "env"])
    def test_token_from_file_not_in_cmdline(self, tmp_path: Path, how: str) -> None:
        """The server requires the file's (stripped) token; /proc/<pid>/cmdline does not
        hold it."""
        token_file = tmp_path / "token"
        token_file.write_text(f"  {TOKEN}\n")
        if how == "flag":
            proc, port = start_serving(tmp_path, "--token-file", str(token_file))
        else:
            proc, port = start_serving(tmp_path, env={"PHOSPHO_TOKEN_FILE": str(token_file)})
        try:
            cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
            assert TOKEN.encode() not in cmdline
            url = f"http://127.0.0.1:{port}/api/sessions"
            assert httpx.get(url).status_code == 401
            assert httpx.get(url, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        finally:
            proc.terminate()
            proc.wait(20)

    @pytest.mark.parametrize("content", [None, "", "  \n"])
    def test_unusable_file_refused(self, tmp_path: Path, content: str | None) -> None:
        """A missing, empty or blank token file: ConfigurationError naming the file."""
        token_file = tmp_path / "token"
        if content is not None:
            token_file.write_text(content)
        with pytest.raises(ConfigurationError, match=re.escape(str(token_file))):
            ServerSettings(store=str(tmp_path / "x.db"), token_file=str(token_file))

    def test_unusable_file_one_line(self, tmp_path: Path) -> None:
        """serve with a missing token file exits non-zero with one line on stderr."""
        result = subprocess.run(
            [sys.executable, "-m", "phospho_otel", "serve", "--store", str(tmp_path / "t.db"),
             "--token-file", str(tmp_path / "missing"), "--http-port", "0", "--grpc-port", "0"],
            capture_output=True, text=True, timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("PHOSPHO_")})
        assert result.returncode != 0
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "missing" in result.stderr and "Traceback" not in result.stderr

    def test_token_and_token_file_conflict(self, tmp_path: Path) -> None:
        """Both a token and a token file: refused (which one would win is a surprise)."""
        token_file = tmp_path / "token"
        token_file.write_text(TOKEN)
        with pytest.raises(ConfigurationError, match="token"):
            ServerSettings(store="x.db", token="other", token_file=str(token_file))

    def test_help_says_why(self) -> None:
        """serve --help says the file keeps the token out of the process list."""
        result = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200)
        assert result.exit_code == 0
        text = " ".join(result.output.split())
        assert "--token-file" in text and "process list" in text, text


def raw_get(port: int, path: str, host: str | None) -> tuple[int, bytes]:
    """GET with exactly this Host header (or none, HTTP/1.0); (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if host is None:
            sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        else:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                         .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


class TestLoopbackHostNames:
    """Open (no token) on loopback, only loopback Host names are answered: a page that
    rebinds its own DNS name to 127.0.0.1 cannot read the server."""

    @pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "[::1]", "LOCALHOST",
                                      "localhost.", None])
    def test_loopback_names_answered(self, open_loopback: AggregatorServer,
                                     host: str | None) -> None:
        """localhost, 127.0.0.1 and [::1], with or without the port, and no Host at all
        (HTTP/1.0, not a browser): answered."""
        port = open_loopback.http_port
        assert port is not None
        for value in ([host, f"{host}:{port}"] if host else [None]):
            status, body = raw_get(port, "/api/sessions", value)
            assert status == 200, (value, body)

    @pytest.mark.parametrize("host", ["evil.example", "evil.example:8318", "127.0.0.1.nip.io",
                                      "localhost.evil.example", "[::2]"])
    @pytest.mark.parametrize("path", ["/api/sessions", "/jaeger/api/services"])
    def test_other_names_refused(self, open_loopback: AggregatorServer, host: str,
                                 path: str) -> None:
        """Any other Host: 421 with a message saying why and what to do."""
        port = open_loopback.http_port
        assert port is not None
        status, body = raw_get(port, path, host)
        assert status == 421, body
        assert b"Host" in body and b"--token" in body

    def test_ingest_refused_too(self, open_loopback: AggregatorServer) -> None:
        """POST /v1/traces with a foreign Host: 421, nothing stored."""
        r = httpx.post(f"{open_loopback.http_url}/v1/traces", headers={
            **PROTOBUF, "Host": "evil.example"},
            content=make_request([task_span("rebound")]).SerializeToString())
        assert r.status_code == 421
        assert httpx.get(f"{open_loopback.http_url}/api/tasks/rebound").status_code == 404

    def test_health_stays_open(self, open_loopback: AggregatorServer) -> None:
        """/healthz answers whatever the Host (it tells nothing)."""
        port = open_loopback.http_port
        assert port is not None
        assert raw_get(port, "/healthz", "evil.example")[0] == 200

    def test_any_host_with_a_token(self, with_token: AggregatorServer) -> None:
        """With a token the Host is not checked: the token protects the server."""
        r = httpx.get(f"{with_token.http_url}/api/sessions", headers={
            "Authorization": f"Bearer {TOKEN}", "Host": "aggregator.internal"})
        assert r.status_code == 200


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


class TestBindExactly:
    """``--host 0.0.0.0`` binds IPv4 only, for HTTP and for gRPC."""

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
    def test_ipv4_wildcard_is_not_ipv6(self, tmp_path: Path) -> None:
        """Both ports answer on 127.0.0.1 and refuse on ::1."""
        settings = ServerSettings(store=str(tmp_path / "w.db"), host="0.0.0.0", http_port=0,
                                  grpc_port=0, token=TOKEN)
        with AggregatorServer(settings) as server:
            for port in (server.http_port, server.grpc_port):
                assert port is not None
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
                with pytest.raises(OSError):
                    socket.create_connection(("::1", port), timeout=5).close()
            export(f"127.0.0.1:{server.grpc_port}", f"Bearer {TOKEN}")

    @pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback here")
    def test_fixed_port(self, tmp_path: Path) -> None:
        """The same with a given gRPC port (not 0)."""
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            port = int(probe.getsockname()[1])
        settings = ServerSettings(store=str(tmp_path / "f.db"), host="0.0.0.0", http_port=0,
                                  grpc_port=port, token=TOKEN)
        with AggregatorServer(settings) as server:
            assert server.grpc_port == port
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
            with pytest.raises(OSError):
                socket.create_connection(("::1", port), timeout=5).close()
