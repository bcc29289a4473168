"""The scripted data set of the view tests: figures known in advance (see each test)."""

from __future__ import annotations

import random

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.store.sqlite import SQLiteStore

from .otlp import feedback_span, request, task_span


def scripted_spans() -> list[Span]:
    """The data set (see EXPECTED below for the figures it must give).

    alice: session s1 (3 tasks, 2026-01-10, 310 s) and s2 (1 task, error, 2026-01-11, 30 s);
    bob: session s3 (2 tasks starting at the same instant, 4 s); carol: one task, no session.
    Feedback: a2 success; a3 failure then success (latest wins); a4 failure.
    """
    return [
        task_span("a1", "2026-01-10T10:00:00Z", "2026-01-10T10:00:02Z", input="hello",
                  output="hi", session_id="s1", user_id="alice",
                  metadata={"model": "gpt-x", "tokens": 12}, raw_input='{"messages": []}'),
        task_span("a2", "2026-01-10T10:01:00Z", "2026-01-10T10:01:05Z", input="book a flight",
                  output="done", session_id="s1", user_id="alice"),
        task_span("a3", "2026-01-10T10:05:00Z", "2026-01-10T10:05:10Z", input="thanks",
                  output="bye", session_id="s1", user_id="alice"),
        task_span("a4", "2026-01-11T09:00:00Z", "2026-01-11T09:00:30Z", input="refund?",
                  output="no", session_id="s2", user_id="alice", status="error"),
        task_span("b1", "2026-01-11T12:00:00Z", "2026-01-11T12:00:01Z", input="hello",
                  output="hi", session_id="s3", user_id="bob"),
        task_span("b2", "2026-01-11T12:00:00Z", "2026-01-11T12:00:04Z", input="hello",
                  output="hi again", session_id="s3", user_id="bob"),
        task_span("c1", "2026-01-12T08:00:00Z", "2026-01-12T08:00:01Z", input="standalone",
                  output="ok", user_id="carol"),
        feedback_span("a2", "success", "2026-01-10T10:02:00Z"),
        feedback_span("a3", "failure", "2026-01-10T10:06:00Z"),
        feedback_span("a3", "success", "2026-01-10T10:07:00Z", notes="great"),
        feedback_span("a4", "failure", "2026-01-11T09:01:00Z", notes="rude"),
    ]


def write_scripted(store: SQLiteStore, seed: int = 0) -> None:
    """Write the data set in a shuffled order, in several requests."""
    spans = scripted_spans()
    random.Random(seed).shuffle(spans)
    for i in range(0, len(spans), 3):
        store.write(request(*spans[i : i + 3]))
