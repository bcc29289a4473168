"""End to end: spans sent by the OpenTelemetry SDK and by the phospho SDK over OTLP to a
real aggregator (AggregatorServer: receivers, ingestor, store), read back through the
Jaeger routes under its /jaeger prefix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

import phospho_otel as phospho
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.traces import T0, dataset, hex_id

JS_MAX_SAFE = 2**53 - 1


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    """A real aggregator on free ports with a fresh store."""
    db = tmp_path_factory.mktemp("aggregator") / "phospho.db"
    settings = ServerSettings(store=str(db), host="127.0.0.1", http_port=0, grpc_port=0)
    with AggregatorServer(settings) as server:
        yield server


@pytest.fixture
def jaeger(aggregator: AggregatorServer) -> str:
    """Base URL of the aggregator's Jaeger API."""
    return aggregator.http_url + "/jaeger"


def get_ok(client: httpx.Client, url: str, **params: Any) -> Any:
    """GET, assert 200, return the JSON body."""
    r = client.get(url, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def tags_of(item: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    """{key: (type, value)} of a span's or process's tags."""
    return {t["key"]: (t["type"], t["value"]) for t in item["tags"]}


def expected_tag(value: Any) -> tuple[str, Any]:
    """The Jaeger (type, value) of an OpenTelemetry SDK attribute value."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int64", value if abs(value) <= JS_MAX_SAFE else str(value))
    if isinstance(value, float):
        return ("float64", value)
    if isinstance(value, tuple | list):
        return ("string", json.dumps(list(value), separators=(",", ":")))
    return ("string", value)


class TestOpenTelemetrySdk:
    """Spans of the OpenTelemetry SDK, exported over OTLP/HTTP by its own exporter."""

    def test_trace_round_trip(self, aggregator: AggregatorServer, jaeger: str) -> None:
        """Ids, parents, links, times to the microsecond, typed attributes, events, status,
        kind, scope and the process table come back as Jaeger's model."""
        memory = InMemorySpanExporter()
        provider = TracerProvider(
            resource=Resource.create({"service.name": "rt-app", "deployment.environment": "ci"})
        )
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=aggregator.http_url + "/v1/traces"))
        )
        provider.add_span_processor(SimpleSpanProcessor(memory))
        tracer = provider.get_tracer("rt.scope", "2.0")
        other_tracer = TracerProvider(
            resource=Resource.create({"service.name": "rt-llm"})
        ).get_tracer("rt.other")

        start = T0 + 123_456_789  # sub-microsecond digits must be cut, not rounded
        root_attrs: dict[str, Any] = {
            "session.id": "rt-session",
            "user.id": "rt-user",
            "text": "héllo",
            "flag": True,
            "small": -7,
            "huge": 2**62,
            "ratio": 0.5,
            "names": ("a", "b"),
            "nums": (1, 2, 3),
        }
        root = tracer.start_span(
            "handle", kind=SpanKind.SERVER, attributes=root_attrs, start_time=start
        )
        linked = tracer.start_span("earlier", start_time=start - 10_000)
        linked.end(end_time=start - 5_000)
        ctx = trace.set_span_in_context(root)
        child = tracer.start_span(
            "call-llm",
            context=ctx,
            kind=SpanKind.CLIENT,
            links=[Link(linked.get_span_context(), {"why": "retry-of"})],
            start_time=start + 1_999,
        )
        child.add_event("retry", {"attempt": 2, "ok": False}, timestamp=start + 2_500)
        child.set_status(Status(StatusCode.ERROR, "rate limited"))
        child.end(end_time=start + 5_000_999)
        root.end(end_time=start + 9_000_000)
        provider.shutdown()
        del other_tracer

        sent = {s.name: s for s in memory.get_finished_spans()}
        trace_hex = f"{root.get_span_context().trace_id:032x}"
        with httpx.Client(timeout=10, trust_env=False) as client:
            body = get_ok(client, f"{jaeger}/api/traces/{trace_hex}")
        (got,) = body["data"]
        assert got["traceID"] == trace_hex
        spans = {s["operationName"]: s for s in got["spans"]}
        assert set(spans) == {"handle", "call-llm"}

        def check_times(name: str, span: ReadableSpan) -> None:
            assert span.start_time is not None and span.end_time is not None
            assert spans[name]["startTime"] == span.start_time // 1000
            assert spans[name]["duration"] == (span.end_time - span.start_time) // 1000

        check_times("handle", sent["handle"])
        check_times("call-llm", sent["call-llm"])
        assert spans["handle"]["startTime"] == (T0 + 123_456_789) // 1000

        handle, call = spans["handle"], spans["call-llm"]
        assert handle["spanID"] == f"{root.get_span_context().span_id:016x}"
        assert handle["references"] == []
        assert call["references"] == [
            {"refType": "CHILD_OF", "traceID": trace_hex, "spanID": handle["spanID"]},
            {
                "refType": "FOLLOWS_FROM",
                "traceID": f"{linked.get_span_context().trace_id:032x}",
                "spanID": f"{linked.get_span_context().span_id:016x}",
            },
        ]
        tags = tags_of(handle)
        for key, value in root_attrs.items():
            assert tags[key] == expected_tag(value), key
        assert tags["huge"] == ("int64", str(2**62))
        assert tags["span.kind"] == ("string", "server")
        assert tags["otel.scope.name"] == ("string", "rt.scope")
        assert tags["otel.scope.version"] == ("string", "2.0")
        call_tags = tags_of(call)
        assert call_tags["span.kind"] == ("string", "client")
        assert call_tags["error"] == ("bool", True)
        assert call_tags["otel.status_code"] == ("string", "ERROR")
        assert call_tags["otel.status_description"] == ("string", "rate limited")
        assert call["logs"] == [
            {
                "timestamp": (start + 2_500) // 1000,
                "fields": [
                    {"key": "event", "type": "string", "value": "retry"},
                    {"key": "attempt", "type": "int64", "value": 2},
                    {"key": "ok", "type": "bool", "value": False},
                ],
            }
        ]
        assert handle["processID"] == call["processID"] == "p1"
        process = got["processes"]["p1"]
        assert process["serviceName"] == "rt-app"
        ptags = tags_of(process)
        assert ptags["deployment.environment"] == ("string", "ci")
        assert ptags["telemetry.sdk.language"] == ("string", "python")
        assert "service.name" not in ptags


