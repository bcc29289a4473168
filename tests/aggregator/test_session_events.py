"""aggregator.extract: session ends and session feedback (``SessionEventRecord``), from
our ``session_end`` / ``session_feedback`` spans and from the OpenTelemetry
``session.end`` span event on any span."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator.extract import (
    END_SOURCE_EVENT,
    END_SOURCE_SDK,
    MAX_TIME_NS,
    extract,
)
from phospho_otel.model.records import Extraction, SessionEventRecord
from phospho_otel.semconv import SEMCONV_VERSION
from phospho_otel.semconv import ForeignAttributes as F
from tests.support.otlp import BASE_NS, SEC, attrs, make_request, make_span, task_span

INVALID = "session_events_skipped_invalid"


def with_event(span: Span, name: str = "session.end",
               attributes: Mapping[str, object] | None = None, time_ns: int = 0) -> Span:
    """``span`` with one more span event."""
    event = span.events.add(name=name, time_unix_nano=time_ns)
    event.attributes.extend(attrs(attributes or {}))
    return span


def session_end_span(session_id: str | None, *, time_ns: int = BASE_NS,
                     event: bool = True, **attributes: object) -> Span:
    """A ``session_end`` span as the SDK's ``end_session()`` writes it."""
    values: dict[str, object] = {"phospho.span.type": "session_end",
                                 "phospho.semconv.version": SEMCONV_VERSION, **attributes}
    if session_id is not None:
        values["session.id"] = session_id
    span = make_span(values, name="session_end", start_ns=time_ns, end_ns=time_ns)
    if event:
        with_event(span, attributes={"session.id": session_id or "x"}, time_ns=time_ns)
    return span


def session_feedback_span(session_id: str | None, flag: object = "success", *,
                          time_ns: int = BASE_NS, **attributes: object) -> Span:
    values: dict[str, object] = {"phospho.span.type": "session_feedback",
                                 "phospho.feedback.flag": flag, **attributes}
    if session_id is not None:
        values["session.id"] = session_id
    return make_span(values, name="session_feedback", start_ns=time_ns, end_ns=time_ns)


def extracted(*spans: Span) -> Extraction:
    return extract(make_request(list(spans)))


def brief(x: Extraction) -> list[tuple[object, ...]]:
    return [(e.session_id, e.kind, e.flag, e.notes, e.source, e.time_ns)
            for e in x.session_events]


class TestOurSpans:
    """``session_end`` and ``session_feedback`` spans of our convention."""

    def test_session_end(self) -> None:
        """One end record at the span's end, though the span also carries the event;
        the span is still a span row, and neither a task nor feedback."""
        span = session_end_span("s1", time_ns=BASE_NS + 5 * SEC)
        span.attributes.extend(attrs({"user.id": "u1"}))
        x = extracted(span)
        assert x.session_events == (SessionEventRecord(
            span.trace_id, span.span_id, "s1", "end", None, None, END_SOURCE_SDK,
            BASE_NS + 5 * SEC),)
        assert isinstance(x.session_events, tuple)
        assert (x.tasks, x.feedback, x.counters, x.problems) == ([], [], {}, [])
        ((_, rows),) = x.groups
        assert (rows[0].session_id, rows[0].user_id) == ("s1", "u1")

    def test_session_end_without_event(self) -> None:
        """The span type alone is enough (another SDK writing our convention)."""
        assert brief(extracted(session_end_span("s1", event=False))) == [
            ("s1", "end", None, None, END_SOURCE_SDK, BASE_NS)]

    def test_session_feedback(self) -> None:
        """Flag, notes and source are read; the source defaults to ``user``."""
        x = extracted(
            session_feedback_span("s1", "failure", time_ns=BASE_NS + SEC,
                                  **{"phospho.feedback.notes": "slow",
                                     "phospho.feedback.source": "owner"}),
            session_feedback_span("s2", "success"),
        )
        assert brief(x) == [("s1", "feedback", "failure", "slow", "owner", BASE_NS + SEC),
                            ("s2", "feedback", "success", None, "user", BASE_NS)]
        assert x.feedback == [] and x.counters == {}

    def test_invalid_are_skipped_and_counted(self) -> None:
        """No session id, an empty or non-string one, a bad or missing flag: skipped,
        counted, with a reason; the spans are stored all the same; the valid one in the
        same request is kept."""
        x = extracted(
            session_end_span(None, event=False),
            session_end_span("", event=False),
            session_end_span(None, event=False, **{"session.id": 7}),
            session_feedback_span("s1", "meh"),
            session_feedback_span("s1", 1),
            make_span({"phospho.span.type": "session_feedback", "session.id": "s1"}),
            session_feedback_span(None),
            session_end_span("ok", event=False),
        )
        assert brief(x) == [("ok", "end", None, None, END_SOURCE_SDK, BASE_NS)]
        assert x.counters == {INVALID: 7}
        assert len(x.problems) == 5  # MAX_PROBLEMS
        assert "session_end span 'session_end' skipped: session.id is missing" in x.problems
        assert "session.id is empty" in x.problems[1]
        assert "session.id is not a string" in x.problems[2]
        assert "phospho.feedback.flag='meh'" in x.problems[3]
        assert x.span_count == 8 and len(x.groups[0][1]) == 8

    def test_task_span_with_event(self) -> None:
        """A task span of ours carrying a ``session.end`` event (an app annotating the
        current span inside ``phospho.task``): the task and the end."""
        span = with_event(task_span("t1", session_id="s1"), time_ns=BASE_NS + 7)
        x = extracted(span)
        assert [t.task_id for t in x.tasks] == ["t1"]
        assert brief(x) == [("s1", "end", None, None, END_SOURCE_EVENT, BASE_NS + 7)]


