"""A small trace data set for the trace-reading tests (the store's ``TraceReader`` and the
Jaeger API): four traces over three services, with small integer ids, built with
``tests.support.otlp``.

* ``TRACE_A``: app:chat (server, session s1, user u1, typed attributes) -> app:llm
  (client, error "rate limited", an event, a link to B) -> db:db.query;
* ``TRACE_B``: a 128-bit id: app:chat, session s1, user u1, 2 s later; 3 s long;
* ``TRACE_C``: app:chat, session s2, user u1;
* ``TRACE_D``: worker:job (consumer), user u2, no session; 5 s long.
"""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.otlp import BASE_NS, Batch, attrs, make_span, request_of

__all__ = ["SCOPE", "T0", "TRACE_A", "TRACE_B", "TRACE_C", "TRACE_D", "dataset", "hex_id",
           "span", "trace_bytes"]

T0 = BASE_NS
"""A fixed start time (ns) for hand-built spans: 2025-11-24."""
SCOPE = "tests.jaeger"
"""The instrumentation scope of the data set's spans (version ``1.0``)."""

TRACE_A = 0x0A
TRACE_B = 0x0B00000000000000_000000000000000B
TRACE_C = 0x0C
TRACE_D = 0x0D


def trace_bytes(trace: int) -> bytes:
    """The 16 bytes of a small integer trace id."""
    return trace.to_bytes(16, "big")


def hex_id(trace: int) -> str:
    """The 32-digit hex of a trace id."""
    return trace_bytes(trace).hex()


def span(
    trace: int,
    span_id: int,
    name: str,
    *,
    parent: int | None = None,
    start_ns: int = T0,
    duration_ns: int = 1_000_000,
    attributes: dict[str, object] | None = None,
    kind: int = Span.SPAN_KIND_INTERNAL,
) -> Span:
    """A span with small integer ids (made 16/8 bytes) and the given attributes."""
    return make_span(
        attributes or {},
        trace_id=trace_bytes(trace),
        span_id=span_id.to_bytes(8, "big"),
        parent_span_id=b"" if parent is None else parent.to_bytes(8, "big"),
        name=name,
        kind=kind,
        start_ns=start_ns,
        end_ns=start_ns + duration_ns,
    )


def dataset() -> ExportTraceServiceRequest:
    """The four traces above in one export request."""
    chat = span(
        TRACE_A, 1, "chat", kind=Span.SPAN_KIND_SERVER,
        attributes={
            "session.id": "s1", "user.id": "u1", "input.value": "hello", "big": 2**60,
            "small": -42, "ok": True, "ratio": 0.25, "raw": b"\x00\xff", "list": ["a", "b"],
        },
    )
    llm = span(TRACE_A, 2, "llm", parent=1, start_ns=T0 + 1_500, duration_ns=500_000,
               kind=Span.SPAN_KIND_CLIENT, attributes={"llm.model": "gpt-x", "session.id": "s1"})
    llm.status.code = 2  # type: ignore[assignment]  # STATUS_CODE_ERROR
    llm.status.message = "rate limited"
    event = llm.events.add()
    event.name = "retry"
    event.time_unix_nano = T0 + 2_000
    event.attributes.extend(attrs({"attempt": 2}))
    link = llm.links.add()
    link.trace_id = trace_bytes(TRACE_B)
    link.span_id = (1).to_bytes(8, "big")
    query = span(TRACE_A, 3, "db.query", parent=2, start_ns=T0 + 3_000, duration_ns=100_000)
    b = span(TRACE_B, 1, "chat", start_ns=T0 + 2 * 10**9, duration_ns=3 * 10**9,
             kind=Span.SPAN_KIND_SERVER, attributes={"session.id": "s1", "user.id": "u1"})
    c = span(TRACE_C, 1, "chat", start_ns=T0 + 4 * 10**9, kind=Span.SPAN_KIND_SERVER,
             attributes={"session.id": "s2", "user.id": "u1"})
    d = span(TRACE_D, 1, "job", start_ns=T0 + 6 * 10**9, duration_ns=5 * 10**9,
             kind=Span.SPAN_KIND_CONSUMER, attributes={"user.id": "u2"})
    return request_of([
        Batch("app", [chat, llm, b, c], {"host.name": "h1", "pid": 7}, scope=SCOPE),
        Batch("db", [query], {"db.system": "sqlite"}, scope=SCOPE),
        Batch("worker", [d], scope=SCOPE),
    ])