class TestPhosphoSdk:
    """Tasks logged with the phospho SDK over OTLP/gRPC, found by session and user."""

    def test_search_by_session_and_user(
        self, aggregator: AggregatorServer, jaeger: str, tmp_path: Path
    ) -> None:
        """session.id and user.id tag searches (v1 and api_v3) find the tasks' traces;
        a feedback span's link to its task is a FOLLOWS_FROM reference."""
        provider = TracerProvider(resource=Resource.create({"service.name": "rt-phospho"}))
        phospho.init(
            endpoint=f"http://127.0.0.1:{aggregator.grpc_port}",
            protocol="grpc",
            tracer_provider=provider,
        )
        try:
            with phospho.session(session_id="sess-1", user_id="user-1"):
                tasks = [phospho.log(f"question {i}", f"answer {i}") for i in range(3)]
            other = phospho.log("elsewhere", session_id="sess-2", user_id="user-1")
            phospho.user_feedback(tasks[0].task_id, "success", notes="good")
            assert phospho.flush(10)
        finally:
            phospho.shutdown()

        with httpx.Client(timeout=10, trust_env=False) as client:
            window = {"start": "0", "end": str(2**53)}
            body = get_ok(
                client,
                f"{jaeger}/api/traces",
                tags=json.dumps({"session.id": "sess-1"}),
                limit="20",
                **window,
            )
            assert {t["traceID"] for t in body["data"]} == {t.trace_id for t in tasks}
            for got in body["data"]:
                assert got["processes"]["p1"]["serviceName"] == "rt-phospho"
                span_tags = tags_of(got["spans"][0])
                assert span_tags["session.id"] == ("string", "sess-1")
                assert span_tags["phospho.span.type"] == ("string", "task")

            body = get_ok(client, f"{jaeger}/api/traces", tag="user.id:user-1", **window)
            assert {t["traceID"] for t in body["data"]} >= {t.trace_id for t in [*tasks, other]}

            v3_window = {
                "query.startTimeMin": "2000-01-01T00:00:00Z",
                "query.startTimeMax": "2100-01-01T00:00:00Z",
            }
            attrs = json.dumps({"session.id": "sess-2"})
            body = get_ok(
                client, f"{jaeger}/api/v3/traces", **v3_window, **{"query.attributes": attrs}
            )
            (rs,) = body["result"]["resourceSpans"]
            (span,) = rs["scopeSpans"][0]["spans"]
            assert span["traceId"] == other.trace_id and span["spanId"] == other.span_id
            body = get_ok(
                client,
                f"{jaeger}/api/v3/trace-summaries",
                **v3_window,
                **{"query.serviceName": "rt-phospho", "query.operationName": "task"},
            )
            assert {s["traceId"] for s in body["summaries"]} == {
                t.trace_id for t in [*tasks, other]
            }

            body = get_ok(
                client,
                f"{jaeger}/api/traces",
                service="rt-phospho",
                operation="feedback",
                **window,
            )
            (feedback_trace,) = body["data"]
            refs = feedback_trace["spans"][0]["references"]
            assert {
                "refType": "FOLLOWS_FROM",
                "traceID": tasks[0].trace_id,
                "spanID": tasks[0].span_id,
            } in refs


