"""What the logs receiver tests share: a whole aggregator on free 127.0.0.1 ports with a
token, OTLP log requests carrying GenAI events, and the OTel SDK's log exporters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from opentelemetry._logs import LogRecord as ApiLogRecord
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import ids_for, make_request, make_span

__all__ = ["TOKEN", "details_request", "emit_details", "llm_span", "running_server", "send_span",
           "span_context", "task_of"]

TOKEN = "logs-secret"
DETAILS = "gen_ai.client.inference.operation.details"


@contextmanager
def running_server(tmp_path: Path, **settings: Any) -> Iterator[AggregatorServer]:
    """The whole aggregator (HTTP and gRPC on free ports, token ``TOKEN``)."""
    config = ServerSettings(store=str(tmp_path / "logs.db"), http_port=0, grpc_port=0,
                            token=TOKEN, **settings)
    with AggregatorServer(config) as server:
        yield server


def content(user: str, reply: str) -> dict[str, str]:
    """The content attributes of a details event, as the GenAI instrumentation writes
    them on a span (JSON text)."""
    return {
        "gen_ai.input.messages": json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": user}]}]),
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": reply}],
              "finish_reason": "stop"}]),
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": "Be terse."}]),
    }


def details_request(trace_id: bytes, span_id: bytes, user: str, reply: str, *,
                    time_ns: int = 1_700_000_000_000_000_000) -> ExportLogsServiceRequest:
    """A logs request with one details event for span ``span_id``."""
    request = ExportLogsServiceRequest()
    scope = request.resource_logs.add().scope_logs.add()
    scope.scope.name = "opentelemetry.util.genai"
    scope.log_records.append(LogRecord(
        time_unix_nano=time_ns, trace_id=trace_id, span_id=span_id, event_name=DETAILS,
        attributes=[KeyValue(key=k, value=AnyValue(string_value=v))
                    for k, v in content(user, reply).items()]))
    return request


def span_context(trace_id: bytes, span_id: bytes) -> Any:
    """An OTel context whose current span is (trace_id, span_id)."""
    return set_span_in_context(NonRecordingSpan(SpanContext(
        int.from_bytes(trace_id, "big"), int.from_bytes(span_id, "big"), is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED))))


def emit_details(exporter: LogRecordExporter, trace_id: bytes, span_id: bytes, user: str,
                 reply: str, *, unused: int = 0) -> None:
    """Send a details event (and ``unused`` other records) through the real SDK logger
    and ``exporter`` (synchronously: it returns once the aggregator answered)."""
    provider = LoggerProvider(resource=Resource.create({"service.name": "logs-test"}))
    provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = provider.get_logger("opentelemetry.util.genai")
    logger.emit(ApiLogRecord(event_name=DETAILS, context=span_context(trace_id, span_id),
                             attributes=content(user, reply)))
    for i in range(unused):
        logger.emit(ApiLogRecord(body=f"an app log line {i}"))
    provider.shutdown()


def llm_span(key: str, session: str) -> bytes:
    """An export request holding one GenAI LLM span with ids and no content."""
    span = make_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                      "gen_ai.conversation.id": session, "enduser.id": "u"},
                     key=key, name="chat m")
    return make_request([span], scope="opentelemetry.instrumentation.openai_v2"
                        ).SerializeToString()


def send_span(server: AggregatorServer, key: str, session: str) -> None:
    r = httpx.post(f"{server.http_url}/v1/traces", content=llm_span(key, session),
                   headers={"Content-Type": "application/x-protobuf",
                            "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200, r.text


def task_of(server: AggregatorServer, key: str) -> tuple[str | None, str | None, str]:
    trace_id, span_id = ids_for(key)
    assert server.store is not None
    with server.store.read() as reader:
        row = reader.get_task(f"{trace_id.hex()}-{span_id.hex()}")
    assert row is not None, key
    return row.task.input, row.task.output, row.task.metadata
