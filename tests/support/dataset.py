"""The scripted data set of the view, insight, API and CLI tests: seven tasks and four
feedback spans whose every figure is known in advance (each test states the ones it
checks). Ids are deterministic (``key=``), times exact (``iso_ns``).

* alice: session s1 (a1, a2, a3; 2026-01-10, 310 s) and s2 (a4, status error,
  2026-01-11, 30 s);
* bob: session s3 (b1, b2 starting at the same instant; 4 s; b2 is last by task id);
* carol: c1, outside any session.
* Feedback: a2 success; a3 failure then success (the latest wins, notes "great");
  a4 failure (notes "rude").
"""

from __future__ import annotations

import random
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.store import open_store
from phospho_otel.store.api import StoreWriter
from tests.support.oracle import write
from tests.support.otlp import STATUS, feedback_span, iso_ns, make_request, task_span

__all__ = ["SERVICE", "scripted_requests", "scripted_spans", "write_scripted",
           "write_scripted_file"]

SERVICE = "chat-app"


def _task(task_id: str, start: str, end: str, *, status: str = "ok",
          **fields: object) -> Span:
    """A task span of the data set; ``start``/``end`` are ISO-8601 times."""
    return task_span(task_id, name="chat", start_ns=iso_ns(start), end_ns=iso_ns(end),
                     status_code=STATUS[status], key=task_id,
                     **fields)  # type: ignore[arg-type]


def _feedback(task_id: str, flag: str, time: str, *, notes: str | None = None) -> Span:
    """A feedback span about ``task_id`` at ``time`` (ISO-8601)."""
    return feedback_span(task_id, flag, time_ns=iso_ns(time), notes=notes, source="user",
                         key=f"feedback/{task_id}/{flag}/{time}")


def scripted_spans() -> list[Span]:
    """The data set (see the module docstring)."""
    return [
        _task("a1", "2026-01-10T10:00:00Z", "2026-01-10T10:00:02Z", input="hello",
              output="hi", session_id="s1", user_id="alice",
              metadata={"model": "gpt-x", "tokens": 12}, raw_input='{"messages": []}'),
        _task("a2", "2026-01-10T10:01:00Z", "2026-01-10T10:01:05Z", input="book a flight",
              output="done", session_id="s1", user_id="alice"),
        _task("a3", "2026-01-10T10:05:00Z", "2026-01-10T10:05:10Z", input="thanks",
              output="bye", session_id="s1", user_id="alice"),
        _task("a4", "2026-01-11T09:00:00Z", "2026-01-11T09:00:30Z", input="refund?",
              output="no", session_id="s2", user_id="alice", status="error"),
        _task("b1", "2026-01-11T12:00:00Z", "2026-01-11T12:00:01Z", input="hello",
              output="hi", session_id="s3", user_id="bob"),
        _task("b2", "2026-01-11T12:00:00Z", "2026-01-11T12:00:04Z", input="hello",
              output="hi again", session_id="s3", user_id="bob"),
        _task("c1", "2026-01-12T08:00:00Z", "2026-01-12T08:00:01Z", input="standalone",
              output="ok", user_id="carol"),
        _feedback("a2", "success", "2026-01-10T10:02:00Z"),
        _feedback("a3", "failure", "2026-01-10T10:06:00Z"),
        _feedback("a3", "success", "2026-01-10T10:07:00Z", notes="great"),
        _feedback("a4", "failure", "2026-01-11T09:01:00Z", notes="rude"),
    ]


def scripted_requests(seed: int = 0) -> list[ExportTraceServiceRequest]:
    """The data set in a shuffled order (``seed``), three spans per export request."""
    spans = scripted_spans()
    random.Random(seed).shuffle(spans)
    return [make_request(spans[i : i + 3], service=SERVICE, scope="tests.views")
            for i in range(0, len(spans), 3)]


def write_scripted(store: StoreWriter, seed: int = 0) -> None:
    """Write the data set in a shuffled order, one transaction per request."""
    write(store, *scripted_requests(seed))


ANALYZED_AT = "2026-01-13T00:00:00Z"
"""The "now" the data set file is analysed at: after every session's inactivity timeout."""


def write_scripted_file(path: Path, seed: int = 0) -> Path:
    """A new SQLite store file at ``path`` holding the data set, analysed by the insights'
    analyzer as of ``ANALYZED_AT`` (every session ended); returns ``path``."""
    from phospho_otel.insights.analyzer import Analyzer

    store = open_store(str(path))
    try:
        write_scripted(store, seed)
        analyzer = Analyzer(store, clock=lambda: iso_ns(ANALYZED_AT), classify_every_s=0)
        while analyzer.run_once():
            pass
        analyzer.stop()
    finally:
        store.close()
    return path
