"""The fast path's guards: the opentelemetry-sdk version range, the parity self-test,
and what happens when building a span fails (an upstream signature change). In every
case spans still arrive, through the ordinary SDK path."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext

import phospho_otel as phospho
from phospho_otel.sdk import _client, _otel_compat, _parity
from phospho_otel.sdk._fastpath import FastPath, TaskSpan

from .otel_range import SHIPPED_RANGE, needs_fast_path
from .otlp_sink import OtlpSink, attributes_of

FASTPATH_LOGGER = "phospho_otel.sdk._fastpath"


def fast_path() -> FastPath:
    """The current client's fast path."""
    client = _client.current_client()
    assert client is not None and client.fast is not None
    return client.fast


def child_tracer() -> trace.Tracer:
    """A plain tracer of the provider the SDK exports from."""
    client = _client.current_client()
    assert client is not None
    return client.provider.get_tracer("child")


def off_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """The fast path's "off" log lines."""
    return [r for r in caplog.records
            if r.name == FASTPATH_LOGGER and "fast path off" in r.getMessage()]


def some_spans() -> tuple[str, str]:
    """Two log()s and a task with an event, a child and an invalid link; the ids."""
    first = phospho.log("first", "out", task_id="first").task_id
    with phospho.task(input="in a task", task_id="the-task"):
        span = trace.get_current_span()
        span.add_event("step", {"n": 1}, timestamp=5)
        span.add_link(trace.INVALID_SPAN_CONTEXT)  # the SDK does not keep it
        with child_tracer().start_as_current_span("child"):
            pass
    second = phospho.log("second", task_id="second").task_id
    return first, second


def check_arrived(sink: OtlpSink) -> None:
    """The spans of ``some_spans`` arrived whole, the child under the task."""
    spans = sink.wait_for(4)
    by_name = {(s.name, s.attributes.get("phospho.task.id")): s for s in spans}
    assert set(by_name) == {("task", "first"), ("task", "the-task"), ("task", "second"),
                            ("child", None)}
    task = by_name[("task", "the-task")]
    assert [(e.name, attributes_of(e.attributes)) for e in task.span.events] == [
        ("step", {"n": 1})]
    assert list(task.span.links) == []
    assert by_name[("child", None)].parent_span_id == task.span_id
    assert by_name[("task", "first")].attributes["output.value"] == "out"


