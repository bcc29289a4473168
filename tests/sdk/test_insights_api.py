"""The SDK calls insights rely on: ``log(start_time=, end_time=)``, ``end_session()`` and
feedback on a whole session (``user_feedback(session_id=...)``), over real OTLP into a
capture receiver, on both span paths (the fast path, and the SDK's own when another
processor is on the provider), then through the aggregator's ``extract``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta, timezone
from typing import NamedTuple

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import phospho_otel as phospho
from phospho_otel.aggregator.extract import END_SOURCE_EVENT, END_SOURCE_SDK, extract
from phospho_otel.model.records import FeedbackRecord, SessionEventRecord, TaskRecord
from phospho_otel.sdk import _client
from phospho_otel.semconv import SEMCONV_VERSION

from .otel_range import fast_path_expected
from .otlp_sink import CapturedSpan, OtlpSink, attributes_of

T0 = 1_764_000_000_123_456_789
"""An epoch-ns time with every digit significant (2025-11-24T16:00:00.123456789Z)."""
SEC = 1_000_000_000
PATHS = ["fast", "sdk"]


class Started(NamedTuple):
    path: str
    """``fast`` or ``sdk``."""
    provider: TracerProvider
    """The app's provider (for spans of the app's own tracers)."""


@pytest.fixture(params=PATHS)
def started(request: pytest.FixtureRequest, sink: OtlpSink) -> Iterator[Started]:
    """The SDK initialised towards the sink on a fresh provider: alone on it (the fast
    path, when the installed SDK allows it) or beside another processor (the SDK path);
    checks that the path taken is the one named."""
    provider = TracerProvider(resource=Resource.create({"service.name": "insights-sdk"}))
    memory = InMemorySpanExporter()
    if request.param == "sdk":
        provider.add_span_processor(SimpleSpanProcessor(memory))
    phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                 schedule_delay_s=0.02)
    client = _client.current_client()
    assert client is not None and client.fast is not None
    assert client.fast.usable() is (request.param == "fast" and fast_path_expected())
    yield Started(request.param, provider)
    assert phospho.flush(5)
    if request.param == "sdk":  # the other processor saw every span
        assert len(memory.get_finished_spans()) == sink.span_count()


def one(spans: list[CapturedSpan], span_type: str) -> CapturedSpan:
    found = [s for s in spans if s.attributes.get("phospho.span.type") == span_type]
    assert len(found) == 1, [s.attributes for s in spans]
    return found[0]


def times_of(span: CapturedSpan) -> tuple[int, int]:
    return span.span.start_time_unix_nano, span.span.end_time_unix_nano


def logged_times(sink: OtlpSink, **times: object) -> tuple[int, int]:
    """The (start, end) ns of the span of one ``log()`` with these time arguments."""
    before = sink.span_count()
    logged = phospho.log("q", "a", **times)  # type: ignore[arg-type]
    assert phospho.flush(5)
    spans = sink.wait_for(before + 1)
    (span,) = [s for s in spans if s.attributes.get("phospho.task.id") == logged.task_id]
    return times_of(span)


class TestLogTimes:
    """``log(start_time=, end_time=)``: the span carries exactly the given times."""

    def test_epoch_ns_and_aware_datetimes(self, started: Started, sink: OtlpSink) -> None:
        """Ints are used as is; aware datetimes are converted exactly, in any zone."""
        assert logged_times(sink, start_time=T0, end_time=T0 + 1500 * SEC) == (
            T0, T0 + 1500 * SEC)
        paris = timezone(timedelta(hours=2))
        start = datetime(2026, 1, 10, 12, 0, 0, 250_001, tzinfo=paris)  # 10:00:00Z
        end = datetime(2026, 1, 10, 10, 0, 3, tzinfo=timezone.utc)
        start_ns = 1_768_039_200 * SEC + 250_001_000
        assert logged_times(sink, start_time=start, end_time=end) == (
            start_ns, 1_768_039_203 * SEC)

    def test_naive_datetime_is_utc(self, started: Started, sink: OtlpSink) -> None:
        """A naive datetime means UTC, whatever the machine's zone."""
        naive = datetime(2026, 1, 10, 10, 0, 0)
        assert logged_times(sink, start_time=naive) == (1_768_039_200 * SEC,) * 2

    def test_defaults(self, started: Started, sink: OtlpSink) -> None:
        """Only a start, or only an end: the span starts and ends then; neither: now
        (the fast path reads the clock once, the SDK path at start and at end)."""
        assert logged_times(sink, start_time=T0) == (T0, T0)
        assert logged_times(sink, end_time=T0) == (T0, T0)
        assert logged_times(sink, start_time=T0, end_time=T0) == (T0, T0)
        before = time.time_ns()
        start, end = logged_times(sink)
        assert before <= start <= end <= time.time_ns()
        assert start == end or started.path == "sdk"

    def test_in_session_and_as_child(self, started: Started, sink: OtlpSink) -> None:
        """A backfilled task keeps its session, user and parent."""
        tracer = started.provider.get_tracer("app")
        with phospho.session("s-back", user_id="u-back"), tracer.start_as_current_span("req"):
            logged = phospho.log("q", start_time=T0, end_time=T0 + SEC)
        assert phospho.flush(5)
        spans = sink.wait_for(2)
        task = one(spans, "task")
        parent = next(s for s in spans if s.name == "req")
        assert times_of(task) == (T0, T0 + SEC)
        assert task.parent_span_id == parent.span_id
        assert (task.attributes["session.id"], task.attributes["user.id"]) == ("s-back",
                                                                               "u-back")
        assert logged.session_id == "s-back"


