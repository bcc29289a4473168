"""One builder of OTLP values, spans and export requests, for tests that make spans by
hand: plain spans, task and feedback spans of our convention, requests of one or several
(resource, scope) batches."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from phospho_otel.semconv import (
    SEMCONV_VERSION,
    IOAttributes,
    PhosphoAttributes,
    SessionAttributes,
    UserAttributes,
)

BASE_NS = 1_764_000_000_000_000_000
"""A fixed time (ns) for hand-built spans: 2025-11-24T16:00:00Z."""
SEC = 1_000_000_000
STATUS = {"unset": 0, "ok": 1, "error": 2}


def any_value(value: object) -> AnyValue:
    """An OTLP AnyValue of a Python value (bool, int, float, bytes, list; str otherwise)."""
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    return AnyValue(string_value=str(value))


def attrs(mapping: Mapping[str, object]) -> list[KeyValue]:
    """OTLP attributes of a mapping."""
    return [KeyValue(key=k, value=any_value(v)) for k, v in mapping.items()]


def iso_ns(text: str) -> int:
    """An ISO-8601 UTC time (``2026-01-10T10:00:00Z``) in ns since the epoch."""
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp()) * SEC + dt.microsecond * 1000


def ids_for(key: str) -> tuple[bytes, bytes]:
    """A (trace id, span id) pair derived from ``key``: the same key, the same span."""
    digest = hashlib.sha256(key.encode()).digest()
    return digest[:16], digest[16:24]


def make_span(
    attributes: Mapping[str, object],
    *,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    parent_span_id: bytes = b"",
    name: str = "span",
    kind: int = Span.SPAN_KIND_INTERNAL,
    start_ns: int = BASE_NS,
    end_ns: int | None = None,
    status_code: int = 0,
    key: str | None = None,
    rng: random.Random | None = None,
) -> Span:
    """One span with the given attributes; ids from ``key`` (``ids_for``) when given, else
    the given ones, else random (from ``rng``)."""
    rng = rng or random.Random()
    if key is not None:
        trace_id, span_id = ids_for(key)
    span = Span(
        trace_id=trace_id if trace_id is not None else rng.randbytes(16),
        span_id=span_id if span_id is not None else rng.randbytes(8),
        parent_span_id=parent_span_id,
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=start_ns,
        end_time_unix_nano=end_ns if end_ns is not None else start_ns + 1_000_000,
        attributes=attrs(attributes),
    )
    span.status.code = status_code  # type: ignore[assignment]
    return span


def task_span(
    task_id: str,
    *,
    session_id: str | None = None,
    user_id: str | None = None,
    input: str = "hello",
    output: str | None = "hi",
    raw_input: str | None = None,
    metadata: Mapping[str, object] | None = None,
    name: str = "task",
    start_ns: int = BASE_NS,
    end_ns: int | None = None,
    status_code: int = 0,
    **kwargs: object,
) -> Span:
    """A task span of our convention (more keywords: ``make_span``'s)."""
    attributes: dict[str, object] = {
        PhosphoAttributes.SPAN_TYPE: "task",
        PhosphoAttributes.SEMCONV_VERSION: SEMCONV_VERSION,
        PhosphoAttributes.TASK_ID: task_id,
        IOAttributes.INPUT_VALUE: input,
    }
    if output is not None:
        attributes[IOAttributes.OUTPUT_VALUE] = output
    if session_id is not None:
        attributes[SessionAttributes.SESSION_ID] = session_id
    if user_id is not None:
        attributes[UserAttributes.USER_ID] = user_id
    if raw_input is not None:
        attributes[PhosphoAttributes.RAW_INPUT] = raw_input
    for k, v in (metadata or {}).items():
        attributes[PhosphoAttributes.METADATA_PREFIX + k] = v
    return make_span(attributes, name=name, start_ns=start_ns, end_ns=end_ns,
                     status_code=status_code, **kwargs)  # type: ignore[arg-type]


def feedback_span(
    task_id: str,
    flag: str,
    *,
    time_ns: int,
    notes: str | None = None,
    source: str | None = None,
    **kwargs: object,
) -> Span:
    """A feedback span of our convention (its time is its end)."""
    attributes: dict[str, object] = {
        PhosphoAttributes.SPAN_TYPE: "feedback",
        PhosphoAttributes.TASK_ID: task_id,
        PhosphoAttributes.FEEDBACK_FLAG: flag,
    }
    if notes is not None:
        attributes[PhosphoAttributes.FEEDBACK_NOTES] = notes
    if source is not None:
        attributes[PhosphoAttributes.FEEDBACK_SOURCE] = source
    return make_span(attributes, name="feedback", start_ns=time_ns, end_ns=time_ns,
                     **kwargs)  # type: ignore[arg-type]


def make_request(spans: Sequence[Span], service: str = "test-app",
                 scope: str = "tests") -> ExportTraceServiceRequest:
    """One export request holding the spans under one resource and scope."""
    return request_of([Batch(service, list(spans), scope=scope, scope_version="")])


@dataclass
class Batch:
    """Spans of one (service, resource attributes, scope) to send in one request."""

    service: str
    spans: list[Span]
    resource: dict[str, object] = field(default_factory=dict)
    scope: str = "tests"
    scope_version: str = "1.0"


def request_of(batches: Sequence[Batch]) -> ExportTraceServiceRequest:
    """An OTLP export request holding the batches."""
    out = ExportTraceServiceRequest()
    for batch in batches:
        resource = Resource(attributes=attrs({"service.name": batch.service, **batch.resource}))
        scope = InstrumentationScope(name=batch.scope, version=batch.scope_version)
        out.resource_spans.append(
            ResourceSpans(resource=resource,
                          scope_spans=[ScopeSpans(scope=scope, spans=batch.spans)])
        )
    return out
