"""``insights.usage``: a task's tokens and cost from the real OTLP spans of its trace, by
each convention's attributes, summed over the leaves of its subtree only; sums over
tasks figure by figure."""

from __future__ import annotations

import math

import pytest
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.insights.usage import (
    NO_USAGE,
    span_usage,
    sum_usage,
    task_subtree,
    task_usage,
)
from phospho_otel.model.analysis import Usage
from phospho_otel.semconv import UsageAttributes
from phospho_otel.store.api import StoredOrigin, StoredTrace, TraceSpan
from tests.support.otlp import make_span, task_span

MS = 1_000_000
T0 = 1_780_000_000 * 1_000_000_000
TRACE = b"\x01" * 16
TASK = b"\x10" * 8
ORIGIN = StoredOrigin(1, "app", Resource(), b"", "", InstrumentationScope(), "")


def span(n: int, parent: bytes, attributes: dict[str, object], at_ms: int = 0) -> Span:
    """Span number ``n`` of the trace under ``parent``, starting ``at_ms`` after T0."""
    return make_span(attributes, trace_id=TRACE, span_id=bytes([n]) * 8, parent_span_id=parent,
                     name=f"span{n}", start_ns=T0 + at_ms * MS)


def trace_of(*spans: Span) -> StoredTrace:
    """The trace as a store answers it: the spans in start order."""
    ordered = sorted(spans, key=lambda s: s.start_time_unix_nano)
    return StoredTrace(TRACE, [TraceSpan(s, ORIGIN) for s in ordered])


def task() -> Span:
    return task_span("t1", session_id="s1", trace_id=TRACE, span_id=TASK, start_ns=T0)


class TestSpanUsage:
    @pytest.mark.parametrize(("attributes", "expected"), [
        pytest.param({"gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 3,
                      "gen_ai.usage.cost": 0.5}, Usage(12, 3, 0.5), id="otel-genai"),
        pytest.param({"llm.token_count.prompt": 7, "llm.token_count.completion": 2,
                      "llm.cost.total": 0.25}, Usage(7, 2, 0.25), id="openinference"),
        pytest.param({"gen_ai.usage.prompt_tokens": 5, "gen_ai.usage.completion_tokens": 1},
                     Usage(5, 1, None), id="older-genai"),
        pytest.param({"llm.usage.prompt_tokens": 9, "llm.usage.completion_tokens": 4},
                     Usage(9, 4, None), id="traceloop"),
        pytest.param({"langfuse.observation.usage_details": '{"input": 5, "output": 7}',
                      "langfuse.observation.cost_details": '{"total": 0.001}'},
                     Usage(5, 7, 0.001), id="langfuse-json"),
        pytest.param({"langfuse.observation.usage_details":
                      '{"completion_tokens": 10, "prompt_tokens": 13, "total_tokens": 23,'
                      ' "prompt_tokens_details": null}'},
                     Usage(13, 10, None), id="langfuse-openai-names"),
        pytest.param({"gen_ai.usage.input_tokens": "40", "llm.cost.total": "0.1"},
                     Usage(40, None, 0.1), id="numbers-as-text"),
        pytest.param({"gen_ai.usage.input_tokens": True, "llm.cost.total": "NaN",
                      "gen_ai.usage.cost": "inf",
                      "langfuse.observation.usage_details": "not json"},
                     NO_USAGE, id="bools-non-finite-and-bad-json-ignored"),
        pytest.param({"input.value": "hello"}, NO_USAGE, id="none"),
    ])
    def test_each_convention(self, attributes: dict[str, object], expected: Usage) -> None:
        assert span_usage(span(2, TASK, attributes)) == expected

    def test_first_key_wins_and_langfuse_fills_what_is_missing(self) -> None:
        got = span_usage(span(2, TASK, {
            "gen_ai.usage.input_tokens": 10, "llm.token_count.prompt": 99,
            "langfuse.observation.usage_details": '{"input": 1000, "output": 6}'}))
        assert got == Usage(10, 6, None)

    def test_every_key_is_read(self) -> None:
        """Each key of the convention table counts on its own (none is dead)."""
        for key in UsageAttributes.INPUT_TOKEN_KEYS:
            assert span_usage(span(2, TASK, {key: 3})).input_tokens == 3, key
        for key in UsageAttributes.OUTPUT_TOKEN_KEYS:
            assert span_usage(span(2, TASK, {key: 4})).output_tokens == 4, key
        for key in UsageAttributes.COST_KEYS:
            assert span_usage(span(2, TASK, {key: 0.5})).cost == 0.5, key