class TestBadTimes:
    """Bad times raise at the call site; nothing is sent."""

    @pytest.mark.parametrize(("kwargs", "error"), [
        ({"start_time": True}, TypeError),
        ({"end_time": False}, TypeError),
        ({"start_time": 1.7e18}, TypeError),
        ({"start_time": "2026-01-10T10:00:00Z"}, TypeError),
        ({"start_time": date(2026, 1, 10)}, TypeError),
        ({"start_time": -1}, ValueError),
        ({"end_time": 2**63}, ValueError),
        ({"start_time": datetime(1969, 12, 31, tzinfo=timezone.utc)}, ValueError),
        ({"start_time": T0, "end_time": T0 - 1}, ValueError),
        ({"start_time": datetime(2026, 1, 10, 10, 0, 1),
          "end_time": datetime(2026, 1, 10, 10, 0, 0)}, ValueError),
    ])
    def test_log_rejects(self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider],
                         kwargs: dict[str, object], error: type[Exception]) -> None:
        start_sdk()
        with pytest.raises(error):
            phospho.log("q", **kwargs)  # type: ignore[arg-type]
        assert phospho.flush(5)
        assert sink.span_count() == 0

    def test_float_message_says_how(self, start_sdk: Callable[..., TracerProvider]) -> None:
        """The error for a float names the conversion the caller probably wants."""
        start_sdk()
        with pytest.raises(TypeError, match=r"int\(t \* 1e9\)"):
            phospho.log("q", start_time=time.time())  # type: ignore[arg-type]

    def test_end_session_and_feedback_reject(self, sink: OtlpSink,
                                             start_sdk: Callable[..., TracerProvider]) -> None:
        start_sdk()
        with pytest.raises(TypeError):
            phospho.end_session("s", at=1.5)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            phospho.user_feedback("t", at=-5)
        with pytest.raises(TypeError):
            phospho.user_feedback(session_id="s", at=True)
        assert phospho.flush(5)
        assert sink.span_count() == 0


class TestEndSession:
    """``end_session()``: a ``session_end`` span with the OpenTelemetry ``session.end``
    event."""

    def test_explicit_id(self, started: Started, sink: OtlpSink) -> None:
        """Exactly the convention's attributes, and the event naming the session."""
        before = time.time_ns()
        phospho.end_session("s-1")
        after = time.time_ns()
        assert phospho.flush(5)
        (span,) = sink.wait_for(1)
        assert span.attributes == {
            "phospho.span.type": "session_end",
            "phospho.semconv.version": SEMCONV_VERSION,
            "session.id": "s-1",
        }
        assert span.name == "session_end"
        start, end = times_of(span)
        assert before <= start == end <= after
        (event,) = span.span.events
        assert event.name == "session.end"
        assert attributes_of(event.attributes) == {"session.id": "s-1"}
        assert event.time_unix_nano == end

    def test_scope_and_at(self, started: Started, sink: OtlpSink) -> None:
        """Inside a session scope the id and user are the scope's; ``at`` sets the time
        of the span and of its event; an explicit id wins over the scope's."""
        at = datetime(2026, 1, 10, 10, 30, tzinfo=timezone.utc)
        with phospho.session("s-scope", user_id="u-1") as s:
            phospho.end_session(at=at)
            phospho.end_session("s-other", at=T0)
        assert s.session_id == "s-scope"
        assert phospho.flush(5)
        spans = sink.wait_for(2)
        by_session = {sp.attributes["session.id"]: sp for sp in spans}
        scoped = by_session["s-scope"]
        assert scoped.attributes["user.id"] == "u-1"
        at_ns = 1_768_041_000 * SEC
        assert times_of(scoped) == (at_ns, at_ns)
        assert scoped.span.events[0].time_unix_nano == at_ns
        other = by_session["s-other"]
        assert times_of(other) == (T0, T0)
        assert attributes_of(other.span.events[0].attributes) == {"session.id": "s-other"}

    def test_needs_a_session(self, sink: OtlpSink,
                             start_sdk: Callable[..., TracerProvider]) -> None:
        """No id and no scope: ValueError; a bad id: TypeError; nothing sent."""
        start_sdk()
        with pytest.raises(ValueError, match="session"):
            phospho.end_session()
        with phospho.session(user_id="u"), pytest.raises(TypeError):
            phospho.end_session("")
        with pytest.raises(TypeError):
            phospho.end_session(42)  # type: ignore[arg-type]
        assert phospho.flush(5)
        assert sink.span_count() == 0


