"""``POST /v1/logs`` on a whole aggregator on 127.0.0.1: the real OTel SDK log exporter
(protobuf, gzip or not, bearer token), OTLP/JSON, bad input, limits, partial success,
and GenAI content meeting its span in either order."""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from starlette.applications import Starlette
from starlette.routing import Route

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.receiver.http import otlp_logs_endpoint
from phospho_otel.server import AggregatorServer
from phospho_otel.store.sqlite import SQLiteStore
from tests.receiver.logs_support import (
    TOKEN,
    details_request,
    emit_details,
    running_server,
    send_span,
    task_of,
)
from tests.support.otlp import ids_for
from tests.support.servers import serve_asgi

PROTOBUF = {"Content-Type": "application/x-protobuf", "Authorization": f"Bearer {TOKEN}"}
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    with running_server(tmp_path_factory.mktemp("logs-http"), max_body_bytes=LIMIT) as s:
        yield s


def logs_url(server: AggregatorServer) -> str:
    return f"{server.http_url}/v1/logs"


def otlp_json(request: ExportLogsServiceRequest) -> bytes:
    """OTLP/JSON body (hex ids) of a logs request."""
    doc = json_format.MessageToDict(request)
    for rl in doc["resourceLogs"]:
        for sl in rl["scopeLogs"]:
            for record in sl["logRecords"]:
                for key in ("traceId", "spanId"):
                    if key in record:
                        record[key] = base64.b64decode(record[key]).hex()
    return json.dumps(doc).encode()


