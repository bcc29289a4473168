"""OpenTelemetry GenAI (``opentelemetry-instrumentation-openai-v2``), ids from W3C baggage
through the ``BaggageSpanProcessor``: content on the spans (``span_only``), or as log
events (``event_only``, sent over OTLP/gRPC with the spans), which give the very same
tasks; ``gen_ai.evaluation.result`` events flag the task they evaluate. One app run per
mode, shared by the tests (module fixtures)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from phospho_otel.store.api import Page, Store, TaskFilter
from tests.interop.harness import Aggregator, check_views, run_app
from tests.interop.logs_env import logs_interop_env

TaskView = tuple[object, ...]
_TIMES = 10
"""Where ``start_ns``, ``end_ns`` are in a ``TaskView`` (``TaskRecord`` from ``session_id``)."""


def tasks(store: Store) -> list[TaskView]:
    """Every task as the views show it (its record but the ids), without its flag."""
    with store.read() as reader:
        rows = reader.list_tasks(TaskFilter(), Page("start_time", limit=100)).items
    return sorted(row.task[3:] for row in rows)


@pytest.fixture(scope="module")
def span_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    """The app with content on the spans, over OTLP/HTTP."""
    with logs_interop_env(tmp_path_factory.mktemp("genai-spans")) as (aggregator, env):
        run_app("genai", env=env)
        yield aggregator


@pytest.fixture(scope="module")
def event_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Aggregator]:
    """The app with content as log events and an evaluator, over OTLP/gRPC."""
    with logs_interop_env(tmp_path_factory.mktemp("genai-events"), grpc=True) as (
            aggregator, env):
        run_app("genai", "event_only", "evaluate", "grpc", env=env)
        yield aggregator


def test_genai_views(span_only: Aggregator) -> None:
    check_views(span_only.store, "gen_ai")


def test_event_only_same_as_span_only(event_only: Aggregator, span_only: Aggregator) -> None:
    """Content as log events gives the tasks content on the spans gives, field for
    field (start and end times aside: another run)."""
    check_views(event_only.store, "gen_ai")
    assert event_only.store.counters()["annotations_received"] == 12 + 2
    assert [t[:_TIMES] + t[_TIMES + 2:] for t in tasks(event_only.store)] == [
        t[:_TIMES] + t[_TIMES + 2:] for t in tasks(span_only.store)]


def test_evaluation_flags_task(event_only: Aggregator) -> None:
    """The app's evaluator emits ``gen_ai.evaluation.result`` on two turns' LLM spans:
    those tasks, and only those, are flagged, with the evaluation's name as source; their
    sessions count them."""
    with event_only.store.read() as reader:
        rows = reader.list_tasks(TaskFilter(), Page("start_time", limit=100)).items
        flagged = {(r.task.session_id, r.task.input): r.feedback for r in rows
                   if r.feedback is not None}
        alice = reader.get_session("alice-session-0")
        bob = reader.get_session("bob-session-1")
    assert set(flagged) == {("alice-session-0", "alice asks question 0 in session 0"),
                            ("bob-session-1", "bob asks question 2 in session 1")}
    for (session, _), feedback in flagged.items():
        assert feedback is not None and feedback.source == "genai:relevance"
        assert feedback.flag == ("success" if str(session).startswith("alice") else "failure")
        assert feedback.notes is not None and "judged" in feedback.notes
    assert alice is not None and (alice.success_count, alice.failure_count) == (1, 0)
    assert bob is not None and (bob.failure_count, bob.last_flag) == (1, "failure")