class TestSessionEndEvent:
    """The OpenTelemetry session events on spans of any convention."""

    def test_event_names_the_session(self) -> None:
        """A third-party span (no ids of its own) with the event: an end record for the
        event's ``session.id``, at the event's time; no task."""
        span = with_event(make_span({"http.route": "/chat/close"}, name="POST /chat/close"),
                          attributes={"session.id": "chat-9", "extra": 1},
                          time_ns=BASE_NS + 42)
        x = extracted(span)
        assert x.session_events == (SessionEventRecord(
            span.trace_id, span.span_id, "chat-9", "end", None, None, END_SOURCE_EVENT,
            BASE_NS + 42),)
        assert x.tasks == [] and x.counters == {}

    def test_event_falls_back_to_span_session(self) -> None:
        """Without ``session.id`` on the event (or with a non-string one), the span's own
        session id from any convention; without a time, the span's end."""
        langfuse = with_event(make_span({F.LANGFUSE_SESSION_ID: "lf-1"}, end_ns=BASE_NS + 9))
        traceloop = with_event(make_span({F.TRACELOOP_SESSION_ID: "tl-1"}),
                               attributes={"session.id": 5}, time_ns=BASE_NS + 3)
        x = extracted(langfuse, traceloop)
        assert brief(x) == [("lf-1", "end", None, None, END_SOURCE_EVENT, BASE_NS + 9),
                            ("tl-1", "end", None, None, END_SOURCE_EVENT, BASE_NS + 3)]

    def test_event_session_wins_over_span_session(self) -> None:
        span = with_event(make_span({"session.id": "span-s"}),
                          attributes={"session.id": "event-s"})
        assert [e.session_id for e in extracted(span).session_events] == ["event-s"]

    def test_one_record_per_span(self) -> None:
        """Several ``session.end`` events on one span: the first usable one."""
        span = make_span({"user.id": "u"})
        with_event(span, "session.start", {"session.id": "a"}, BASE_NS + 1)
        with_event(span, attributes={}, time_ns=BASE_NS + 2)  # names no session: skipped
        with_event(span, attributes={"session.id": "b"}, time_ns=BASE_NS + 3)
        with_event(span, attributes={"session.id": "c"}, time_ns=BASE_NS + 4)
        x = extracted(span)
        assert brief(x) == [("b", "end", None, None, END_SOURCE_EVENT, BASE_NS + 3)]
        assert x.counters == {INVALID: 1}
        assert x.problems == ["session.end event of span 'span' skipped: no session.id "
                              "(a string) on the event or the span"]

    def test_session_start_with_previous_id(self) -> None:
        """``session.start`` with ``session.previous_id`` ends the previous session (the
        OpenTelemetry rule); without it, it ends nothing and is not a problem."""
        continued = with_event(make_span({"session.id": "new"}), "session.start",
                               {"session.id": "new", "session.previous_id": "old"},
                               BASE_NS + 8)
        fresh = with_event(make_span({"session.id": "s"}), "session.start",
                           {"session.id": "s"})
        x = extracted(continued, fresh)
        assert brief(x) == [("old", "end", None, None, END_SOURCE_EVENT, BASE_NS + 8)]
        assert x.counters == {} and x.problems == []

    def test_other_events_and_bad_times(self) -> None:
        """Other event names are ignored; an event time past 2^63-1 ns is skipped
        (counted); a span rejected for its ids yields nothing."""
        other = with_event(make_span({"session.id": "s"}), "exception",
                           {"exception.type": "X"})
        late = with_event(make_span({"session.id": "s"}), time_ns=MAX_TIME_NS + 1)
        bad_ids = with_event(make_span({"session.id": "s"}, span_id=bytes(8)))
        x = extracted(other, late, bad_ids)
        assert x.session_events == ()
        assert x.counters == {INVALID: 1}
        assert "past 2^63-1 ns" in x.problems[0]
        assert x.rejected_spans == 1

    def test_no_events_no_records(self) -> None:
        """Ordinary traffic: tasks, feedback and plain spans give no session events."""
        x = extracted(task_span("t", session_id="s"), make_span({"session.id": "s"}),
                      make_span({"session.id": "s", "input.value": "i"}))
        assert x.session_events == () and len(x.tasks) == 2
