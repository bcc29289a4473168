"""An interop environment whose aggregator also takes OTLP logs: the fake model server,
a real SQLite store behind one ``Ingestor``, ``POST /v1/traces`` and ``POST /v1/logs``
(with ``OTLPPathMiddleware``) on a free 127.0.0.1 port, and optionally the OTLP/gRPC
receiver (traces and logs) beside them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.receiver.grpc import start_grpc_server
from phospho_otel.receiver.http import (
    OTLPPathMiddleware,
    otlp_logs_endpoint,
    otlp_traces_endpoint,
)
from phospho_otel.store.sqlite import SQLiteStore
from tests.interop.fake_openai import fake_openai
from tests.interop.harness import Aggregator
from tests.support.servers import serve_asgi

__all__ = ["logs_interop_env"]

_MAX_BODY = 64 * 1024 * 1024


@contextmanager
def logs_interop_env(tmp_path: Path, *, grpc: bool = False
                     ) -> Iterator[tuple[Aggregator, dict[str, str]]]:
    """Yields the aggregator and the environment an app runs with (``OPENAI_BASE_URL``,
    ``OTLP_TRACES_URL``, ``OTLP_LOGS_URL``, and ``OTLP_GRPC_ENDPOINT`` with ``grpc``)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    store = SQLiteStore(tmp_path / "interop.db")
    ingestor = Ingestor(store)
    app = Starlette(
        routes=[Route("/v1/traces", otlp_traces_endpoint(ingestor, _MAX_BODY), methods=["POST"]),
                Route("/v1/logs", otlp_logs_endpoint(ingestor, _MAX_BODY), methods=["POST"])],
        middleware=[Middleware(OTLPPathMiddleware)],
    )
    server = None
    try:
        with fake_openai() as openai_url, serve_asgi(app) as port:
            base = f"http://127.0.0.1:{port}"
            env = {"OPENAI_BASE_URL": openai_url, "OTLP_TRACES_URL": f"{base}/v1/traces",
                   "OTLP_LOGS_URL": f"{base}/v1/logs"}
            if grpc:
                server, grpc_port = start_grpc_server(
                    ingestor, host="127.0.0.1", port=0, token=None,
                    max_message_bytes=_MAX_BODY)
                env["OTLP_GRPC_ENDPOINT"] = f"127.0.0.1:{grpc_port}"
            yield Aggregator(store, base), env
    finally:
        if server is not None:
            server.stop(None)
        ingestor.close()
        store.close()
