"""The aggregator service: store, ingestor, OTLP/gRPC server, HTTP (OTLP/HTTP, API, Jaeger).

``AggregatorServer(settings).start()`` binds the HTTP port and checks the gRPC one first
(so that a port that cannot be had is reported before the store is touched), opens the
store (``open_store(settings.store)``), starts the single-writer ingestor, the gRPC server
and uvicorn in a background thread, and returns once both accept connections (ports 0
pick free ones; ``.http_port`` / ``.grpc_port`` give the bound ones). ``.stop()`` stops
accepting, drains the ingest queue and closes the store. Not thread-safe: start and stop
from one thread.

Both receivers share one byte budget (``receiver.budget``) and the ingestor's admission;
HTTP connections are guarded by ``server.connections`` (header and body deadlines, a
connection limit), gRPC ones by grpcio's options (``receiver.grpc``). The connection
limit is lowered to fit the open-files limit (``ulimit -n``; ``_descriptor_shares``).
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import load_config
from phospho_otel.receiver.budget import ByteBudget
from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.server.app import create_app
from phospho_otel.server.connections import ConnectionLimits, guarded_protocol
from phospho_otel.server.settings import ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import AnalysisStore, Store, StoreWriter

if TYPE_CHECKING:
    import grpc

__all__ = ["AggregatorServer"]

logger = logging.getLogger(__name__)


FD_RESERVE = 64
"""File descriptors kept for everything but connections (the store's files, gRPC's and
asyncio's own, logs)."""
KEEP_ALIVE_S = 5
"""An HTTP connection idle this long after a response is closed (uvicorn's default)."""
BACKLOG = 2048
"""Connections waiting to be accepted at most (uvicorn's default), when descriptors
allow."""


def _cannot_listen(what: str, flag: str, host: str, port: int, exc: OSError) -> OSError:
    """``exc`` (from binding ``host:port``) as one line saying what and what to do."""
    if isinstance(exc, socket.gaierror):
        why = f"{host!r} is not a known host name or address (check --host)"
    elif exc.errno == errno.EADDRINUSE:
        why = (f"the address is already in use (another program listens on port {port}: "
               f"stop it or choose another {flag})")
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = f"{host} is not an address of this machine (check --host)"
    elif exc.errno == errno.EACCES:
        why = f"permission denied (ports below 1024 need privileges: choose another {flag})"
    else:
        why = exc.strerror or str(exc)
    return OSError(f"cannot listen for {what} on {host}:{port}: {why}")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bind(host: str, port: int) -> socket.socket:
    """The HTTP listening socket, bound and listening here (so that port 0 gives its port
    at once, and nothing else can take the port before uvicorn runs).

    ``IPPROTO_TCP`` matters: asyncio sets ``TCP_NODELAY`` on accepted connections only
    when their protocol says TCP, and without it uvicorn's two writes per response (head,
    body) wait ~40 ms for the client's delayed ACK on every keep-alive request.
    """
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise _cannot_listen("HTTP", "--http-port", host, port, exc) from None
    sock.set_inheritable(True)
    return sock


def _check_grpc_port(host: str, port: int) -> None:
    """Raise the ``OSError`` of ``_cannot_listen`` if ``host:port`` cannot be bound now
    (grpcio would log its own error line, then raise a vaguer one)."""
    if port == 0:
        return
    with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise _cannot_listen("gRPC", "--grpc-port", host, port, exc) from None


def _descriptor_shares(requested: int) -> tuple[int, int]:
    """(connections per server, accept backlog) fitting the open-files limit.

    Beyond ``FD_RESERVE``, descriptors are shared four ways: HTTP connections, gRPC
    connections, and twice the backlog, because asyncio accepts up to a backlog of
    connections in one go, before their protocols can close idle ones to make room (and
    may do so twice before the closed ones are freed); past the limit ``accept`` fails
    (EMFILE) and asyncio stops accepting for a second, valid clients included."""
    try:
        import resource
    except ImportError:  # not POSIX
        return requested, BACKLOG
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return requested, BACKLOG
    share = max(1, (soft - FD_RESERVE) // 4)
    if requested > share:
        logger.info("max_connections %d lowered to %d per server to fit the open-files limit "
                    "(ulimit -n %d)", requested, share, soft)
    return min(requested, share), min(BACKLOG, share)  # the kernel's queue stays BACKLOG


class AggregatorServer:
    """Runs the whole aggregator in this process.

    Args:
        settings: where to store, what to bind, the token; see ``ServerSettings``.
        writer: what the ingestor writes to, made from the opened store (the store
            itself by default): fault injection, for tests of a slow or failing store.
    """

    def __init__(self, settings: ServerSettings, *,
                 writer: Callable[[Store], StoreWriter] | None = None) -> None:
        self.settings = settings
        self._writer = writer
        self.store: Store | None = None
        self.analyzer: Analyzer | None = None
        self.ingestor: Ingestor | None = None
        self._grpc: grpc.Server | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self.http_port: int | None = None
        self.grpc_port: int | None = None

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP API, e.g. ``http://127.0.0.1:8318``."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        elif ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.http_port}"

    def start(self, timeout: float = 30.0) -> AggregatorServer:
        """Start every part; raise ``OSError`` saying which server, address and why when a
        port cannot be bound, ``StoreError`` / ``ConfigurationError`` when the store
        cannot be opened, ``RuntimeError`` if HTTP does not come up in ``timeout``."""
        if self._thread is not None:
            raise RuntimeError("AggregatorServer already started")
        s = self.settings
        try:
            sock = _bind(s.host, s.http_port)
            self._sock = sock
            self.http_port = int(sock.getsockname()[1])
            _check_grpc_port(s.host, s.grpc_port)
            insights = load_config(s.insights)
            self.store = open_store(s.store, synchronous=s.sqlite_synchronous)
            if s.analyzer_interval_s > 0 and isinstance(self.store, AnalysisStore):
                self.analyzer = Analyzer(self.store, insights, interval_s=s.analyzer_interval_s)
            writer = self._writer(self.store) if self._writer is not None else self.store
            self.ingestor = Ingestor(writer, max_pending_spans=s.max_pending_spans,
                                     max_group_spans=s.max_group_spans,
                                     max_drain_s=s.max_drain_s)
            budget = ByteBudget(s.max_buffered_bytes)
            max_connections, backlog = _descriptor_shares(s.max_connections)
            self._grpc, self.grpc_port = start_grpc_server(
                self.ingestor,
                host=s.host,
                port=s.grpc_port,
                token=s.token,
                max_message_bytes=s.max_body_bytes,
                budget=budget,
                max_connections=max_connections,
                handshake_timeout_s=s.header_timeout_s,
            )
            app = create_app(self.store, self.ingestor, s, budget=budget,
                             insights_config=insights)
            limits = ConnectionLimits(header_timeout_s=s.header_timeout_s,
                                      body_timeout_s=s.body_timeout_s,
                                      body_min_rate=s.body_min_rate,
                                      max_connections=max_connections)
            config = uvicorn.Config(
                app,
                http=guarded_protocol(limits),
                log_level="warning",
                access_log=False,
                lifespan="off",
                timeout_keep_alive=KEEP_ALIVE_S,
                backlog=backlog,
                timeout_graceful_shutdown=5,
            )
            self._uvicorn = uvicorn.Server(config)
            self._thread = threading.Thread(
                target=self._uvicorn.run,
                kwargs={"sockets": [sock]},
                name="phospho-otel-http",
                daemon=True,
            )
            self._thread.start()
            deadline = time.monotonic() + timeout
            while not self._uvicorn.started:
                if not self._thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the HTTP server did not start")
                time.sleep(0.01)
            # uvicorn's backlog is also how many connections asyncio accepts in one go
            # (see _descriptor_shares); the kernel's queue can stay long.
            sock.listen(BACKLOG)
            if self.analyzer is not None:
                self.analyzer.start()
        except BaseException:
            self.stop()
            raise
        logger.info("listening http=%s:%s grpc=%s:%s", s.host, self.http_port, s.host,
                    self.grpc_port)
        return self

    def stop(self) -> None:
        """Stop accepting, drain what was accepted into the store, close the store."""
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        self._uvicorn = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._grpc is not None:
            self._grpc.stop(grace=2).wait(5)
            self._grpc = None
        if self.ingestor is not None:
            self.ingestor.close()
            self.ingestor = None
        if self.analyzer is not None:
            self.analyzer.stop()
            self.analyzer = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> AggregatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