class TestOtlpProtobufIngest:
    """A hand-built OTLP request (bytes attributes, 128-bit ids) posted to /v1/traces."""

    def test_binary_and_every_route(self, aggregator: AggregatorServer, jaeger: str) -> None:
        """What the receiver stored is served by every route under the prefix."""
        with httpx.Client(timeout=10, trust_env=False) as client:
            r = client.post(
                aggregator.http_url + "/v1/traces",
                content=dataset().SerializeToString(),
                headers={"Content-Type": "application/x-protobuf"},
            )
            assert r.status_code == 200, r.text
            body = get_ok(client, f"{jaeger}/api/traces/{hex_id(0x0A)}")
            tags = tags_of(body["data"][0]["spans"][0])
            assert tags["raw"] == ("binary", "AP8=")
            assert {"app", "db", "worker"} <= set(get_ok(client, f"{jaeger}/api/services")["data"])
            assert get_ok(client, f"{jaeger}/api/services/db/operations")["data"] == ["db.query"]
            assert get_ok(client, f"{jaeger}/api/operations", service="db")["data"] == [
                {"name": "db.query", "spanKind": "internal"}
            ]
            deps = get_ok(
                client,
                f"{jaeger}/api/dependencies",
                endTs=str(T0 // 1_000_000 + 60_000),
                lookback="120000",
            )
            assert {"parent": "app", "child": "db", "callCount": 1} in deps["data"]
            v3 = get_ok(client, f"{jaeger}/api/v3/services")
            assert {"app", "db", "worker"} <= set(v3["services"])
            assert get_ok(client, f"{jaeger}/api/v3/operations", service="worker") == {
                "operations": [{"name": "job", "spanKind": "consumer"}]
            }
            body = get_ok(client, f"{jaeger}/api/v3/traces/{hex_id(0x0A)}")
            assert len(body["result"]["resourceSpans"]) == 2
            r = client.get(f"{jaeger}/api/traces/{'e' * 32}")
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == 404
            r = client.get(f"{jaeger}/api/v3/traces/{'e' * 32}")
            assert r.status_code == 404 and r.json()["error"]["httpCode"] == 404
            r = client.get(f"{jaeger}/api/traces", params={"service": "app", "tags": "{"})
            assert r.status_code == 400 and "'tags'" in r.json()["errors"][0]["msg"]


class TestToken:
    """With a token, the Jaeger routes need the bearer header (as documented)."""

    def test_bearer_token(self, tmp_path: Path) -> None:
        """401 without the header, 200 with it."""
        settings = ServerSettings(
            store=str(tmp_path / "t.db"), http_port=0, grpc_port=0, token="s3cret"
        )
        with AggregatorServer(settings) as server, httpx.Client(trust_env=False) as client:
            url = server.http_url + "/jaeger/api/services"
            assert client.get(url).status_code == 401
            r = client.get(url, headers={"Authorization": "Bearer s3cret"})
            assert r.status_code == 200 and r.json()["data"] == []
