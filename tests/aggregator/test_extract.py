"""aggregator.extract: which spans become tasks, from our convention and the others."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import SpanFlags

from phospho_otel.aggregator.extract import any_value_to_python, extract, foreign_task_id
from phospho_otel.model.records import TaskRecord
from phospho_otel.semconv import ForeignAttributes as F
from tests.support.otlp import make_request, make_span, task_span


def only_task(attrs: Mapping[str, object], *, parent_span_id: bytes = b"") -> TaskRecord | None:
    """The single task extracted from one span with these attributes, or None."""
    x = extract(make_request([make_span(attrs, parent_span_id=parent_span_id)]))
    assert len(x.tasks) <= 1
    return x.tasks[0] if x.tasks else None


class TestOurConvention:
    """Task and feedback spans of phospho's convention."""

    def test_task_fields(self) -> None:
        """Every task field is read from its attribute."""
        span = task_span("t", session_id="s", user_id="u", input="i", output="o",
                         metadata={"a": [1, 2], "b": 1.5},
                         status_code=2)
        span.attributes.add(key="phospho.raw_input").value.string_value = '{"x":1}'
        x = extract(make_request([span], service="svc"))
        (task,) = x.tasks
        assert task.task_id == "t"
        assert (task.session_id, task.user_id, task.input, task.output) == ("s", "u", "i", "o")
        assert task.raw_input == '{"x":1}'
        assert task.raw_output is None
        assert task.metadata == '{"a":[1,2],"b":1.5}'
        assert (task.status, task.service_name, task.convention) == ("error", "svc", "phospho")
        assert (task.trace_id, task.span_id) == (span.trace_id, span.span_id)

    def test_session_on_every_span_row(self) -> None:
        """Span rows carry the session and user from any convention."""
        x = extract(make_request([make_span({F.LANGFUSE_SESSION_ID: "ls", F.ENDUSER_ID: "eu"},
                                            parent_span_id=b"12345678")]))
        ((_, rows),) = x.groups
        assert (rows[0].session_id, rows[0].user_id) == ("ls", "eu")

    def test_any_value(self) -> None:
        """AnyValue converts to plain Python values."""
        span = make_span({"a": [1, "x", True], "b": b"\x01\x02", "c": 2.5})
        values = {kv.key: any_value_to_python(kv.value) for kv in span.attributes}
        assert values == {"a": [1, "x", True], "b": "0102", "c": 2.5}


class TestForeignConventions:
    """Sessions and users from other conventions' attributes."""

    @pytest.mark.parametrize(
        ("session_key", "user_key", "input_key", "output_key", "convention"),
        [
            ("session.id", "user.id", "input.value", "output.value", "openinference"),
            (F.GEN_AI_CONVERSATION_ID, F.ENDUSER_ID, F.GEN_AI_INPUT_MESSAGES,
             F.GEN_AI_OUTPUT_MESSAGES, "gen_ai"),
            (F.TRACELOOP_SESSION_ID, F.TRACELOOP_USER_ID, F.TRACELOOP_ENTITY_INPUT,
             F.TRACELOOP_ENTITY_OUTPUT, "traceloop"),
            (F.LANGFUSE_SESSION_ID, F.LANGFUSE_USER_ID, F.LANGFUSE_OBSERVATION_INPUT,
             F.LANGFUSE_OBSERVATION_OUTPUT, "langfuse"),
        ],
    )
    def test_child_span_with_io(
        self, session_key: str, user_key: str, input_key: str, output_key: str, convention: str
    ) -> None:
        """A root span with a session, a user and input/output becomes a task (plain text
        input and output kept as they are)."""
        rng = random.Random(1)
        span = make_span({session_key: "s", user_key: "u", input_key: "in", output_key: "out"},
                         rng=rng)
        x = extract(make_request([span]))
        (task,) = x.tasks
        assert task.task_id == foreign_task_id(span.trace_id, span.span_id)
        assert task.task_id == f"{span.trace_id.hex()}-{span.span_id.hex()}"
        assert (task.session_id, task.user_id) == ("s", "u")
        assert (task.input, task.output, task.convention) == ("in", "out", convention)
        assert (task.raw_input, task.metadata) == (None, "{}")

    def test_root_span_without_io(self) -> None:
        """A root span with only a session id and no input or output is not a task."""
        assert only_task({F.TRACELOOP_SESSION_ID: "s"}) is None

    def test_child_with_io_and_absent_parent(self) -> None:
        """A child span with ids and I/O whose parent is not in the request is not a
        task (its parent, arriving later, may be the turn's task)."""
        assert only_task({"session.id": "s", "input.value": "i"},
                         parent_span_id=b"\x03" * 8) is None

    def test_remote_parent_is_local_root(self) -> None:
        """A span whose parent is remote is the root of its local subtree."""
        span = make_span({"user.id": "u", "input.value": "i"}, parent_span_id=b"\x02" * 8)
        span.flags = (SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
                      | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
        assert len(extract(make_request([span])).tasks) == 1

    def test_child_without_io_is_not_a_task(self) -> None:
        """A child span with a session (propagated) but no I/O is a plain span."""
        assert only_task({"session.id": "s"}, parent_span_id=b"\x03" * 8) is None

    def test_io_without_session_is_not_a_task(self) -> None:
        """Input/output alone, with no session or user, is a plain span."""
        assert only_task({"input.value": "i", "output.value": "o"}) is None

    def test_non_string_ids_ignored(self) -> None:
        """A session id that is not a string does not count."""
        assert only_task({"session.id": 42}) is None

    def test_first_key_wins(self) -> None:
        """session.id is preferred over the vendors' keys."""
        task = only_task({F.LANGFUSE_SESSION_ID: "l", "session.id": "o", "input.value": "i"})
        assert task is not None
        assert (task.session_id, task.convention) == ("o", "openinference")