class TestSDKExporter:
    @pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip])
    def test_content_then_span(self, server: AggregatorServer,
                               compression: Compression) -> None:
        """A details event sent by the SDK exporter before its span: the span's task has
        the turn's words, reply and system prompt; other log records are counted."""
        key = f"sdk-{compression.value}"
        trace_id, span_id = ids_for(key)
        exporter = OTLPLogExporter(endpoint=logs_url(server), compression=compression,
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert server.store is not None
        unused_before = server.store.counters().get("log_records_unused", 0)
        emit_details(exporter, trace_id, span_id, "where to?", "Paris.", unused=3)
        assert server.store.counters()["log_records_unused"] == unused_before + 3
        send_span(server, key, f"s-{key}")
        assert task_of(server, key) == ("where to?", "Paris.",
                                        '{"system_prompt":"Be terse."}')

    def test_span_then_content(self, server: AggregatorServer) -> None:
        key = "span-first"
        send_span(server, key, "s-span-first")
        assert server.store is not None
        with server.store.read() as reader:
            trace_id, span_id = ids_for(key)
            assert reader.get_task(f"{trace_id.hex()}-{span_id.hex()}") is None
        exporter = OTLPLogExporter(endpoint=logs_url(server),
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        emit_details(exporter, trace_id, span_id, "and then?", "Rome.")
        assert task_of(server, key) == ("and then?", "Rome.", '{"system_prompt":"Be terse."}')


class TestBodies:
    def test_json(self, server: AggregatorServer) -> None:
        key = "json-body"
        body = otlp_json(details_request(*ids_for(key), "json words", "json reply"))
        r = httpx.post(logs_url(server), content=body, headers=JSON)
        assert r.status_code == 200 and r.json() == {}, r.text
        send_span(server, key, "s-json")
        assert task_of(server, key)[:2] == ("json words", "json reply")

    def test_gzip_protobuf_reply(self, server: AggregatorServer) -> None:
        body = gzip.compress(details_request(*ids_for("gz"), "a", "b").SerializeToString())
        r = httpx.post(logs_url(server), content=body,
                       headers={**PROTOBUF, "Content-Encoding": "gzip"})
        assert r.status_code == 200
        reply = ExportLogsServiceResponse.FromString(r.content)
        assert not reply.HasField("partial_success")

    def test_sent_again_stored_once(self, server: AggregatorServer) -> None:
        trace_id, span_id = ids_for("again")
        body = details_request(trace_id, span_id, "x", "y").SerializeToString()
        for _ in range(3):
            assert httpx.post(logs_url(server), content=body, headers=PROTOBUF).status_code == 200
        assert server.store is not None
        with server.store.read() as reader:
            assert len(reader.span_annotations([trace_id])) == 1

    def test_partial_success(self, server: AggregatorServer) -> None:
        """A GenAI event naming no span is accepted, not used, and said so."""
        body = details_request(b"", b"", "x", "y").SerializeToString()
        r = httpx.post(logs_url(server), content=body, headers=PROTOBUF)
        assert r.status_code == 200
        reply = ExportLogsServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_log_records == 0
        assert "names no span" in reply.partial_success.error_message
        r = httpx.post(logs_url(server), content=otlp_json(details_request(b"", b"", "x", "y")),
                       headers=JSON)
        assert "names no span" in r.json()["partialSuccess"]["errorMessage"]


class TestRefusals:
    def test_token(self, server: AggregatorServer) -> None:
        body = details_request(*ids_for("auth"), "a", "b").SerializeToString()
        for headers in ({"Content-Type": "application/x-protobuf"},
                        {"Content-Type": "application/x-protobuf",
                         "Authorization": "Bearer wrong"}):
            r = httpx.post(logs_url(server), content=body, headers=headers)
            assert r.status_code == 401, r.text

    def test_malformed_protobuf(self, server: AggregatorServer) -> None:
        r = httpx.post(logs_url(server), content=b"\x0a\xff\xff", headers=PROTOBUF)
        assert r.status_code == 400
        status = status_pb2.Status.FromString(r.content)
        assert "ExportLogsServiceRequest" in status.message

    def test_malformed_json(self, server: AggregatorServer) -> None:
        bad = {"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}
        r = httpx.post(logs_url(server), content=json.dumps(bad).encode(), headers=JSON)
        assert r.status_code == 400
        assert "resourceLogs[0].scopeLogs[0].logRecords[0].traceId" in r.json()["message"]
        r = httpx.post(logs_url(server), content=b"{nope", headers=JSON)
        assert r.status_code == 400 and "malformed JSON" in r.json()["message"]

    def test_media_type(self, server: AggregatorServer) -> None:
        r = httpx.post(logs_url(server), content=b"x",
                       headers={**PROTOBUF, "Content-Type": "text/plain"})
        assert r.status_code == 415

    def test_too_large(self, server: AggregatorServer) -> None:
        r = httpx.post(logs_url(server), content=b"\0" * (LIMIT + 1), headers=PROTOBUF)
        assert r.status_code == 413
        inflates = gzip.compress(b"\0" * (LIMIT * 4))
        r = httpx.post(logs_url(server), content=inflates,
                       headers={**PROTOBUF, "Content-Encoding": "gzip"})
        assert r.status_code == 413

    def test_closed_is_retryable(self, tmp_path: Path) -> None:
        """An ingestor that is shutting down answers 503 with Retry-After."""
        store = SQLiteStore(tmp_path / "closed.db")
        ingestor = Ingestor(store)
        ingestor.close()
        app = Starlette(routes=[Route("/v1/logs", otlp_logs_endpoint(ingestor, LIMIT),
                                      methods=["POST"])])
        try:
            with serve_asgi(app) as port:
                r = httpx.post(f"http://127.0.0.1:{port}/v1/logs",
                               content=details_request(*ids_for("c"), "a", "b")
                               .SerializeToString(), headers=PROTOBUF)
        finally:
            store.close()
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"

    def test_slashes(self, server: AggregatorServer) -> None:
        body = details_request(*ids_for("slashes"), "a", "b").SerializeToString()
        for path in ("//v1/logs", "/v1/logs/"):
            r = httpx.post(f"{server.http_url}{path}", content=body, headers=PROTOBUF)
            assert r.status_code == 200, path
