"""The aggregator service: store, ingestor, OTLP/gRPC server, HTTP (OTLP/HTTP, API, Jaeger).

``AggregatorServer(settings).start()`` opens the store (``open_store(settings.store)``),
starts the single-writer ingestor, the gRPC server and uvicorn in a background thread, and
returns once both accept connections (ports 0 pick free ones; ``.http_port`` /
``.grpc_port`` give the bound ones). ``.stop()`` stops accepting, drains the ingest queue
and closes the store. Not thread-safe: start and stop from one thread.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.server.app import create_app
from phospho_otel.server.settings import ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import Store

if TYPE_CHECKING:
    import grpc

__all__ = ["AggregatorServer"]

logger = logging.getLogger(__name__)


def _bind(host: str, port: int) -> socket.socket:
    """The HTTP listening socket (bound here so that port 0 gives its port at once).

    ``IPPROTO_TCP`` matters: asyncio sets ``TCP_NODELAY`` on accepted connections only
    when their protocol says TCP, and without it uvicorn's two writes per response (head,
    body) wait ~40 ms for the client's delayed ACK on every keep-alive request.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class AggregatorServer:
    """Runs the whole aggregator in this process.

    Args:
        settings: where to store, what to bind, the token; see ``ServerSettings``.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.store: Store | None = None
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
        """Start every part; raise ``RuntimeError`` if HTTP does not come up in ``timeout``,
        ``OSError`` if a port cannot be bound, ``StoreError`` if the store cannot be opened."""
        if self._thread is not None:
            raise RuntimeError("AggregatorServer already started")
        s = self.settings
        try:
            self.store = open_store(s.store, synchronous=s.sqlite_synchronous)
            self.ingestor = Ingestor(self.store, max_pending_spans=s.max_pending_spans,
                                     max_group_spans=s.max_group_spans)
            sock = _bind(s.host, s.http_port)
            self._sock = sock
            self.http_port = int(sock.getsockname()[1])
            try:
                self._grpc, self.grpc_port = start_grpc_server(
                    self.ingestor,
                    host=s.host,
                    port=s.grpc_port,
                    token=s.token,
                    max_message_bytes=s.max_body_bytes,
                )
            except RuntimeError as exc:  # grpcio's "Failed to bind to address"
                raise OSError(f"cannot listen for gRPC on {s.host}:{s.grpc_port}: {exc}") from exc
            app = create_app(self.store, self.ingestor, s)
            config = uvicorn.Config(
                app,
                log_level="warning",
                access_log=False,
                lifespan="off",
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
