"""The fast path (our processor alone on the provider) and the SDK path (other
processors present) send the same spans; sampling and span APIs are honoured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

import phospho_otel as phospho
from phospho_otel.sdk import _client

from .otel_range import fast_path_expected
from .otlp_sink import CapturedSpan, OtlpSink, attributes_of


def workload() -> dict[str, str]:
    """log() and task() in a session, with children, events, an error, feedback."""
    tracer = trace.get_tracer_provider()  # unused: spans come from the given provider
    del tracer
    ids: dict[str, str] = {}
    with phospho.session("sess", user_id="u", metadata={"m": 1}):
        ids["log"] = phospho.log({"messages": [{"role": "user", "content": "hi"}]}, "yo",
                                 metadata={"k": [1]}, task_id="log-task").task_id
        with phospho.task(input="outer", name="outer-op", task_id="outer-task") as t:
            current = trace.get_current_span()
            current.set_attribute("custom", ["a", "b"])
            current.set_attributes({"n": 3, "bad": object()})  # type: ignore[dict-item]
            current.add_event("thinking", {"step": 1}, timestamp=123)
            ids["child"] = phospho.log("inner", task_id="child-task").task_id
            t.set_output({"answer": 42})
        try:
            with phospho.task(input="fails", task_id="err-task"):
                raise RuntimeError("nope")
        except RuntimeError:
            pass
    phospho.user_feedback("outer-task", "failure", notes="meh", source="eval")
    return ids


def normalise(spans: list[CapturedSpan]) -> list[dict[str, Any]]:
    """What must match between the paths (ids and times differ)."""
    by_id = {s.span_id: s for s in spans}
    out = []
    for s in spans:
        parent = by_id.get(s.parent_span_id)
        events = []
        for e in s.span.events:
            attrs = attributes_of(e.attributes)
            attrs.pop("exception.stacktrace", None)
            events.append((e.name, attrs))
        out.append({
            "name": s.name,
            "kind": s.span.kind,
            "attributes": s.attributes,
            "resource": s.resource,
            "scope": s.scope_name,
            "parent": parent.name if parent else None,
            "status": (s.span.status.code, s.span.status.message),
            "events": events,
            "links": len(s.span.links),
            "flags": s.span.flags,
            "ended_after_start": s.span.end_time_unix_nano >= s.span.start_time_unix_nano > 0,
        })
    return sorted(out, key=lambda d: (d["name"], str(d["attributes"].get("phospho.task.id"))))


class TestSamePaths:
    """Both paths produce the same OTLP spans."""

    def run(self, sink: OtlpSink, extra: bool) -> tuple[list[dict[str, Any]], int]:
        provider = TracerProvider(resource=Resource.create({"service.name": "paths"}))
        memory = InMemorySpanExporter()
        if extra:
            provider.add_span_processor(SimpleSpanProcessor(memory))
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                     schedule_delay_s=0.02)
        client = _client.current_client()
        assert client is not None and client.fast is not None
        assert client.fast.usable() is (not extra and fast_path_expected())
        workload()
        assert phospho.flush(5)
        spans = sink.spans()
        phospho.shutdown()
        sink.requests.clear()
        return normalise(spans), len(memory.get_finished_spans())

    def test_fast_and_sdk_paths_match(self, sink: OtlpSink) -> None:
        """Same names, kinds, attributes, parents, statuses, events, links, flags."""
        fast, seen_fast = self.run(sink, extra=False)
        slow, seen_slow = self.run(sink, extra=True)
        assert len(fast) == 5
        assert fast == slow
        assert (seen_fast, seen_slow) == (0, 5)  # other processors see every span
        outer = next(s for s in fast if s["name"] == "outer-op")
        assert outer["attributes"]["custom"] == ("a", "b")
        # the SDK's rule for odd values, on both paths (None since 1.45, dropped before)
        assert outer["attributes"].get("bad", "dropped") in (None, "dropped")
        assert outer["events"] == [("thinking", {"step": 1})]
        assert next(s for s in fast if s["attributes"].get("phospho.task.id") == "child-task"
                and s["attributes"]["phospho.span.type"] == "task")["parent"] == "outer-op"
        err = next(s for s in fast if s["attributes"].get("phospho.task.id") == "err-task")
        assert err["status"] == (2, "RuntimeError: nope")
        assert err["events"][0][0] == "exception"
        assert err["events"][0][1]["exception.type"] == "RuntimeError"


class TestSampling:
    """The provider's sampler decides, on both paths."""

    @pytest.mark.parametrize("extra", [False, True])
    def test_always_off_exports_nothing(self, sink: OtlpSink, extra: bool) -> None:
        """With ALWAYS_OFF, log()/task() still return ids, nothing is exported."""
        provider = TracerProvider(sampler=ALWAYS_OFF)
        if extra:
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                     schedule_delay_s=0.02)
        logged = phospho.log("x")
        with phospho.task(input="y") as t:
            t.set_output("z")
        assert logged.task_id and t.task_id
        assert phospho.flush(5)
        assert sink.span_count() == 0 and phospho.stats().exported == 0


class TestTaskSpanApi:
    """Instrumentation that annotates the current span works inside a task."""

    def test_status_rules_and_after_end(self, sink: OtlpSink,
                                        start_sdk: Callable[..., TracerProvider]) -> None:
        """OK status is final; changes after the end are ignored; names can change."""
        start_sdk()
        with phospho.task(input="x") as t:
            span = trace.get_current_span()
            assert span.is_recording()
            span.update_name("renamed")
            span.set_status(trace.StatusCode.OK)
            span.set_status(trace.Status(trace.StatusCode.ERROR, "ignored"))
        span.set_attribute("late", 1)
        assert not span.is_recording()
        (captured,) = sink.wait_for(1)
        assert captured.name == "renamed" and captured.span.status.code == 1
        assert "late" not in captured.attributes
        assert captured.attributes["phospho.task.id"] == t.task_id
