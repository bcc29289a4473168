"""Records that cross layers: what the aggregator extracts from an OTLP request and a
store writes. Pure data, no I/O.

Each record is a ``NamedTuple``: typed, immutable and cheap (one is made per span on the
ingest path), and its field order is **the** column order of that record, defined here
once: a store backend generates its statements from ``<Record>._fields`` (the SQLite
backend does; ``tests/store`` checks its schema against these fields).

Times are integer nanoseconds since the Unix epoch (UTC); trace and span ids are raw bytes
(16 and 8).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from phospho_otel.model.rollup import Rollup

__all__ = [
    "ANNOTATION_KINDS",
    "CONVENTION_PHOSPHO",
    "SESSION_EVENT_KINDS",
    "TASK_STATUSES",
    "Extraction",
    "FeedbackRecord",
    "Origin",
    "SessionEventRecord",
    "SpanAnnotationRecord",
    "SpanRecord",
    "TaskFeedback",
    "TaskRecord",
]

CONVENTION_PHOSPHO = "phospho"
"""``TaskRecord.convention`` of tasks from our own convention (``phospho_otel.semconv``);
the other values are the names in ``phospho_otel.aggregator.conventions``."""

TASK_STATUSES = ("unset", "ok", "error")
"""``TaskRecord.status`` values, indexed by the OTLP ``StatusCode`` number."""


class Origin(NamedTuple):
    """A (resource, instrumentation scope) pair spans were sent with, deduplicated by
    ``hash`` (of the four serialized parts)."""

    hash: bytes
    service_name: str
    resource: bytes
    """The serialized ``opentelemetry.proto.resource.v1.Resource``."""
    resource_schema_url: str
    scope: bytes
    """The serialized ``opentelemetry.proto.common.v1.InstrumentationScope``."""
    scope_schema_url: str


class SpanRecord(NamedTuple):
    """One received span: a few fields copied out for indexing, and the span itself."""

    trace_id: bytes
    span_id: bytes
    parent_span_id: bytes | None
    """None for a root span."""
    service_name: str
    name: str
    kind: int
    """OTLP ``SpanKind`` number."""
    start_ns: int
    end_ns: int
    status_code: int
    """OTLP ``StatusCode`` number (0 unset, 1 ok, 2 error)."""
    session_id: str | None
    """From any convention's session key (``aggregator.conventions``), None if none."""
    user_id: str | None
    span: bytes
    """The serialized ``opentelemetry.proto.trace.v1.Span``, exactly as received."""


class TaskRecord(NamedTuple):
    """One task, from one span. Its flag comes from feedback, not from here."""

    task_id: str
    trace_id: bytes
    span_id: bytes
    session_id: str | None
    user_id: str | None
    name: str
    service_name: str
    convention: str
    """``CONVENTION_PHOSPHO`` or the name of the convention its ids came from."""
    input: str | None
    output: str | None
    raw_input: str | None
    """JSON text."""
    raw_output: str | None
    """JSON text."""
    metadata: str
    """A JSON object, as text (``"{}"`` when none)."""
    start_ns: int
    end_ns: int
    status: str
    """One of ``TASK_STATUSES``."""


class FeedbackRecord(NamedTuple):
    """One feedback span: a flag on a task, at ``time_ns`` (the span's end)."""

    trace_id: bytes
    span_id: bytes
    task_id: str
    flag: str
    """``success`` or ``failure``."""
    notes: str | None
    source: str
    time_ns: int


SESSION_EVENT_KINDS = ("end", "feedback")
"""``SessionEventRecord.kind`` values."""


class SessionEventRecord(NamedTuple):
    """Something said of a whole session, from one span: its explicit end (the SDK's
    ``end_session()`` or an OpenTelemetry ``session.end`` event) or feedback on it (the
    SDK's ``user_feedback(session_id=...)``), at ``time_ns``."""

    trace_id: bytes
    span_id: bytes
    session_id: str
    kind: str
    """One of ``SESSION_EVENT_KINDS``."""
    flag: str | None
    """``success`` or ``failure`` for feedback; None for an end."""
    notes: str | None
    source: str
    time_ns: int


ANNOTATION_KINDS = ("content", "feedback", "candidate")
"""``SpanAnnotationRecord.annotation_kind`` values."""


class SpanAnnotationRecord(NamedTuple):
    """Something said of one span by another record: message content that a log event
    carries for its span (OTel GenAI ``event_only``), or feedback on the task the span is
    or belongs to (a GenAI evaluation event, a Logfire annotation span). Kept until the
    span and its task are known, and resolved by ``aggregator.annotations``."""

    trace_id: bytes
    span_id: bytes
    """The span it is about (the log record's span context, the annotated span)."""
    annotation_id: bytes
    """8 bytes naming it among the span's annotations: the annotation span's id, or a
    hash of the log record, so that a record sent again is stored once."""
    annotation_kind: str
    """One of ``ANNOTATION_KINDS``."""
    body: str
    """A JSON object: ``content``: ``{"attributes": {key: text}, "seq": n}`` (span
    attributes it stands for); ``feedback``: ``{"flag", "notes", "source"}``;
    ``candidate``: ``{}`` (a foreign task candidate whose ancestry was not all in its
    request: ``aggregator.extract``, "One task per turn")."""
    time_ns: int


class TaskFeedback(NamedTuple):
    """A task's latest feedback by time (of its ``FeedbackRecord``s): what the views show."""

    flag: str
    time_ns: int
    notes: str | None
    source: str


class Extraction(NamedTuple):
    """Everything one export request yields, before it meets the store."""

    groups: list[tuple[Origin, list[SpanRecord]]]
    """The request's spans, by the (resource, scope) they came with."""
    tasks: list[TaskRecord]
    feedback: list[FeedbackRecord]
    span_count: int
    rejected_spans: int
    """Spans that cannot be stored (invalid ids): the OTLP partial-success count."""
    counters: dict[str, int]
    """Ingest counters this request adds (``tasks_skipped_invalid``...)."""
    problems: list[str]
    """Up to a few human-readable reasons for rejected or skipped spans."""
    rollup: Rollup | None = None
    """``model.rollup.rollup(tasks)``, as if every task were new and had no feedback,
    computed by the aggregator off the store's writer thread; None when there are no
    tasks or a task id repeats. A store uses it only when that assumption holds."""
    session_events: tuple[SessionEventRecord, ...] = ()
    """Session ends and session feedback (``SessionEventRecord``)."""
    annotations: tuple[SpanAnnotationRecord, ...] = ()
    """Annotations of spans (``SpanAnnotationRecord``), stored whatever the spans; a
    record already stored (same trace, span and annotation id) is ignored."""
    derived: bool = False
    """Tasks and feedback not carried by this request's spans (``aggregator.annotations``
    re-deriving them from stored spans and annotations): written as if their spans were
    new, and a task replaces a stored version with the same ``(end_ns, span_id)`` (its
    content may have grown since)."""
