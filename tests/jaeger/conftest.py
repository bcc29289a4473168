"""Fixtures for the Jaeger API tests: a real SQLiteStore, OTLP requests built by hand,
and the Jaeger routes served by a real uvicorn on a free 127.0.0.1 port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import (
    InstrumentationScope,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from otlp_values import attrs
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.server_settings import ServerSettings
from phospho_otel.store.sqlite import SQLiteStore

T0 = 1_764_000_000_000_000_000
"""A fixed start time (ns) for hand-built spans: 2025-11-24."""






@dataclass
class Batch:
    """Spans of one (service, resource attributes, scope) to send in one request."""

    service: str
    spans: list[Span]
    resource: dict[str, object] = field(default_factory=dict)
    scope: str = "tests.jaeger"
    scope_version: str = "1.0"


def request_of(batches: Sequence[Batch]) -> ExportTraceServiceRequest:
    """An OTLP export request holding the batches."""
    out = ExportTraceServiceRequest()
    for batch in batches:
        resource = Resource(attributes=attrs({"service.name": batch.service, **batch.resource}))
        scope = InstrumentationScope(name=batch.scope, version=batch.scope_version)
        out.resource_spans.append(
            ResourceSpans(
                resource=resource, scope_spans=[ScopeSpans(scope=scope, spans=batch.spans)]
            )
        )
    return out


def make_span(
    trace: int,
    span: int,
    name: str,
    *,
    parent: int | None = None,
    start_ns: int = T0,
    duration_ns: int = 1_000_000,
    attributes: dict[str, object] | None = None,
    kind: int = Span.SPAN_KIND_INTERNAL,
) -> Span:
    """A span with small integer ids (made 16/8 bytes) and the given attributes."""
    out = Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        name=name,
        kind=kind,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=attrs(attributes or {}),
    )
    if parent is not None:
        out.parent_span_id = parent.to_bytes(8, "big")
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A fresh SQLiteStore in a temporary directory."""
    s = SQLiteStore(tmp_path / "phospho.db", synchronous="NORMAL")
    yield s
    s.close()




@contextmanager
def serve_jaeger(store: SQLiteStore, prefix: str = "/jaeger") -> Iterator[str]:
    """The Jaeger routes under ``prefix`` on a real uvicorn in a thread; yields the base
    URL (``http://127.0.0.1:PORT/jaeger``)."""
    settings = ServerSettings(db=str(store.path), jaeger_prefix=prefix)
    app = Starlette(routes=[Mount(prefix, routes=jaeger_routes(store, settings))])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (server.started and server.servers):
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{prefix}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """An httpx client that ignores proxy settings."""
    with httpx.Client(timeout=10, trust_env=False) as c:
        yield c


# --- a small shared data set ----------------------------------------------------------------

TRACE_A = 0x0A
"""app:chat (server, session s1, user u1) -> app:llm (client, error, event, link to B)
-> db:db.query."""
TRACE_B = 0x0B00000000000000_000000000000000B
"""A 128-bit id: app:chat, session s1, user u1, 2 s later; 3 s long."""
TRACE_C = 0x0C
"""app:chat, session s2, user u1."""
TRACE_D = 0x0D
"""worker:job (consumer), user u2, no session; 5 s long."""


def dataset() -> ExportTraceServiceRequest:
    """The four traces above in one export request."""
    chat = make_span(
        TRACE_A,
        1,
        "chat",
        kind=Span.SPAN_KIND_SERVER,
        attributes={
            "session.id": "s1",
            "user.id": "u1",
            "input.value": "hello",
            "big": 2**60,
            "small": -42,
            "ok": True,
            "ratio": 0.25,
            "raw": b"\x00\xff",
            "list": ["a", "b"],
        },
    )
    llm = make_span(
        TRACE_A,
        2,
        "llm",
        parent=1,
        start_ns=T0 + 1_500,
        duration_ns=500_000,
        kind=Span.SPAN_KIND_CLIENT,
        attributes={"llm.model": "gpt-x", "session.id": "s1"},
    )
    llm.status.code = 2  # STATUS_CODE_ERROR
    llm.status.message = "rate limited"
    event = llm.events.add()
    event.name = "retry"
    event.time_unix_nano = T0 + 2_000
    event.attributes.extend(attrs({"attempt": 2}))
    link = llm.links.add()
    link.trace_id = TRACE_B.to_bytes(16, "big")
    link.span_id = (1).to_bytes(8, "big")
    query = make_span(TRACE_A, 3, "db.query", parent=2, start_ns=T0 + 3_000, duration_ns=100_000)
    b = make_span(
        TRACE_B,
        1,
        "chat",
        start_ns=T0 + 2 * 10**9,
        duration_ns=3 * 10**9,
        kind=Span.SPAN_KIND_SERVER,
        attributes={"session.id": "s1", "user.id": "u1"},
    )
    c = make_span(
        TRACE_C,
        1,
        "chat",
        start_ns=T0 + 4 * 10**9,
        kind=Span.SPAN_KIND_SERVER,
        attributes={"session.id": "s2", "user.id": "u1"},
    )
    d = make_span(
        TRACE_D,
        1,
        "job",
        start_ns=T0 + 6 * 10**9,
        duration_ns=5 * 10**9,
        kind=Span.SPAN_KIND_CONSUMER,
        attributes={"user.id": "u2"},
    )
    return request_of(
        [
            Batch("app", [chat, llm, b, c], {"host.name": "h1", "pid": 7}),
            Batch("db", [query], {"db.system": "sqlite"}),
            Batch("worker", [d]),
        ]
    )


@pytest.fixture(scope="module")
def jaeger_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The data set in a store, served under /jaeger (one server per test module)."""
    s = SQLiteStore(tmp_path_factory.mktemp("jaeger") / "phospho.db", synchronous="NORMAL")
    result = s.write(dataset())
    assert result.spans_stored == 6, result
    with serve_jaeger(s) as url:
        yield url
    s.close()


def hex_id(trace: int) -> str:
    """The 32-digit hex of a trace id."""
    return trace.to_bytes(16, "big").hex()
