"""Pydantic Logfire (``logfire.instrument_openai``), ids from ``logfire.set_baggage``; its
annotations (``record_feedback``) flag the annotated task. One app run (with feedback on
two turns), shared by the tests.

A streamed call is a span that ends when the stream is returned (with the input) and a
zero-duration log span when it is consumed (with the input, the reply and the usage, a
second root of the same trace): that completion record is the streamed turn's task, the
call's span is not one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.api.steps import task_steps
from phospho_otel.store.api import Page, TaskFilter, TaskRow
from tests.interop.harness import Aggregator, check_views, interop_env, run_app


@pytest.fixture(scope="module")
def logfire_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    with interop_env(tmp_path_factory.mktemp("logfire")) as (aggregator, env):
        run_app("logfire", "feedback", env={**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                                            env["OTLP_TRACES_URL"]})
        yield aggregator


def all_tasks(aggregator: Aggregator) -> list[TaskRow]:
    with aggregator.store.read() as reader:
        return reader.list_tasks(TaskFilter(), Page("start_time", limit=100)).items


def test_logfire_views(logfire_app: Aggregator) -> None:
    check_views(logfire_app.store, "logfire")
    # the rendered message, not the template "Chat Completion with {request_data...}"
    names = [row.task.name for row in all_tasks(logfire_app)]
    streamed = [name for name in names if name.startswith("streaming response from 'fake-gpt'")]
    assert len(streamed) == 4 and names.count("Chat Completion with 'fake-gpt'") == 8, names


def test_logfire_feedback(logfire_app: Aggregator) -> None:
    """``record_feedback`` on two turns' LLM spans flags those tasks (a boolean and a
    label), with the comment as notes and ``logfire:<name>`` as source; the annotation
    spans are neither tasks nor steps."""
    rows = all_tasks(logfire_app)
    flagged = {(r.task.session_id, r.task.input): r.feedback for r in rows if r.feedback}
    assert {key: (f.flag, f.notes, f.source) for key, f in flagged.items() if f} == {
        ("alice-session-1", "alice asks question 2 in session 1"):
            ("success", "spot on", "logfire:helpful"),
        ("bob-session-0", "bob asks question 0 in session 0"):
            ("failure", "wrong city", "logfire:helpful"),
    }
    with logfire_app.store.read() as reader:
        steps = [task_steps(reader.get_traces([r.task.trace_id])[0], r.task.span_id,
                            r.task.start_ns, None)["steps"] for r in rows]
        bob = reader.get_session("bob-session-0")
    names = [step["name"] for found in steps for step in found]
    assert names and not any(name.startswith("feedback") for name in names), names
    assert bob is not None and bob.failure_count == 1


def test_logfire_through_rotel(tmp_path: Path) -> None:
    """The same app through a real rotel: the same views, and its annotations flag."""
    with interop_env(tmp_path, "rotel") as (aggregator, env):
        run_app("logfire", "feedback", env={**env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                                            env["OTLP_TRACES_URL"]})
        check_views(aggregator.store, "logfire")
        flagged = {row.task.session_id: row.feedback.flag for row in all_tasks(aggregator)
                   if row.feedback is not None}
        assert flagged == {"alice-session-1": "success", "bob-session-0": "failure"}
