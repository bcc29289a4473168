"""Span limits and SDK span metrics: the fast path gives exactly what the SDK gives.

Each test runs the same workload twice through real OTLP into the capture sink: once on
the fast path (our processor alone on the provider) and once on the ordinary SDK path
(another processor present), and compares what arrives, dropped counts included.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, TraceFlags

import phospho_otel as phospho
from phospho_otel.sdk import _client

from .otel_range import fast_path_expected
from .otlp_sink import CapturedSpan, OtlpSink, attributes_of

LINKED = [SpanContext(0xA0 + i, 0xB0 + i, is_remote=True, trace_flags=TraceFlags(1))
          for i in range(3)]


def annotated_task() -> None:
    """A task whose current span gets many attributes, events and links."""
    with phospho.session("sess", user_id="u"):
        phospho.log("a log", "its output", metadata={"m1": 1, "m2": "two"}, task_id="log-task")
        with phospho.task(input="annotated", task_id="annotated-task"):
            span = trace.get_current_span()
            for i in range(5):
                span.add_event(f"event-{i}", {"a": i, "b": "x" * 20, "c": True},
                               timestamp=1000 + i)
            for i, context in enumerate(LINKED):
                span.add_link(context, {"link.a": i, "link.b": "y" * 20})
            span.set_attributes({f"extra.{i}": "z" * 20 for i in range(8)})
            span.set_attribute("extra.0", "again")  # set again: moves to the end


def exported(spans: list[CapturedSpan]) -> list[dict[str, Any]]:
    """What must match between the paths (ids and times differ), dropped counts too."""
    out = []
    for s in spans:
        out.append({
            "name": s.name,
            "attributes": s.attributes,
            "attribute_order": list(s.attributes),
            "dropped_attributes": s.span.dropped_attributes_count,
            "events": [(e.name, e.time_unix_nano, attributes_of(e.attributes),
                        e.dropped_attributes_count) for e in s.span.events],
            "dropped_events": s.span.dropped_events_count,
            "links": [(link.trace_id.hex(), attributes_of(link.attributes),
                       link.dropped_attributes_count) for link in s.span.links],
            "dropped_links": s.span.dropped_links_count,
        })
    return sorted(out, key=lambda d: (d["name"], sorted(d["attributes"].items())))


def run_both(sink: OtlpSink, workload: Callable[[], None], *, fast: bool = True
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``workload`` on the fast path (``fast``: expected to be used), then on the SDK
    path; the spans each exported."""
    results = []
    for extra in (False, True):
        provider = TracerProvider(resource=Resource.create({"service.name": "limits"}))
        if extra:
            provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                     schedule_delay_s=0.02)
        workload()
        client = _client.current_client()
        assert client is not None and client.fast is not None
        assert client.fast.usable() is (fast and not extra and fast_path_expected()), (
            client.fast.off_reason)
        assert phospho.flush(5)
        results.append(exported(sink.spans()))
        phospho.shutdown()
        sink.requests.clear()
    return results[0], results[1]


class TestSpanLimits:
    """OTEL_* span limits apply to fast-path spans exactly as to SDK spans."""

    def test_event_and_link_limits(self, sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
                                   ) -> None:
        """With small event, link and per-event/link attribute limits, the fast path
        keeps (and counts as dropped) exactly what the SDK keeps."""
        monkeypatch.setenv("OTEL_SPAN_EVENT_COUNT_LIMIT", "2")
        monkeypatch.setenv("OTEL_SPAN_LINK_COUNT_LIMIT", "2")
        monkeypatch.setenv("OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "2")
        monkeypatch.setenv("OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", "1")
        fast, sdk = run_both(sink, annotated_task)
        assert fast == sdk
        task = next(s for s in fast if s["attributes"].get("phospho.task.id")
                    == "annotated-task")
        assert [e[0] for e in task["events"]] == ["event-3", "event-4"]
        assert task["dropped_events"] == 3
        assert {e[3] for e in task["events"]} == {1}  # 3 attributes, 2 kept
        assert len(task["links"]) == 2 and task["dropped_links"] == 1
        assert {link[2] for link in task["links"]} == {1}

    def test_span_attribute_count_limit(self, sink: OtlpSink,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
        """OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT drops the oldest attributes on both paths."""
        monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "12")
        fast, sdk = run_both(sink, annotated_task)
        assert fast == sdk
        task = next(s for s in fast if s["attributes"].get("input.value") == "annotated")
        assert len(task["attributes"]) == 12 and task["dropped_attributes"] == 3
        assert "phospho.span.type" not in task["attributes"]  # the oldest ones went
        assert list(task["attributes"])[-1] == "extra.0"

    @pytest.mark.parametrize("variable", ["OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT",
                                          "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"])
    def test_attribute_value_length_limit(self, sink: OtlpSink,
                                          monkeypatch: pytest.MonkeyPatch,
                                          variable: str) -> None:
        """A value length limit (span-specific or global) cuts values on both paths."""
        monkeypatch.setenv(variable, "6")
        fast, sdk = run_both(sink, annotated_task, fast=False)  # declined: see _fastpath
        assert fast == sdk
        logged = next(s for s in fast if s["attributes"].get("input.value", "")
                      .startswith("a log"))
        assert logged["attributes"]["input.value"] == "a log"
        assert logged["attributes"]["output.value"] == "its ou"


class TestSpanMetrics:
    """The SDK's own span metrics (otel.sdk.span.*) see every span of log()/task()."""

    def test_started_and_live_spans_counted(self, sink: OtlpSink,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
        """With OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED, 3 log(), 2 task() and one
        plain span count 6 started spans, none live at the end."""
        monkeypatch.setenv("OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", "true")
        reader = InMemoryMetricReader()
        provider = TracerProvider(meter_provider=MeterProvider(metric_readers=[reader]))
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                     schedule_delay_s=0.02)
        client = _client.current_client()
        assert client is not None and client.fast is not None
        assert not client.fast.usable()  # declined: the SDK counts in start_span
        for i in range(3):
            phospho.log(f"q{i}")
        for i in range(2):
            with phospho.task(input=f"t{i}"):
                pass
        provider.get_tracer("plain").start_span("plain").end()
        assert phospho.flush(5)
        assert sink.span_count() == 6
        data = reader.get_metrics_data()
        assert data is not None
        sums: dict[str, int] = {}
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    total = 0
                    for point in metric.data.data_points:
                        total += int(point.value)  # type: ignore[union-attr]  # counters only
                    sums[metric.name] = total
        assert sums["otel.sdk.span.started"] == 6
        assert sums["otel.sdk.span.live"] == 0