class TestVersionRange:
    """With an opentelemetry-sdk outside the checked range the fast path stays off."""

    def test_range_as_shipped(self) -> None:
        """The range is >=1.45,<1.46 (pyproject pins the same); pre-releases of the
        next minor and unparsable versions are outside."""
        assert SHIPPED_RANGE == ((1, 45), (1, 46))
        assert _otel_compat.checked_range_text() in (">=1.45,<1.46", ">=0.0,<999.0")
        check = _otel_compat.sdk_version_checked
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(_otel_compat, "CHECKED_SDK_VERSIONS", SHIPPED_RANGE)
            assert check("1.45.0") and check("1.45.2") and check("1.45.10")
            for outside in ("1.44.0", "1.46.0", "1.46.0rc1", "1.46.0.dev0", "2.0", "1",
                            "", "unknown"):
                assert not check(outside), outside

    def test_outside_range_uses_the_sdk_path(self, sink: OtlpSink,
                                             start_sdk: Callable[..., TracerProvider],
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
        """opentelemetry-sdk 1.46.0: one info line, fast path off, every span arrives."""
        monkeypatch.setattr(_otel_compat, "CHECKED_SDK_VERSIONS", SHIPPED_RANGE)
        monkeypatch.setattr(_otel_compat, "installed_sdk_version", lambda: "1.46.0")
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        start_sdk()
        some_spans()
        assert not fast_path().usable()
        (line,) = off_lines(caplog)
        assert line.levelno == logging.INFO
        assert "opentelemetry-sdk 1.46.0 is outside" in line.getMessage()
        assert ">=1.45,<1.46" in line.getMessage()
        check_arrived(sink)


@needs_fast_path
class TestParitySelfTest:
    """The self-test compares a fast-path span with an SDK span made the same way."""

    def test_passes_and_exports_nothing(self, sink: OtlpSink,
                                        start_sdk: Callable[..., TracerProvider],
                                        caplog: pytest.LogCaptureFixture) -> None:
        """With the installed SDK the self-test passes; its probe spans never reach
        the exporter (nor the counters)."""
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        start_sdk()
        some_spans()
        assert fast_path().usable() and fast_path().off_reason is None
        assert off_lines(caplog) == []
        check_arrived(sink)
        assert phospho.flush(5)
        assert not [s for s in sink.spans() if s.name.startswith(_parity.NAME)]
        assert phospho.stats().exported == 4

    def test_difference_turns_fast_path_off(self, sink: OtlpSink,
                                            start_sdk: Callable[..., TracerProvider],
                                            monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
        """Semantics drift (here: the fast path would keep invalid links the SDK drops):
        one warning naming the field, fast path off, spans arrive as the SDK makes them."""
        monkeypatch.setattr(_otel_compat, "is_valid_link", lambda context, attributes: True)
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        start_sdk()
        some_spans()
        assert not fast_path().usable()
        (line,) = off_lines(caplog)
        assert line.levelno == logging.WARNING
        assert "parity self-test found a difference: links of" in line.getMessage()
        check_arrived(sink)  # the invalid link was not kept: the SDK made the span

    def test_broken_self_test_turns_fast_path_off(self, sink: OtlpSink,
                                                  start_sdk: Callable[..., TracerProvider],
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture
                                                  ) -> None:
        """A self-test that raises (say, an SDK method it calls changed) counts as a
        difference: nothing raised into the app."""

        def broken(self: Any, span: trace.Span) -> None:
            raise TypeError("add_event() got an unexpected keyword argument")

        monkeypatch.setattr(_parity.Probe, "exercise", broken)
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        start_sdk()
        some_spans()
        (line,) = off_lines(caplog)
        assert "the parity self-test failed: TypeError" in line.getMessage()
        check_arrived(sink)

    def test_small_limits_are_probed(self, sink: OtlpSink, provider: TracerProvider,
                                     monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
        """With limits of 1 the probe goes past each of them: a fast path that ignored
        the event limit is caught by the self-test (the SDK's own warnings about the
        probe stay out of the logs)."""
        for name in ("OTEL_SPAN_EVENT_COUNT_LIMIT", "OTEL_SPAN_LINK_COUNT_LIMIT",
                     "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"):
            monkeypatch.setenv(name, "1")
        caplog.set_level(logging.DEBUG)
        limited = TracerProvider()
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=limited,
                     schedule_delay_s=0.02)
        phospho.log("probe me")
        assert fast_path().usable()
        assert not [r for r in caplog.records if r.name.startswith("opentelemetry")]
        phospho.shutdown()
        monkeypatch.setattr(_otel_compat, "bounded_list", lambda maxlen: [])
        relimited = TracerProvider()
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=relimited,
                     schedule_delay_s=0.02)
        phospho.log("probe me again")
        (line,) = off_lines(caplog)
        assert "events of" in line.getMessage() or "dropped events" in line.getMessage()


@needs_fast_path
class TestBuildFailure:
    """If building a ReadableSpan raises, nothing reaches the app or the export thread."""

    @staticmethod
    def break_readable_span(monkeypatch: pytest.MonkeyPatch) -> None:
        def changed(*args: Any, **kwargs: Any) -> ReadableSpan:
            raise TypeError("ReadableSpan.__init__() got an unexpected keyword argument")

        monkeypatch.setattr(_otel_compat, "readable_span", changed)

    def test_log_falls_back_to_the_sdk(self, sink: OtlpSink,
                                       start_sdk: Callable[..., TracerProvider],
                                       monkeypatch: pytest.MonkeyPatch,
                                       caplog: pytest.LogCaptureFixture) -> None:
        """log() returns its task as usual, the span goes the SDK path, one warning."""
        start_sdk()
        phospho.log("warm up")  # the self-test passed; the fast path is on
        assert fast_path().usable()
        self.break_readable_span(monkeypatch)
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        some_spans()
        (line,) = off_lines(caplog)
        assert line.levelno == logging.WARNING and "building a span raised" in line.getMessage()
        assert not fast_path().usable()
        assert len(sink.wait_for(5)) == 5

    def test_task_span_replayed_with_its_ids(self, sink: OtlpSink,
                                             start_sdk: Callable[..., TracerProvider],
                                             monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
        """A task span started on the fast path whose end fails is recorded through
        the SDK with the same ids (its child still points to it), attributes, events,
        links and status."""
        start_sdk()
        linked = SpanContext(0xAB, 0xCD, is_remote=True)
        caplog.set_level(logging.DEBUG, logger="phospho_otel")
        with pytest.raises(ValueError, match="boom"):
            with phospho.task(input="replayed", task_id="replayed") as run:
                assert isinstance(run.span, TaskSpan)
                span = trace.get_current_span()
                span.add_event("step", {"n": 1}, timestamp=5)
                span.add_link(linked, {"why": "test"})
                span.set_attribute("custom", ("a", "b"))
                with child_tracer().start_as_current_span("child"):
                    pass
                self.break_readable_span(monkeypatch)
                raise ValueError("boom")
        spans = sink.wait_for(2)
        task = next(s for s in spans if s.name == "task")
        child = next(s for s in spans if s.name == "child")
        assert (task.span_id, task.trace_id) == (run.span_id, run.trace_id)
        assert child.parent_span_id == task.span_id
        assert task.attributes["phospho.task.id"] == "replayed"
        assert task.attributes["custom"] == ("a", "b")
        assert [e.name for e in task.span.events] == ["step", "exception"]
        assert [(link.trace_id.hex()[-2:], attributes_of(link.attributes))
                for link in task.span.links] == [("ab", {"why": "test"})]
        assert task.span.status.message == "ValueError: boom"
        assert len(off_lines(caplog)) == 1

    def test_truncation_copy_failure_exports_untruncated(
        self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider],
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """If a span cannot be copied to cut its attributes, it is exported as it is
        (one warning) and the export thread goes on."""

        def changed(span: ReadableSpan, attributes: Any) -> ReadableSpan:
            raise TypeError("ReadableSpan.__init__() missing 1 required argument")

        monkeypatch.setattr(_otel_compat, "copy_with_attributes", changed)
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        start_sdk(max_attribute_bytes=10)
        phospho.log("x" * 50, task_id="long-1")
        phospho.log("y" * 50, task_id="long-2")
        spans = sink.wait_for(2)
        assert sorted(s.attributes["input.value"] for s in spans) == ["x" * 50, "y" * 50]
        warnings = [r for r in caplog.records if "untruncated" in r.getMessage()]
        assert len(warnings) == 1
        assert phospho.stats().truncated == 0
        phospho.log("after")
        assert len(sink.wait_for(3)) == 3
