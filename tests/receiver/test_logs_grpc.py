"""``LogsService/Export`` on a whole aggregator's gRPC port on 127.0.0.1: the real OTel SDK
gRPC log exporter (bearer token), bad input, the token, partial success."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse

from phospho_otel.receiver.grpc import LOGS_SERVICE_NAME
from phospho_otel.server import AggregatorServer
from tests.receiver.logs_support import (
    TOKEN,
    details_request,
    emit_details,
    running_server,
    send_span,
    task_of,
)
from tests.support.otlp import ids_for

METHOD = f"/{LOGS_SERVICE_NAME}/Export"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    with running_server(tmp_path_factory.mktemp("logs-grpc")) as s:
        yield s


def export_raw(server: AggregatorServer, body: bytes, token: str | None = TOKEN
               ) -> ExportLogsServiceResponse:
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        call: grpc.UnaryUnaryMultiCallable[bytes, ExportLogsServiceResponse] = (
            channel.unary_unary(METHOD, request_serializer=None,
                                response_deserializer=ExportLogsServiceResponse.FromString))
        metadata = (("authorization", f"Bearer {token}"),) if token else None
        return call(body, metadata=metadata, timeout=10)


def test_sdk_exporter(server: AggregatorServer) -> None:
    """Content sent by the SDK's gRPC exporter becomes its span's task's words."""
    key = "grpc-sdk"
    trace_id, span_id = ids_for(key)
    exporter = OTLPLogExporter(endpoint=f"127.0.0.1:{server.grpc_port}", insecure=True,
                               headers=(("authorization", f"Bearer {TOKEN}"),))
    emit_details(exporter, trace_id, span_id, "by grpc", "received", unused=2)
    assert server.store is not None
    assert server.store.counters()["log_records_unused"] >= 2
    send_span(server, key, "s-grpc")
    assert task_of(server, key)[:2] == ("by grpc", "received")


def test_partial_success(server: AggregatorServer) -> None:
    reply = export_raw(server, details_request(b"", b"", "x", "y").SerializeToString())
    assert "names no span" in reply.partial_success.error_message


def test_malformed(server: AggregatorServer) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        export_raw(server, b"\x0a\xff\xff")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "ExportLogsServiceRequest" in (caught.value.details() or "")


def test_token(server: AggregatorServer) -> None:
    body = details_request(*ids_for("grpc-auth"), "a", "b").SerializeToString()
    for token in (None, "wrong"):
        with pytest.raises(grpc.RpcError) as caught:
            export_raw(server, body, token)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
