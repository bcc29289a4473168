"""How the receivers answer a store that fails: ``StoreError`` (a retry cannot fix it) is
permanent, HTTP 500 + ``google.rpc.Status`` / gRPC ``INTERNAL`` (OTLP exporters do not
retry those); ``Unavailable`` stays 503 + Retry-After / ``UNAVAILABLE`` + ``RetryInfo``
(issue 9, with defect 1: a request that cannot be stored is never answered retryable)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
import httpx
import pytest
from google.rpc import code_pb2, status_pb2
from google.rpc.error_details_pb2 import RetryInfo
from starlette.applications import Starlette
from starlette.routing import Route

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.errors import StoreError, Unavailable
from phospho_otel.model.records import Extraction
from phospho_otel.receiver.grpc import RETRY_INFO_KEY, start_grpc_server
from phospho_otel.receiver.http import otlp_traces_endpoint
from phospho_otel.store import open_store
from phospho_otel.store.api import StoreWriter, WriteResult
from tests.support.otlp import make_request, task_span
from tests.support.servers import serve_asgi

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


class FailingWriter:
    """A ``StoreWriter`` raising ``error`` on every write while it is set."""

    def __init__(self, store: StoreWriter) -> None:
        self.store = store
        self.error: Exception | None = None

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        if self.error is not None:
            raise self.error
        return self.store.write(batch)

    def counters(self) -> dict[str, int]:
        return self.store.counters()


@dataclass
class Receivers:
    writer: FailingWriter
    http_url: str
    grpc_target: str


@pytest.fixture(scope="module")
def receivers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receivers]:
    store = open_store(str(tmp_path_factory.mktemp("fail") / "f.db"))
    writer = FailingWriter(store)
    ingestor = Ingestor(writer)
    grpc_server, grpc_port = start_grpc_server(ingestor, host="127.0.0.1", port=0, token=None,
                                               max_message_bytes=1 << 20)
    app = Starlette(routes=[Route("/v1/traces", otlp_traces_endpoint(ingestor, 1 << 20),
                                  methods=["POST"])])
    try:
        with serve_asgi(app) as port:
            yield Receivers(writer, f"http://127.0.0.1:{port}/v1/traces",
                            f"127.0.0.1:{grpc_port}")
    finally:
        grpc_server.stop(0).wait(5)
        ingestor.close()
        store.close()


@contextmanager
def failing(receivers: Receivers, error: Exception) -> Iterator[None]:
    receivers.writer.error = error
    try:
        yield
    finally:
        receivers.writer.error = None


def post(receivers: Receivers, task_id: str) -> httpx.Response:
    request = make_request([task_span(task_id)])
    return httpx.post(receivers.http_url, content=request.SerializeToString(),
                      headers={"Content-Type": "application/x-protobuf"})


def export(receivers: Receivers, task_id: str) -> None:
    with grpc.insecure_channel(receivers.grpc_target) as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT)
        call(make_request([task_span(task_id)]).SerializeToString(), timeout=10)


class TestPermanentStoreError:
    """``StoreError``: 500 / INTERNAL, with the store's message."""

    def test_http_500_status(self, receivers: Receivers) -> None:
        """OTLP/HTTP: 500 with a google.rpc.Status (INTERNAL), no Retry-After."""
        with failing(receivers, StoreError("span 3: start time out of range")):
            r = post(receivers, "perm-http")
        assert r.status_code == 500
        assert "retry-after" not in r.headers
        status = status_pb2.Status.FromString(r.content)
        assert status.code == code_pb2.INTERNAL
        assert "start time out of range" in status.message

    def test_grpc_internal(self, receivers: Receivers) -> None:
        """OTLP/gRPC: INTERNAL, no RetryInfo."""
        with failing(receivers, StoreError("span 3: start time out of range")), \
                pytest.raises(grpc.RpcError) as info:
            export(receivers, "perm-grpc")
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "out of range" in (info.value.details() or "")
        trailers = {m.key for m in info.value.trailing_metadata() or ()}
        assert RETRY_INFO_KEY not in trailers


class TestTransientStoreError:
    """``Unavailable`` from the store: 503 + Retry-After / UNAVAILABLE + RetryInfo."""

    def test_http_503(self, receivers: Receivers) -> None:
        """OTLP/HTTP: 503 with the store's delay."""
        with failing(receivers, Unavailable("database is locked", 3.0)):
            r = post(receivers, "busy-http")
        assert r.status_code == 503
        assert r.headers["Retry-After"] == "3"
        assert "locked" in status_pb2.Status.FromString(r.content).message

    def test_grpc_unavailable(self, receivers: Receivers) -> None:
        """OTLP/gRPC: UNAVAILABLE with a RetryInfo of the store's delay."""
        with failing(receivers, Unavailable("database is locked", 3.0)), \
                pytest.raises(grpc.RpcError) as info:
            export(receivers, "busy-grpc")
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = {m.key: m.value for m in info.value.trailing_metadata() or ()}
        assert RetryInfo.FromString(trailers[RETRY_INFO_KEY]).retry_delay.seconds == 3

    def test_unexpected_error_stays_retryable(self, receivers: Receivers) -> None:
        """Any other exception (a bug) is answered retryable: nothing acknowledged."""
        with failing(receivers, RuntimeError("bug")):
            assert post(receivers, "bug-http").status_code == 503

    def test_recovers(self, receivers: Receivers) -> None:
        """Once the store works again, requests are stored."""
        assert post(receivers, "ok-http").status_code == 200
        export(receivers, "ok-grpc")
