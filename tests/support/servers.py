"""Real servers on free 127.0.0.1 ports for tests: any ASGI app under uvicorn in a thread
(``serve_asgi``), and the OTLP receivers in front of a real store (``running_receiver``),
its writes passing through a ``gate.GatedWriter`` (open unless a test closes it)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.receiver.http import otlp_traces_endpoint
from phospho_otel.store.sqlite import SQLiteStore
from tests.support.gate import GatedWriter
from tools.rotel import free_port, wait_for_port

__all__ = ["Receiver", "free_port", "running_receiver", "serve_asgi", "wait_for_port"]


@contextmanager
def serve_asgi(app: ASGIApp) -> Iterator[int]:
    """Serve ``app`` with uvicorn in a thread on a free 127.0.0.1 port; yields the port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@dataclass
class Receiver:
    """A running store + ingestor + OTLP/HTTP (uvicorn) + OTLP/gRPC receiver; the
    ingestor writes through ``gate`` (close it to hold the writer back)."""

    store: SQLiteStore
    ingestor: Ingestor
    http_port: int
    grpc_port: int
    gate: GatedWriter

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/v1/traces"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"


@contextmanager
def running_receiver(
    db_path: str | os.PathLike[str],
    *,
    token: str | None = None,
    max_body_bytes: int = 64 * 1024 * 1024,
    max_pending_spans: int = 200_000,
) -> Iterator[Receiver]:
    """Run the receivers on 127.0.0.1 (free ports) in this process until the block ends."""
    store = SQLiteStore(db_path)
    gate = GatedWriter(store)
    ingestor = Ingestor(gate, max_pending_spans=max_pending_spans)
    grpc_server, grpc_port = start_grpc_server(
        ingestor, host="127.0.0.1", port=0, token=token, max_message_bytes=max_body_bytes
    )
    app = Starlette(routes=[
        Route("/v1/traces", otlp_traces_endpoint(ingestor, max_body_bytes), methods=["POST"])
    ])
    try:
        with serve_asgi(app) as http_port:
            yield Receiver(store, ingestor, http_port, grpc_port, gate)
    finally:
        gate.open()
        grpc_server.stop(0).wait(5)
        ingestor.close()
        store.close()
