"""Build OTLP export requests of our convention with exact times, for the view tests."""

from __future__ import annotations

import hashlib
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from otlp_values import any_value

from phospho_otel.semconv import (
    IOAttributes,
    PhosphoAttributes,
    SessionAttributes,
    UserAttributes,
)
from phospho_otel.store.queries import iso_to_ns

STATUS = {"unset": 0, "ok": 1, "error": 2}


def _ids(key: str) -> tuple[bytes, bytes]:
    digest = hashlib.sha256(key.encode()).digest()
    return digest[:16], digest[16:24]


def task_span(task_id: str, start: str, end: str, *, input: str, output: str | None = None,
              session_id: str | None = None, user_id: str | None = None,
              status: str = "ok", metadata: dict[str, Any] | None = None,
              raw_input: str | None = None) -> Span:
    """A task span; ``start``/``end`` are ISO-8601 times."""
    attrs: dict[str, Any] = {
        PhosphoAttributes.SPAN_TYPE: "task",
        PhosphoAttributes.TASK_ID: task_id,
        IOAttributes.INPUT_VALUE: input,
    }
    if output is not None:
        attrs[IOAttributes.OUTPUT_VALUE] = output
    if session_id is not None:
        attrs[SessionAttributes.SESSION_ID] = session_id
    if user_id is not None:
        attrs[UserAttributes.USER_ID] = user_id
    if raw_input is not None:
        attrs[PhosphoAttributes.RAW_INPUT] = raw_input
    for k, v in (metadata or {}).items():
        attrs[PhosphoAttributes.METADATA_PREFIX + k] = v
    trace_id, span_id = _ids(task_id)
    return Span(
        trace_id=trace_id, span_id=span_id, name="chat", kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=iso_to_ns(start), end_time_unix_nano=iso_to_ns(end),
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()],
        status=Status(code=STATUS[status]),  # type: ignore[arg-type]
    )


def feedback_span(task_id: str, flag: str, time: str, *, notes: str | None = None,
                  key: str = "") -> Span:
    """A feedback span about ``task_id`` ending at ``time``."""
    attrs: dict[str, Any] = {
        PhosphoAttributes.SPAN_TYPE: "feedback",
        PhosphoAttributes.TASK_ID: task_id,
        PhosphoAttributes.FEEDBACK_FLAG: flag,
        PhosphoAttributes.FEEDBACK_SOURCE: "user",
    }
    if notes is not None:
        attrs[PhosphoAttributes.FEEDBACK_NOTES] = notes
    trace_id, span_id = _ids(f"feedback/{task_id}/{flag}/{time}/{key}")
    t = iso_to_ns(time)
    return Span(
        trace_id=trace_id, span_id=span_id, name="feedback", kind=Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=t, end_time_unix_nano=t,
        attributes=[KeyValue(key=k, value=any_value(v)) for k, v in attrs.items()],
    )


def request(*spans: Span, service: str = "chat-app") -> ExportTraceServiceRequest:
    """One export request holding ``spans`` under one resource."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=AnyValue(string_value=service))
    ss = rs.scope_spans.add()
    ss.scope.name = "tests.views"
    ss.spans.extend(spans)
    return req
