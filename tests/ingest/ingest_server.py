"""Test-only aggregator process: SQLiteStore + Ingestor + OTLP/HTTP (uvicorn) + OTLP/gRPC.

    python tests/ingest/ingest_server.py DB_PATH

Prints ``phospho-otel listening http=127.0.0.1:N grpc=127.0.0.1:N`` once both receivers
are up (free ports), then serves until killed or SIGTERM.
"""

from __future__ import annotations

import signal
import socket
import sys
import threading

import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.receiver.http import otlp_traces_endpoint
from phospho_otel.receiver.ingest import Ingestor
from phospho_otel.store.sqlite import SQLiteStore


def main(db_path: str) -> None:
    store = SQLiteStore(db_path)
    ingestor = Ingestor(store)
    grpc_server, grpc_port = start_grpc_server(
        ingestor, host="127.0.0.1", port=0, token=None, max_message_bytes=64 << 20
    )
    app = Starlette(
        routes=[Route("/v1/traces", otlp_traces_endpoint(ingestor, 64 << 20), methods=["POST"])]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not server.started:
        stop.wait(0.01)
    print(
        f"phospho-otel listening http=127.0.0.1:{sock.getsockname()[1]} "
        f"grpc=127.0.0.1:{grpc_port}",
        flush=True,
    )
    stop.wait()
    server.should_exit = True
    thread.join(10)
    grpc_server.stop(1).wait()
    ingestor.close()
    store.close()


if __name__ == "__main__":
    main(sys.argv[1])