class TestSessionFeedback:
    """``user_feedback(session_id=...)`` without a task: feedback on the whole session."""

    def test_session_feedback_span(self, started: Started, sink: OtlpSink) -> None:
        """A ``session_feedback`` span with the feedback attributes and no task id."""
        phospho.user_feedback(session_id="s-1", flag="failure", notes="never answered",
                              source="owner", user_id="u-1", metadata={"channel": "web"})
        assert phospho.flush(5)
        (span,) = sink.wait_for(1)
        assert span.attributes == {
            "phospho.span.type": "session_feedback",
            "phospho.semconv.version": SEMCONV_VERSION,
            "phospho.feedback.flag": "failure",
            "phospho.feedback.source": "owner",
            "phospho.feedback.notes": "never answered",
            "session.id": "s-1",
            "user.id": "u-1",
            "phospho.metadata.channel": "web",
        }
        assert span.name == "session_feedback"
        assert len(span.span.links) == 0

    def test_task_forms_unchanged(self, started: Started, sink: OtlpSink) -> None:
        """``task_id`` positional or keyword still gives task feedback, linked to the
        task's span, with the scope's session; ``at`` sets its time."""
        with phospho.session("s-2", user_id="u-2"):
            logged = phospho.log("q", "a")
            phospho.user_feedback(logged.task_id, "failure", "bad")
            phospho.user_feedback(task_id=logged.task_id, flag="success", at=T0)
        assert phospho.flush(5)
        spans = sink.wait_for(3)
        feedback = [s for s in spans if s.attributes["phospho.span.type"] == "feedback"]
        assert len(feedback) == 2
        task = one(spans, "task")
        for span in feedback:
            assert span.attributes["phospho.task.id"] == logged.task_id
            assert span.attributes["session.id"] == "s-2"
            assert span.span.links[0].span_id == task.span.span_id
        timed = next(s for s in feedback if s.attributes["phospho.feedback.flag"] == "success")
        assert times_of(timed) == (T0, T0)

    def test_needs_task_or_session(self, sink: OtlpSink,
                                   start_sdk: Callable[..., TracerProvider]) -> None:
        """Neither a task id nor a session id: TypeError, even inside a session scope
        (its id is never taken silently for feedback on the whole session)."""
        start_sdk()
        with pytest.raises(TypeError, match=r"task_id.*session_id"):
            phospho.user_feedback(flag="success")
        with phospho.session("s-3"), pytest.raises(TypeError, match="session_id"):
            phospho.user_feedback(flag="failure")
        with pytest.raises(ValueError):
            phospho.user_feedback(session_id="s", flag="meh")
        with pytest.raises(TypeError):
            phospho.user_feedback(session_id="")
        with pytest.raises(TypeError):
            phospho.user_feedback("")
        assert phospho.flush(5)
        assert sink.span_count() == 0


class TestThroughTheAggregator:
    """What the SDK sends is what ``extract`` turns into records."""

    def test_records(self, started: Started, sink: OtlpSink) -> None:
        """Backfilled task times, feedback time, the SDK's session end (one record,
        though its span also carries the event), session feedback, and a ``session.end``
        event added by the app to a span of its own tracer."""
        with phospho.session("s-r", user_id="u-r"):
            logged = phospho.log("q", "a", start_time=T0, end_time=T0 + 2 * SEC)
            phospho.user_feedback(logged.task_id, "success", at=T0 + 3 * SEC)
            phospho.end_session(at=T0 + 10 * SEC)
        phospho.user_feedback(session_id="s-r", flag="failure", notes="meh", at=T0 + 20 * SEC)
        with started.provider.get_tracer("chat-app").start_as_current_span("disconnect") as span:
            span.add_event("session.end", {"session.id": "s-app"}, timestamp=T0 + 30 * SEC)
        assert phospho.flush(5)
        sink.wait_for(5)
        tasks: list[TaskRecord] = []
        feedback: list[FeedbackRecord] = []
        events: list[SessionEventRecord] = []
        for request in sink.requests:
            x = extract(request)
            assert not x.counters and not x.problems
            tasks += x.tasks
            feedback += x.feedback
            events += x.session_events
        (task,) = tasks
        assert (task.task_id, task.session_id, task.start_ns, task.end_ns) == (
            logged.task_id, "s-r", T0, T0 + 2 * SEC)
        (fb,) = feedback
        assert (fb.task_id, fb.flag, fb.time_ns) == (logged.task_id, "success", T0 + 3 * SEC)
        assert sorted((e.session_id, e.kind, e.flag, e.notes, e.source, e.time_ns)
                      for e in events) == [
            ("s-app", "end", None, None, END_SOURCE_EVENT, T0 + 30 * SEC),
            ("s-r", "end", None, None, END_SOURCE_SDK, T0 + 10 * SEC),
            ("s-r", "feedback", "failure", "meh", "user", T0 + 20 * SEC),
        ]
