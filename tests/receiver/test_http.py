"""OTLP/HTTP receiver on 127.0.0.1: the real SDK exporter, raw clients, bad input, overload."""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from phospho_otel.store.api import Page, TaskFilter, TraceQuery
from tests.support.oracle import check_store
from tests.support.otlp import make_request, make_span, task_span
from tests.support.servers import Receiver, running_receiver

PROTOBUF = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
LIMIT = 1024 * 1024


@pytest.fixture(scope="module")
def receiver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Receiver]:
    path = tmp_path_factory.mktemp("http") / "http.db"
    with running_receiver(path, max_body_bytes=LIMIT) as r:
        yield r


def task_count(receiver: Receiver, *, task_id: str | None = None,
               session_id: str | None = None) -> int:
    """Stored tasks: all of them, those of a session, or the one task id (0 or 1)."""
    with receiver.store.read() as reader:
        if task_id is not None:
            return int(reader.get_task(task_id) is not None)
        listing = reader.list_tasks(TaskFilter(session_id=session_id), Page("start_time"))
    assert listing.total is not None
    return listing.total


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON body (hex ids) of a request."""
    doc = json_format.MessageToDict(request)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for key in ("traceId", "spanId"):
                    span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc).encode()


class TestSDKExporter:
    """The stock OTel SDK OTLP/HTTP exporter."""

    @pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
    def test_tasks_arrive(self, receiver: Receiver, compression: Compression) -> None:
        """Task spans sent by the SDK exporter become tasks, sessions and users."""
        provider = TracerProvider(resource=Resource.create({"service.name": "http-sdk"}))
        exporter = OTLPSpanExporter(endpoint=receiver.http_url, compression=compression)
        provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = provider.get_tracer("test")
        session = f"http-{compression.value}"
        for i in range(20):
            with tracer.start_as_current_span("task", attributes={
                "phospho.span.type": "task", "phospho.task.id": f"{session}-{i}",
                "input.value": f"q{i}", "session.id": session, "user.id": "http-user",
            }):
                with tracer.start_as_current_span("llm call"):
                    pass
        assert provider.force_flush(10_000)
        provider.shutdown()
        assert task_count(receiver, session_id=session) == 20
        with receiver.store.read() as reader:
            row = reader.get_session(session)
            assert row is not None
            assert (row.task_count, row.user_id) == (20, "http-user")
            trace_ids = reader.find_trace_ids(
                TraceQuery(service="http-sdk", operation="llm call", limit=1000))
            traces = reader.get_traces(trace_ids)
        spans = sum(1 for trace in traces for s in trace.spans
                    if s.origin.service_name == "http-sdk" and s.span.name == "llm call")
        assert spans >= 20


class TestReplies:
    """Success replies in the request's encoding."""

    def test_protobuf_partial_success(self, receiver: Receiver) -> None:
        """Rejected spans come back in partial_success (protobuf)."""
        request = make_request([make_span({}, span_id=b"bad"), task_span("pp-1")])
        r = httpx.post(receiver.http_url, content=request.SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/x-protobuf"
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 1
        assert "invalid trace_id or span_id" in reply.partial_success.error_message
        assert task_count(receiver, task_id="pp-1") == 1

    def test_json_request_json_reply(self, receiver: Receiver) -> None:
        """An OTLP/JSON request gets a JSON reply; a clean one is empty."""
        body = otlp_json(make_request([task_span("json-1", session_id="json-s")]))
        r = httpx.post(receiver.http_url, content=body, headers=JSON)
        assert r.status_code == 200
        assert r.json() == {}
        assert task_count(receiver, task_id="json-1") == 1

    def test_json_gzip_with_skipped_task(self, receiver: Receiver) -> None:
        """A gzip JSON request with a bad task span: stored, warned in partialSuccess."""
        bad = make_span({"phospho.span.type": "task", "input.value": "no id"})
        body = gzip.compress(otlp_json(make_request([bad])))
        r = httpx.post(receiver.http_url, content=body,
                       headers={**JSON, "Content-Encoding": "gzip"})
        assert r.status_code == 200
        partial = r.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "0"
        assert "phospho.task.id is missing" in partial["errorMessage"]


class TestBadInput:
    """Bad requests get a clear 4xx; the receiver keeps serving."""

    def test_malformed_protobuf(self, receiver: Receiver) -> None:
        """Garbage protobuf -> 400 with a google.rpc.Status saying why."""
        r = httpx.post(receiver.http_url, content=b"\xff\xff\xff garbage", headers=PROTOBUF)
        assert r.status_code == 400
        status = status_pb2.Status.FromString(r.content)
        assert "malformed protobuf" in status.message

    def test_malformed_json(self, receiver: Receiver) -> None:
        """Broken JSON -> 400 with a JSON message."""
        r = httpx.post(receiver.http_url, content=b'{"resourceSpans": [', headers=JSON)
        assert r.status_code == 400
        assert "malformed JSON" in r.json()["message"]

    def test_bad_hex_id(self, receiver: Receiver) -> None:
        """A non-hex id in OTLP/JSON -> 400 naming the field."""
        body = b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz","spanId":"00"}]}]}]}'
        r = httpx.post(receiver.http_url, content=body, headers=JSON)
        assert r.status_code == 400
        assert "traceId" in r.json()["message"]

    def test_unsupported_content_type(self, receiver: Receiver) -> None:
        """text/plain -> 415."""
        r = httpx.post(receiver.http_url, content=b"hello", headers={"Content-Type": "text/plain"})
        assert r.status_code == 415
        assert "Content-Type" in r.json()["message"]

    def test_unsupported_encoding(self, receiver: Receiver) -> None:
        """Content-Encoding br -> 415."""
        r = httpx.post(receiver.http_url, content=b"x",
                       headers={**PROTOBUF, "Content-Encoding": "br"})
        assert r.status_code == 415

    def test_body_too_large(self, receiver: Receiver) -> None:
        """A body over the limit -> 413."""
        r = httpx.post(receiver.http_url, content=bytes(LIMIT + 1), headers=PROTOBUF)
        assert r.status_code == 413

    def test_chunked_body_too_large(self, receiver: Receiver) -> None:
        """A chunked body (no Content-Length) over the limit -> 413."""

        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield bytes(100_000)

        r = httpx.post(receiver.http_url, content=chunks(), headers=PROTOBUF)
        assert r.status_code == 413

    def test_gzip_bomb(self, receiver: Receiver) -> None:
        """A small gzip body inflating past the limit -> 413."""
        bomb = gzip.compress(bytes(50 * LIMIT), compresslevel=9)
        assert len(bomb) < LIMIT
        r = httpx.post(receiver.http_url, content=bomb,
                       headers={**PROTOBUF, "Content-Encoding": "gzip"})
        assert r.status_code == 413
        assert "inflates past" in status_pb2.Status.FromString(r.content).message

    def test_malformed_gzip(self, receiver: Receiver) -> None:
        """A body that is not gzip, declared gzip -> 400."""
        r = httpx.post(receiver.http_url, content=b"not gzip at all",
                       headers={**JSON, "Content-Encoding": "gzip"})
        assert r.status_code == 400
        assert "gzip" in r.json()["message"]

    def test_still_serving(self, receiver: Receiver) -> None:
        """After all that, a valid request is stored."""
        request = make_request([task_span("after-bad-input")])
        r = httpx.post(receiver.http_url, content=request.SerializeToString(), headers=PROTOBUF)
        assert r.status_code == 200
        assert task_count(receiver, task_id="after-bad-input") == 1


class TestOverload:
    """A writer that falls behind answers 503 + Retry-After and drops nothing."""

    def test_503_then_accepted(self, tmp_path: Path) -> None:
        """With the writer held back (its store write waits), a full queue refuses; later
        the refused request is accepted and every span is stored once."""
        with running_receiver(tmp_path / "o.db", max_pending_spans=10) as receiver:
            receiver.gate.close()  # the writer now waits at the gate
            first = make_request([task_span(f"o-a{i}") for i in range(6)])
            second = make_request([task_span(f"o-b{i}") for i in range(6)])
            replies: list[int] = []
            sender = threading.Thread(target=lambda: replies.append(httpx.post(
                receiver.http_url, content=first.SerializeToString(), headers=PROTOBUF,
                timeout=30).status_code))
            sender.start()
            deadline = time.monotonic() + 10
            while receiver.ingestor.pending_spans < 6:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            r = httpx.post(receiver.http_url, content=second.SerializeToString(),
                           headers=PROTOBUF)
            assert r.status_code == 503
            assert int(r.headers["Retry-After"]) >= 1
            assert "retry" in status_pb2.Status.FromString(r.content).message
            receiver.gate.open()
            sender.join(30)
            assert replies == [200]
            r = httpx.post(receiver.http_url, content=second.SerializeToString(),
                           headers=PROTOBUF)
            assert r.status_code == 200
            assert task_count(receiver) == 12
            check_store(receiver.store, [first, second])
