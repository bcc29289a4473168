"""OTLP/gRPC receiver on 127.0.0.1: the real SDK exporter, big batches, bad input, auth."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.receiver.grpc import RETRY_INFO_KEY
from phospho_otel.store.api import TaskRow
from tests.support.oracle import check_store, read_state
from tests.support.otlp import make_request, make_span, task_span
from tests.support.servers import Receiver, running_receiver

TOKEN = "s3cret"
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    path = tmp_path_factory.mktemp("grpc") / "grpc.db"
    with running_receiver(path, token=TOKEN, max_body_bytes=32 * 1024 * 1024) as r:
        yield r


def export_raw(
    receiver: Receiver,
    body: bytes,
    token: str | None = TOKEN,
    compression: grpc.Compression = grpc.Compression.NoCompression,
) -> bytes:
    """Call Export with raw request bytes; returns the raw reply."""
    with grpc.insecure_channel(receiver.grpc_target) as channel:
        # No (de)serializers: the request and the reply are passed through as bytes.
        call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(EXPORT)
        metadata: tuple[tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ()
        )
        return call(body, metadata=metadata, timeout=60, compression=compression)


def export(
    receiver: Receiver,
    request: ExportTraceServiceRequest,
    token: str | None = TOKEN,
    compression: grpc.Compression = grpc.Compression.NoCompression,
) -> ExportTraceServiceResponse:
    """Call Export with a request; returns the parsed reply."""
    return ExportTraceServiceResponse.FromString(
        export_raw(receiver, request.SerializeToString(), token, compression)
    )


def task(receiver: Receiver, task_id: str) -> TaskRow | None:
    with receiver.store.read() as reader:
        return reader.get_task(task_id)


def session(receiver: Receiver, session_id: str) -> SessionRollup:
    with receiver.store.read() as reader:
        found = reader.get_session(session_id)
    assert found is not None, session_id
    return found


def user(receiver: Receiver, user_id: str) -> UserRollup:
    with receiver.store.read() as reader:
        found = reader.get_user(user_id)
    assert found is not None, user_id
    return found.rollup


class TestSDKExporter:
    """The stock OTel SDK OTLP/gRPC exporter, with the bearer token."""

    def test_tasks_arrive(self, receiver: Receiver) -> None:
        """Task and feedback spans sent by the SDK exporter land in the views."""
        provider = TracerProvider(resource=Resource.create({"service.name": "grpc-sdk"}))
        exporter = OTLPSpanExporter(endpoint=receiver.grpc_target, insecure=True,
                                    headers={"authorization": f"Bearer {TOKEN}"})
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("test")
        for i in range(10):
            with tracer.start_as_current_span("task", attributes={
                "phospho.span.type": "task", "phospho.task.id": f"g-{i}",
                "input.value": f"q{i}", "session.id": "grpc-s", "user.id": "grpc-u",
            }):
                pass
        with tracer.start_as_current_span("feedback", attributes={
            "phospho.span.type": "feedback", "phospho.task.id": "g-9",
            "phospho.feedback.flag": "success",
        }):
            pass
        assert provider.force_flush(10_000)
        provider.shutdown()
        assert session(receiver, "grpc-s").task_count == 10
        assert user(receiver, "grpc-u").success_count == 1


class TestLargeBatch:
    """A collector-sized batch (8192 spans, ~8 MB) gets through."""

    @pytest.mark.parametrize("compression", [grpc.Compression.NoCompression,
                                             grpc.Compression.Gzip])
    def test_8192_spans(self, receiver: Receiver, compression: grpc.Compression) -> None:
        """8192 task spans over 4 MiB, plain and gzip, all stored."""
        tag = compression.name
        request = make_request([
            task_span(f"big-{tag}-{i}", session_id=f"big-{tag}-{i % 100}", input="x" * 900)
            for i in range(8192)
        ])
        assert request.ByteSize() > 4 * 1024 * 1024
        reply = export(receiver, request, compression=compression)
        assert reply.partial_success.rejected_spans == 0
        state = read_state(receiver.store)
        prefix = f"big-{tag}-"
        assert sum(1 for task_id in state.tasks if task_id.startswith(prefix)) == 8192
        assert sum(s.task_count for session_id, s in state.sessions.items()
                   if session_id.startswith(prefix)) == 8192


class TestBadInput:
    """Bad calls get the right status; the receiver keeps serving."""

    def test_malformed_protobuf(self, receiver: Receiver) -> None:
        """Garbage bytes -> INVALID_ARGUMENT with a reason."""
        with pytest.raises(grpc.RpcError) as info:
            export_raw(receiver, b"\xff\xff\xff garbage")
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        details = info.value.details()
        assert details is not None
        assert "malformed protobuf" in details

    @pytest.mark.parametrize("token", [None, "wrong"])
    def test_unauthenticated(self, receiver: Receiver, token: str | None) -> None:
        """A missing or wrong token -> UNAUTHENTICATED, nothing stored."""
        with pytest.raises(grpc.RpcError) as info:
            export(receiver, make_request([task_span(f"noauth-{token}")]), token=token)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert task(receiver, f"noauth-{token}") is None

    def test_partial_success(self, receiver: Receiver) -> None:
        """Spans with invalid ids are counted in partial_success; the others are stored."""
        reply = export(receiver, make_request([make_span({}, trace_id=b""),
                                               task_span("grpc-partial")]))
        assert reply.partial_success.rejected_spans == 1
        assert task(receiver, "grpc-partial") is not None

    def test_duplicate_delivery(self, receiver: Receiver) -> None:
        """The same request twice (a retry) counts once."""
        request = make_request([task_span("dup-1", session_id="dup-s", user_id="dup-u")])
        export(receiver, request)
        export(receiver, request)
        assert session(receiver, "dup-s").task_count == 1
        assert user(receiver, "dup-u").task_count == 1


class TestOverload:
    """A writer that falls behind answers UNAVAILABLE."""

    def test_unavailable_then_accepted(self, tmp_path: Path) -> None:
        """With the writer held back (its store write waits) and the queue full, Export
        is UNAVAILABLE; once the writer goes on the retry is stored."""
        with running_receiver(tmp_path / "o.db", max_pending_spans=5) as receiver:
            receiver.gate.close()
            first = make_request([task_span(f"go-a{i}") for i in range(5)])
            second = make_request([task_span(f"go-b{i}") for i in range(5)])
            sender = threading.Thread(target=export, args=(receiver, first),
                                      kwargs={"token": None})
            sender.start()
            deadline = time.monotonic() + 10
            while receiver.ingestor.pending_spans < 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            with pytest.raises(grpc.RpcError) as info:
                export(receiver, second, token=None)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            trailers = {m.key: m.value for m in info.value.trailing_metadata()}
            delay = RetryInfo.FromString(trailers[RETRY_INFO_KEY]).retry_delay
            assert delay.seconds >= 1
            receiver.gate.open()
            sender.join(30)
            export(receiver, second, token=None)
            assert len(read_state(receiver.store).tasks) == 10
            check_store(receiver.store, [first, second])