class TestTaskUsage:
    def test_leaves_only(self) -> None:
        """An agent wrapping two LLM calls repeats their tokens: counted once, from the
        calls; the task span's own figures are not added either."""
        agent = span(2, TASK, {"openinference.span.kind": "AGENT",
                               "llm.token_count.prompt": 999, "llm.cost.total": 9.0}, 1)
        call1 = span(3, agent.span_id, {"gen_ai.usage.input_tokens": 100,
                                        "gen_ai.usage.output_tokens": 20,
                                        "llm.cost.total": 0.002}, 2)
        call2 = span(4, agent.span_id, {"llm.token_count.prompt": 50,
                                        "llm.token_count.completion": 5}, 3)
        retrieval = span(5, agent.span_id, {"openinference.span.kind": "RETRIEVER"}, 4)
        root = task()
        root.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 5000
        usage = task_usage(trace_of(root, agent, call1, call2, retrieval), TASK)
        assert usage.input_tokens == 150 and usage.output_tokens == 25
        assert usage.cost == pytest.approx(0.002)

    def test_a_wrapper_counts_when_nothing_below_reports(self) -> None:
        """A span whose children report nothing counts its own figures (here the task's
        own span, as an instrumented call that is the task itself)."""
        root = task()
        root.attributes.add(key="gen_ai.usage.input_tokens").value.int_value = 30
        child = span(2, TASK, {"openinference.span.kind": "TOOL"}, 1)
        assert task_usage(trace_of(root, child), TASK) == Usage(30, None, None)

    def test_only_the_task_subtree(self) -> None:
        """Another root of the same trace, and a sibling task's calls, are not this
        task's."""
        mine = span(2, TASK, {"gen_ai.usage.input_tokens": 1}, 1)
        other_root = span(3, b"", {"gen_ai.usage.input_tokens": 100}, 2)
        under_other = span(4, other_root.span_id, {"gen_ai.usage.input_tokens": 1000}, 3)
        usage = task_usage(trace_of(task(), mine, other_root, under_other), TASK)
        assert usage == Usage(1, None, None)

    def test_no_trace_no_span_no_usage(self) -> None:
        assert task_usage(None, TASK) == NO_USAGE
        assert task_usage(trace_of(task()), b"\x99" * 8) == NO_USAGE
        assert task_usage(trace_of(task()), TASK) == NO_USAGE
        assert not NO_USAGE.known

    def test_a_deep_chain_and_a_cycle(self) -> None:
        """A chain deeper than Python's recursion limit is walked; spans whose parent ids
        make a cycle with the task's are listed once."""
        depth = 3000
        spans = [task()]
        for n in range(depth):
            parent = spans[-1].span_id
            spans.append(make_span({}, trace_id=TRACE, span_id=n.to_bytes(8, "big"),
                                   parent_span_id=parent, start_ns=T0 + n + 1))
        spans[-1].attributes.add(key="llm.token_count.completion").value.int_value = 8
        trace = trace_of(*spans)
        assert task_usage(trace, TASK) == Usage(None, 8, None)
        assert [s.depth for s in task_subtree(trace, TASK)][-1] == depth
        looped = task()
        looped.parent_span_id = b"\x02" * 8
        child = span(2, TASK, {"gen_ai.usage.output_tokens": 2}, 1)
        subtree = task_subtree(trace_of(looped, child), TASK)
        assert [s.span.span_id for s in subtree] == [TASK, child.span_id]
        assert task_usage(trace_of(looped, child), TASK) == Usage(None, 2, None)

    def test_subtree_order(self) -> None:
        """Depth first, children in start order, each with its depth and parent index."""
        a = span(2, TASK, {}, 5)
        b = span(3, TASK, {}, 1)
        a1 = span(4, a.span_id, {}, 6)
        got = [(s.span.name, s.depth, s.parent) for s in
               task_subtree(trace_of(task(), a, b, a1), TASK)]
        assert got == [("task", 0, -1), ("span3", 1, 0), ("span2", 1, 0), ("span4", 2, 2)]


class TestSumUsage:
    def test_figure_by_figure(self) -> None:
        got = sum_usage([Usage(10, None, 0.5), None, Usage(5, 3, None), Usage(None, None, None)])
        assert got is not None
        assert (got.input_tokens, got.output_tokens) == (15, 3)
        assert got.cost is not None and math.isclose(got.cost, 0.5)

    def test_none_when_nothing_reported(self) -> None:
        assert sum_usage([]) is None
        assert sum_usage([None, NO_USAGE]) is None
