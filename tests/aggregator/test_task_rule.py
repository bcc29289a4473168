"""aggregator.extract: which foreign spans are tasks, one per turn, whatever the nesting
and however the spans of a trace are split into requests.

The rule (module doc of ``extract``): a foreign span with an id and an input or output is
a task when it is a local root, or when its ancestors up to a local root all arrive in
the same request and none of them is a task or such a candidate."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, SpanFlags

from phospho_otel.aggregator.extract import extract, foreign_task_id
from tests.support.otlp import make_request, make_span, task_span

TRACE = b"\x07" * 16
TURN = {"session.id": "s", "user.id": "u", "input.value": "the words",
        "output.value": "the reply"}
"""A foreign span that may be a task: ids, an input and an output."""
PLAIN: dict[str, object] = {"http.route": "/chat"}
"""A foreign span without ids or I/O (a web framework's server span)."""


def span(name: str, attributes: Mapping[str, object], parent: str | None = None) -> Span:
    return make_span(attributes, trace_id=TRACE, span_id=name.encode().ljust(8, b"."),
                     parent_span_id=parent.encode().ljust(8, b".") if parent else b"",
                     name=name)


def tasks_of(*requests: list[Span]) -> set[str]:
    """The task names found in these requests, each extracted on its own."""
    return {task.name for spans in requests for task in extract(make_request(spans)).tasks}


def test_child_of_a_foreign_task() -> None:
    """An LLM span under a CHAIN / workflow / @observe span: only the outer one."""
    assert tasks_of([span("llm", TURN, "turn"), span("turn", TURN)]) == {"turn"}


def test_child_of_our_task() -> None:
    """An instrumented LLM call inside ``with phospho.task(...)``: only ours."""
    ours = task_span("t1", session_id="s", input="hi")
    ours.trace_id, ours.span_id = TRACE, b"ours...."
    child = span("llm", TURN, "ours")
    (task,) = extract(make_request([child, ours])).tasks
    assert task.task_id == "t1"


def test_under_a_plain_root() -> None:
    """An LLM span under a server span without ids is the task; a step below it is not."""
    spans = [span("step", TURN, "llm"), span("llm", TURN, "server"), span("server", PLAIN)]
    assert tasks_of(spans) == {"llm"}
    (task,) = extract(make_request(spans)).tasks
    assert task.task_id == foreign_task_id(TRACE, b"llm.....")


def test_remote_parent() -> None:
    """A span whose parent is in another service is its service's task."""
    remote = span("llm", TURN, "caller")
    remote.flags = (SpanFlags.SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
                    | SpanFlags.SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK)
    assert tasks_of([remote]) == {"llm"}


@pytest.mark.parametrize("split", ["together", "child first", "parent first"])
def test_converges_whatever_the_split(split: str) -> None:
    """Child and parent in one request or two, in either order: one task, the parent."""
    child, parent = span("llm", TURN, "turn"), span("turn", TURN)
    requests = {"together": [[child, parent]], "child first": [[child], [parent]],
                "parent first": [[parent], [child]]}[split]
    assert tasks_of(*requests) == {"turn"}


def test_never_two_tasks_on_one_branch() -> None:
    """Whatever the partition of a nested trace into requests, no task has a task
    ancestor: a turn is never counted twice."""
    spans = [span("server", PLAIN), span("turn", TURN, "server"),
             span("llm", TURN, "turn"), span("step", TURN, "llm")]
    parents = {"turn": "server", "llm": "turn", "step": "llm"}
    for cut in itertools.product([0, 1], repeat=len(spans)):
        requests = [[s for s, c in zip(spans, cut, strict=True) if c == i] for i in (0, 1)]
        found = tasks_of(*requests)
        for name in found:
            above = parents.get(name)
            while above:
                assert above not in found, (cut, found)
                above = parents.get(above)
        if all(c == cut[0] for c in cut):
            assert found == {"turn"}


def test_parent_cycle_ends() -> None:
    """Parent ids forming a cycle (a broken sender) end the walk: no task, no hang."""
    assert tasks_of([span("a", TURN, "b"), span("b", PLAIN, "a")]) == set()


def test_logfire_log_span_is_not_a_task() -> None:
    """Logfire's zero-duration log span of a streamed call is not a task."""
    assert tasks_of([span("log", {**TURN, "logfire.span_type": "log"})]) == set()
    assert tasks_of([span("span", {**TURN, "logfire.span_type": "span"})]) == {"span"}
