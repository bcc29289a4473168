"""Decoded OTLP -> span, task, feedback and session-event records. Pure functions, no I/O.

Every span with a valid trace id (16 bytes, not all zero) and span id (8 bytes, not all
zero) and times a store can hold becomes a ``spans`` row. A span that cannot be stored is
*rejected*: counted in the OTLP partial-success reply (with a reason in its message) while
the rest of its request is stored:

* an invalid trace or span id;
* a start or end time past ``MAX_TIME_NS`` (2^63 - 1 ns, 2262-04-11): OTLP times are
  unsigned 64-bit (``fixed64``), stores hold signed 64-bit integers (counter
  ``spans_rejected_time``). Rejected, not clamped: a clamped time would be a made-up
  value, the stored span would disagree with its own bytes, and the sender learns of its
  broken clock from the partial success. Event times stay inside the stored span's bytes
  (no store column holds them), so they need no bound.

Numbers in metadata are JSON numbers, except the doubles JSON cannot spell (NaN,
+-Infinity, valid in OTLP): they become the strings ``"NaN"``, ``"Infinity"`` and
``"-Infinity"`` (``any_value_to_python``), so a metadata object is always strict JSON.

Which spans become tasks and feedback:

* **Our convention** (``phospho.span.type`` set, see ``phospho_otel.semconv``):

  - ``task``: a task with id ``phospho.task.id`` (non-empty string) and input
    ``input.value`` (string). ``output.value``, ``phospho.raw_input``,
    ``phospho.raw_output``, ``session.id`` and ``user.id`` are optional strings;
    ``phospho.metadata.<k>`` attributes form the metadata object. A missing required
    attribute or a value of the wrong type skips the task (counter
    ``tasks_skipped_invalid``); the span is stored all the same.
  - ``feedback``: feedback on task ``phospho.task.id`` with ``phospho.feedback.flag``
    (``success`` | ``failure``), optional ``phospho.feedback.notes`` and
    ``phospho.feedback.source`` (default ``user``); its time is the span's end. Invalid
    ones are skipped with counter ``feedback_skipped_invalid``.
  - ``session_end``: the explicit end of session ``session.id`` (non-empty string) at the
    span's end: a ``SessionEventRecord`` of kind ``end``, source ``END_SOURCE_SDK``.
  - ``session_feedback``: feedback on the whole session ``session.id`` with
    ``phospho.feedback.flag`` / ``.notes`` / ``.source`` as on a ``feedback`` span, at
    the span's end: a ``SessionEventRecord`` of kind ``feedback``. Invalid
    ``session_end`` / ``session_feedback`` spans (no session id, a bad flag) are skipped
    with counter ``session_events_skipped_invalid``.
  - any other value: a plain span (counter ``spans_unknown_type``).

* **The OpenTelemetry session events**, as span events on any span of any convention (a
  ``session_end`` span of ours excepted: it is its own record), give an end record
  (source ``END_SOURCE_EVENT``): ``session.end`` for the session named by the event's
  ``session.id`` attribute (a non-empty string), else by the span's own session id (any
  convention's key, as on its span row); ``session.start`` with a ``session.previous_id``
  (a non-empty string) for that previous session, which OpenTelemetry's conventions make
  equivalent to its ``session.end``. At the event's time (the span's end if the event
  has none). At most one record per span (its first usable event); a ``session.end``
  naming no session, or an event past ``MAX_TIME_NS``, is skipped with counter
  ``session_events_skipped_invalid``. Only spans that have events are looked at.

* **Other conventions** (no ``phospho.span.type``): the session id, user id, input and
  output are read from the keys of ``aggregator.conventions`` (in its precedence order;
  only string values count), the text out of them by ``aggregator.messages``: the
  input is the end user's own words (the last user message), the output the model's
  reply text; the payload they came from is kept as ``raw_input`` / ``raw_output`` when
  it differs from the text, and the system prompt goes to ``metadata.system_prompt``.
  ``convention`` names the library (``conventions`` module doc), the task name is the
  convention's ``name_key`` when set (Logfire's rendered message), else the span name.
  The task id is derived from the span: ``"<trace id hex>-<span id hex>"``, so a foreign
  task can never collide with one of ours.

  **One task per turn.** A foreign span is a *candidate* when it carries a session or
  user id and an input or output, and is not marked as a log record
  (``conventions.NOT_TASK``). A candidate is a task when

  1. it is a *local root*: no parent, or a remote parent (OTLP span flags), or
  2. its parent, its parent's parent... up to a local root are all in the same request
     and none of them is a task of ours or a candidate.

  So a candidate under a task or candidate (an LLM span inside ``phospho.task``, an
  OpenInference CHAIN, a Traceloop ``@workflow``, a Langfuse ``@observe``) is a step of
  that task, never a task itself; one under plain spans (a web server's span without
  ids) is the task when its trace arrives in one request. A candidate whose ancestry is
  not all in its request is *deferred*: not a task yet, and a ``candidate`` span
  annotation (counter ``tasks_deferred``) that ``aggregator.annotations`` resolves
  against the stored trace after each write to that trace: once its ancestry up to a
  local root is stored, the rule above decides on the whole stored trace (a task when
  every ancestor is plain, else a step). So whatever the order the spans of a turn
  arrive in, and however they are split into requests or sent again, the same one task
  per turn comes out once all of them are stored, and a turn is never counted twice
  (within a service, a task never has a task or candidate among its ancestors). Across
  services, each service's local root is its own task. A candidate whose local parent
  never arrives stays deferred.

* **Logfire annotations** (``logfire.experimental.annotations.record_feedback``: a span
  with ``logfire.span_type = "annotation"``, child of the annotated span): never a task
  or a step; a ``feedback`` span annotation (``SpanAnnotationRecord``) of the annotated
  span (its parent), resolved to the task that span is or belongs to by
  ``aggregator.annotations``: flag from the value of attribute
  ``<logfire.feedback.name>`` (``flags.flag_of``), notes ``logfire.feedback.comment``,
  source ``logfire:<name>``. A value that maps to no flag, or an annotation without a
  parent, is counted (``annotations_skipped_invalid``) and skipped.

Session and user ids go on every span row (from whichever convention), so traces can be
found by session or user, whether or not the span is a task.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from typing import Any, NamedTuple

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from phospho_otel.aggregator.conventions import (
    INPUT_KEYS,
    INPUT_MESSAGE_PREFIXES,
    MARKER_KEYS,
    NAME_KEYS,
    NOT_TASK,
    OUTPUT_KEYS,
    OUTPUT_MESSAGE_PREFIXES,
    READ_PREFIXES,
    SESSION_KEYS,
    STREAM_COMPLETION,
    STREAMED_CALL,
    SYSTEM_KEYS,
    USER_KEYS,
    WANTED_KEYS,
    convention_of_scope,
)
from phospho_otel.aggregator.flags import feedback_body, flag_of
from phospho_otel.aggregator.messages import (
    ASSISTANT_ROLES,
    SYSTEM_ROLES,
    USER_ROLES,
    first_text,
    flattened_messages,
    input_texts,
    instructions_text,
    messages_text,
    reply_text,
    system_text,
)
from phospho_otel.model.records import (
    CONVENTION_PHOSPHO,
    TASK_STATUSES,
    Extraction,
    FeedbackRecord,
    Origin,
    SessionEventRecord,
    SpanAnnotationRecord,
    SpanRecord,
    TaskRecord,
)
from phospho_otel.model.rollup import rollup
from phospho_otel.semconv import (
    FeedbackFlagValues,
    IOAttributes,
    PhosphoAttributes,
    SessionAttributes,
    SessionEventNames,
    SpanTypeValues,
    UserAttributes,
)

__all__ = [
    "END_SOURCE_EVENT",
    "END_SOURCE_SDK",
    "MAX_PROBLEMS",
    "MAX_TIME_NS",
    "NON_FINITE",
    "any_value_to_python",
    "extract",
    "foreign_task_id",
    "origin_of",
]

MAX_PROBLEMS = 5
"""Reasons for rejected or skipped spans kept per request (``Extraction.problems``)."""
MAX_TIME_NS = 2**63 - 1
"""The latest span start or end time stored (2262-04-11T23:47:16.854775807Z): a store's
integers are signed 64-bit, OTLP's times unsigned. Later ones are rejected."""
NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
"""``repr`` of a non-finite double -> its text in metadata JSON."""
END_SOURCE_SDK = "end_session"
"""``SessionEventRecord.source`` of an end from a ``session_end`` span of ours (the SDK's
``end_session()``)."""
END_SOURCE_EVENT = "otel_session_event"
"""``SessionEventRecord.source`` of an end from an OpenTelemetry session span event
(``session.end``, or ``session.start`` with ``session.previous_id``) on any other span (a
third-party app's, or an app annotating its own spans)."""

_REMOTE_PARENT = 0x300  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK | ..._IS_REMOTE_MASK
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)

_SPAN_TYPE = PhosphoAttributes.SPAN_TYPE
_TASK_ID = PhosphoAttributes.TASK_ID
_METADATA_PREFIX = PhosphoAttributes.METADATA_PREFIX
_METADATA_PREFIX_LEN = len(_METADATA_PREFIX)
_SERVICE_NAME = "service.name"
_TASK_TYPE = SpanTypeValues.TASK.value
_FEEDBACK_TYPE = SpanTypeValues.FEEDBACK.value
_SESSION_END_TYPE = SpanTypeValues.SESSION_END.value
_SESSION_FEEDBACK_TYPE = SpanTypeValues.SESSION_FEEDBACK.value
_SESSION_ID = SessionAttributes.SESSION_ID
_SESSION_END_EVENT = SessionEventNames.END
_SESSION_START_EVENT = SessionEventNames.START
_PREVIOUS_ID = SessionAttributes.SESSION_PREVIOUS_ID
_LOGFIRE_SPAN_TYPE = "logfire.span_type"
_LOGFIRE_ANNOTATION = "annotation"
_LOGFIRE_FEEDBACK_NAME = "logfire.feedback.name"
_LOGFIRE_FEEDBACK_COMMENT = "logfire.feedback.comment"
_INVALID = {  # span type -> (what it is, in a problem text; its counter)
    _TASK_TYPE: ("task", "tasks_skipped_invalid"),
    _FEEDBACK_TYPE: ("feedback", "feedback_skipped_invalid"),
    _SESSION_END_TYPE: ("session_end", "session_events_skipped_invalid"),
    _SESSION_FEEDBACK_TYPE: ("session_feedback", "session_events_skipped_invalid"),
}


def _status(code: int) -> str:
    return TASK_STATUSES[code] if code < len(TASK_STATUSES) else "unset"


def foreign_task_id(trace_id: bytes, span_id: bytes) -> str:
    """The task id of a task taken from another convention's span."""
    return f"{trace_id.hex()}-{span_id.hex()}"


def any_value_to_python(value: AnyValue) -> object:
    """An OTLP ``AnyValue`` as a strict-JSON Python value: bytes become hex text, a
    non-finite double the string ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else NON_FINITE[repr(number)]
    return getattr(value, which)


def _string(value: AnyValue | None) -> str | None:
    """The value if it is a string AnyValue, else None."""
    if value is not None and value.WhichOneof("value") == "string_value":
        return value.string_value
    return None


class _InvalidSpan(Exception):
    """A task or feedback span of our convention that cannot be used."""


_Attrs = dict[str, "str | AnyValue"]
"""The attributes read from a span: string values as ``str``, others as ``AnyValue``."""


def _optional_string(attrs: _Attrs, key: str) -> str | None:
    value = attrs.get(key)
    if value is None or type(value) is str:
        return value
    raise _InvalidSpan(f"{key} is not a string")


def _required_string(attrs: _Attrs, key: str) -> str:
    value = attrs.get(key)
    if type(value) is str:
        return value
    if value is None:
        raise _InvalidSpan(f"{key} is missing")
    raise _InvalidSpan(f"{key} is not a string")


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _metadata_json(attrs: _Attrs) -> str:
    metadata = {
        key[_METADATA_PREFIX_LEN:]: value if isinstance(value, str) else any_value_to_python(value)
        for key, value in attrs.items()
        if key.startswith(_METADATA_PREFIX)
    }
    if not metadata:
        return "{}"
    return _JSON.encode(metadata)


def _our_task(
    attrs: _Attrs, trace_id: bytes, span_id: bytes, span: Span, service: str
) -> TaskRecord:
    task_id = _required_string(attrs, _TASK_ID)
    if not task_id:
        raise _InvalidSpan(f"{_TASK_ID} is empty")
    return TaskRecord(
        task_id,
        trace_id,
        span_id,
        _optional_string(attrs, SessionAttributes.SESSION_ID) or None,
        _optional_string(attrs, UserAttributes.USER_ID) or None,
        span.name,
        service,
        CONVENTION_PHOSPHO,
        _required_string(attrs, IOAttributes.INPUT_VALUE),
        _optional_string(attrs, IOAttributes.OUTPUT_VALUE),
        _optional_string(attrs, PhosphoAttributes.RAW_INPUT),
        _optional_string(attrs, PhosphoAttributes.RAW_OUTPUT),
        _metadata_json(attrs),
        span.start_time_unix_nano,
        span.end_time_unix_nano,
        _status(span.status.code),
    )


_FLAGS = frozenset(v.value for v in FeedbackFlagValues)


def _our_feedback(attrs: _Attrs, trace_id: bytes, span_id: bytes, end_ns: int) -> FeedbackRecord:
    task_id = _required_string(attrs, _TASK_ID)
    if not task_id:
        raise _InvalidSpan(f"{_TASK_ID} is empty")
    flag = _required_string(attrs, PhosphoAttributes.FEEDBACK_FLAG)
    if flag not in _FLAGS:
        raise _InvalidSpan(
            f"{PhosphoAttributes.FEEDBACK_FLAG}={flag!r} is not one of {sorted(_FLAGS)}"
        )
    return FeedbackRecord(
        trace_id,
        span_id,
        task_id,
        flag,
        _optional_string(attrs, PhosphoAttributes.FEEDBACK_NOTES),
        _optional_string(attrs, PhosphoAttributes.FEEDBACK_SOURCE) or "user",
        end_ns,
    )


def _our_session_event(attrs: _Attrs, span_type: str, trace_id: bytes, span_id: bytes,
                       end_ns: int) -> SessionEventRecord:
    """The record of a ``session_end`` or ``session_feedback`` span of ours."""
    session_id = _required_string(attrs, _SESSION_ID)
    if not session_id:
        raise _InvalidSpan(f"{_SESSION_ID} is empty")
    if span_type == _SESSION_END_TYPE:
        return SessionEventRecord(trace_id, span_id, session_id, "end", None, None,
                                  END_SOURCE_SDK, end_ns)
    flag = _required_string(attrs, PhosphoAttributes.FEEDBACK_FLAG)
    if flag not in _FLAGS:
        raise _InvalidSpan(
            f"{PhosphoAttributes.FEEDBACK_FLAG}={flag!r} is not one of {sorted(_FLAGS)}"
        )
    return SessionEventRecord(
        trace_id, span_id, session_id, "feedback", flag,
        _optional_string(attrs, PhosphoAttributes.FEEDBACK_NOTES),
        _optional_string(attrs, PhosphoAttributes.FEEDBACK_SOURCE) or "user",
        end_ns,
    )


def _first_string(attrs: _Attrs, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if type(value) is str:
            return value
    return None


def _service_name(resource: object) -> str:
    for kv in resource.attributes:  # type: ignore[attr-defined]
        if kv.key == _SERVICE_NAME:
            name = _string(kv.value)
            if name:
                return name
    return "unknown_service"


def origin_of(resource_spans: object, scope_spans: object) -> Origin:
    """The ``origins`` row of one (resource, scope) pair."""
    resource = resource_spans.resource  # type: ignore[attr-defined]
    scope = scope_spans.scope  # type: ignore[attr-defined]
    resource_bytes = resource.SerializeToString(deterministic=True)
    scope_bytes = scope.SerializeToString(deterministic=True)
    resource_url = resource_spans.schema_url  # type: ignore[attr-defined]
    scope_url = scope_spans.schema_url  # type: ignore[attr-defined]
    digest = hashlib.blake2b(digest_size=16)
    for part in (resource_bytes, resource_url.encode(), scope_bytes, scope_url.encode()):
        digest.update(len(part).to_bytes(8, "little"))
        digest.update(part)
    return Origin(
        digest.digest(),
        _service_name(resource),
        resource_bytes,
        resource_url,
        scope_bytes,
        scope_url,
    )


_IO_KEYS = INPUT_KEYS + OUTPUT_KEYS
_MESSAGE_PREFIXES = INPUT_MESSAGE_PREFIXES + OUTPUT_MESSAGE_PREFIXES


def _has_io(attrs: _Attrs) -> bool:
    """Whether a span carries an input or an output of some convention."""
    for key in _IO_KEYS:
        if type(attrs.get(key)) is str:
            return True
    return any(key.startswith(_MESSAGE_PREFIXES) for key in attrs)


def _has_output(attrs: _Attrs) -> bool:
    for key in OUTPUT_KEYS:
        if type(attrs.get(key)) is str:
            return True
    return any(key.startswith(OUTPUT_MESSAGE_PREFIXES) for key in attrs)


_COMPLETION_KEY, _COMPLETION_PREFIX = STREAM_COMPLETION
(_STREAMED_KEY, _STREAMED_VALUE), _STREAMED_OPERATION = STREAMED_CALL


def _is_not_task(attrs: _Attrs, status_code: int) -> bool:
    """Whether a candidate is never a task: a log record sent as a span (but a streamed
    call's completion record), or the span of a streamed call (``conventions``)."""
    for key, value in NOT_TASK:
        if attrs.get(key) == value:
            template = attrs.get(_COMPLETION_KEY)
            return not (type(template) is str and template.startswith(_COMPLETION_PREFIX))
    return (attrs.get(_STREAMED_KEY) == _STREAMED_VALUE and _STREAMED_OPERATION in attrs
            and status_code != Status.STATUS_CODE_ERROR and not _has_output(attrs))


def _foreign_input(attrs: _Attrs,
                   flattened: bool) -> tuple[str | None, str | None, str | None]:
    """``(input text, raw input, system prompt)`` of a span of another convention
    (``flattened``: whether it has flattened message attributes)."""
    raw = _first_string(attrs, INPUT_KEYS)
    text = system = None
    if flattened:
        for prefix in INPUT_MESSAGE_PREFIXES:
            messages = flattened_messages(attrs, prefix)
            if messages:
                text = messages_text(messages, USER_ROLES)
                system = first_text(messages, SYSTEM_ROLES)
                break
    if raw is not None:
        if text is None:
            text, raw_system = input_texts(raw)
            if text is None:
                text = raw
            system = system or raw_system
        elif system is None:
            system = system_text(raw)
    if system is None:
        instructions = _first_string(attrs, SYSTEM_KEYS)
        if instructions is not None:
            system = instructions_text(instructions)
    return text, (raw if raw is not None and raw != text else None), system


def _foreign_output(attrs: _Attrs, flattened: bool) -> tuple[str | None, str | None]:
    """``(output text, raw output)`` of a span of another convention."""
    raw = _first_string(attrs, OUTPUT_KEYS)
    text = None
    for prefix in OUTPUT_MESSAGE_PREFIXES if flattened else ():
        messages = flattened_messages(attrs, prefix)
        if messages:
            text = messages_text(messages, ASSISTANT_ROLES) or messages_text(
                messages, tuple({m.get("role", "") for m in messages}))
            break
    if raw is not None and text is None:
        text = reply_text(raw)
        if text is None:
            text = raw
    return text, (raw if raw is not None and raw != text else None)


def _foreign_convention(attrs: _Attrs, scope_convention: str | None, id_from: str) -> str:
    for key, name in MARKER_KEYS:
        if key in attrs:
            return name
    return scope_convention or id_from


class _ForeignSpan(NamedTuple):
    """A span of another convention that may be a task (``_Extractor.resolve``)."""

    span: Span
    attrs: _Attrs
    trace_id: bytes
    span_id: bytes
    session_id: str | None
    user_id: str | None
    service: str
    convention: str


def _foreign_task(f: _ForeignSpan) -> TaskRecord:
    attrs = f.attrs
    flattened = any(key.startswith(_MESSAGE_PREFIXES) for key in attrs)
    input_text, raw_input, system_prompt = _foreign_input(attrs, flattened)
    output_text, raw_output = _foreign_output(attrs, flattened)
    name = _first_string(attrs, NAME_KEYS) or f.span.name
    metadata = _JSON.encode({"system_prompt": system_prompt}) if system_prompt else "{}"
    span = f.span
    return TaskRecord(
        foreign_task_id(f.trace_id, f.span_id), f.trace_id, f.span_id, f.session_id,
        f.user_id, name, f.service, f.convention, input_text, output_text, raw_input,
        raw_output, metadata, span.start_time_unix_nano, span.end_time_unix_nano,
        _status(span.status.code),
    )


class _Extractor:
    """Collects one request's records, span by span (``extract``)."""

    __slots__ = ("annotations", "counters", "feedback", "groups", "pending", "problems",
                 "rejected", "session_events", "span_count", "span_lists", "tasks")

    def __init__(self) -> None:
        self.groups: list[tuple[Origin, list[SpanRecord]]] = []
        self.tasks: list[TaskRecord] = []
        self.feedback: list[FeedbackRecord] = []
        self.session_events: list[SessionEventRecord] = []
        self.annotations: list[SpanAnnotationRecord] = []
        self.problems: list[str] = []
        self.counters: dict[str, int] = {}
        self.span_count = 0
        self.rejected = 0
        self.span_lists: list[Any] = []
        self.pending: list[_ForeignSpan] = []
        """Foreign task candidates with a local parent, resolved once all is read."""

    def count(self, name: str, problem: str | None = None) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
        if problem is not None and len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)

    def group(self, origin: Origin, spans: Any, scope_name: str = "") -> None:
        """The spans of one (resource, scope)."""
        rows: list[SpanRecord] = []
        self.groups.append((origin, rows))
        self.span_lists.append(spans)
        self.span_count += len(spans)
        service = origin.service_name
        scope_convention = convention_of_scope(scope_name)
        wanted = WANTED_KEYS
        prefixes = READ_PREFIXES
        # This loop runs once per span: a SpanRecord is made with tuple.__new__, without
        # the NamedTuple's Python-level __new__ (about 0.2 µs less per span, measured).
        new_record = tuple.__new__
        for span in spans:
            trace_id = span.trace_id
            span_id = span.span_id
            if (len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE
                    or span_id == _ZERO_SPAN):
                self.rejected += 1
                if len(self.problems) < MAX_PROBLEMS:
                    self.problems.append(
                        f"span {span.name!r} rejected: invalid trace_id or span_id "
                        f"({len(trace_id)} and {len(span_id)} bytes, must be 16 and 8, "
                        "not all zero)"
                    )
                continue
            start_ns = span.start_time_unix_nano
            end_ns = span.end_time_unix_nano
            if start_ns > MAX_TIME_NS or end_ns > MAX_TIME_NS:
                self.reject_time(span.name, start_ns, end_ns)
                continue
            attrs: _Attrs = {}
            for kv in span.attributes:
                key = kv.key
                if key in wanted or key.startswith(prefixes):
                    value = kv.value
                    attrs[key] = (
                        value.string_value
                        if value.WhichOneof("value") == "string_value"
                        else value
                    )
            session_id = user_id = None
            session_from = user_from = ""
            for key, convention in SESSION_KEYS:
                found = attrs.get(key)
                if found and type(found) is str:
                    session_id, session_from = found, convention
                    break
            for key, convention in USER_KEYS:
                found = attrs.get(key)
                if found and type(found) is str:
                    user_id, user_from = found, convention
                    break
            parent = span.parent_span_id
            rows.append(new_record(SpanRecord, (
                trace_id, span_id, parent or None, service, span.name, span.kind,
                start_ns, end_ns, span.status.code,
                session_id, user_id, span.SerializeToString(),
            )))
            span_type = attrs.get(_SPAN_TYPE)
            if span.events and span_type != _SESSION_END_TYPE:
                self.session_end_event(span, session_id, trace_id, span_id)
            if span_type is not None:
                self.ours(span_type, attrs, span, trace_id, span_id, service)
                continue
            if attrs.get(_LOGFIRE_SPAN_TYPE) == _LOGFIRE_ANNOTATION:
                self.logfire_annotation(span, trace_id, span_id, parent)
                continue
            if session_id is None and user_id is None:
                continue  # without ids, not a task: no need to look for its input
            if not _has_io(attrs) or _is_not_task(attrs, span.status.code):
                continue
            candidate = _ForeignSpan(
                span, attrs, trace_id, span_id, session_id, user_id, service,
                _foreign_convention(attrs, scope_convention, session_from or user_from))
            if not parent or (span.flags & _REMOTE_PARENT) == _REMOTE_PARENT:
                self.tasks.append(_foreign_task(candidate))
            else:
                self.pending.append(candidate)

    def reject_time(self, name: str, start_ns: int, end_ns: int) -> None:
        """Reject a span with a time past ``MAX_TIME_NS``."""
        self.rejected += 1
        which = "start_time_unix_nano" if start_ns > MAX_TIME_NS else "end_time_unix_nano"
        self.count("spans_rejected_time",
                   f"span {name!r} rejected: {which}="
                   f"{start_ns if start_ns > MAX_TIME_NS else end_ns} is past 2^63-1 ns "
                   "(2262-04-11T23:47:16Z), the latest time the store holds: a broken clock?")

    def ours(self, span_type: str | AnyValue, attrs: _Attrs, span: Span, trace_id: bytes,
             span_id: bytes, service: str) -> None:
        """A span of our convention: a task, a feedback, or a type we do not know."""
        try:
            if span_type == _TASK_TYPE:
                self.tasks.append(_our_task(attrs, trace_id, span_id, span, service))
            elif span_type == _FEEDBACK_TYPE:
                self.feedback.append(_our_feedback(attrs, trace_id, span_id,
                                                   span.end_time_unix_nano))
            elif span_type == _SESSION_END_TYPE or span_type == _SESSION_FEEDBACK_TYPE:
                self.session_events.append(_our_session_event(
                    attrs, span_type, trace_id, span_id,  # type: ignore[arg-type]  # a str
                    span.end_time_unix_nano))
            else:
                self.count("spans_unknown_type")
        except _InvalidSpan as exc:
            kind, counter = _INVALID[span_type]  # type: ignore[index]  # a known str
            self.count(counter, f"{kind} span {span.name!r} skipped: {exc}")

    def logfire_annotation(self, span: Span, trace_id: bytes, span_id: bytes,
                           parent: bytes) -> None:
        """The feedback annotation of a Logfire annotation span (module doc)."""
        values = {kv.key: kv.value for kv in span.attributes}
        name = _string(values.get(_LOGFIRE_FEEDBACK_NAME)) or ""
        value = values.get(name) if name else None
        flag = flag_of(any_value_to_python(value)) if value is not None else None
        if not parent or flag is None:
            self.count("annotations_skipped_invalid",
                       f"Logfire annotation {span.name!r} skipped: "
                       + ("no annotated (parent) span" if not parent else
                          f"its value {name!r} maps to no success or failure"))
            return
        comment = _string(values.get(_LOGFIRE_FEEDBACK_COMMENT)) or None
        body = feedback_body(flag, comment, f"logfire:{name}")
        self.annotations.append(SpanAnnotationRecord(
            trace_id, parent, span_id, "feedback", _JSON.encode(body),
            span.end_time_unix_nano))
        self.count("annotations_received")

    def session_end_event(self, span: Span, session_id: str | None, trace_id: bytes,
                          span_id: bytes) -> None:
        """The end record of a span's first usable session event, if it has one
        (``session_id``: the span's own, from any convention)."""
        for event in span.events:
            name = event.name
            if name == _SESSION_END_EVENT:
                wanted = _SESSION_ID
            elif name == _SESSION_START_EVENT:
                wanted = _PREVIOUS_ID
            else:
                continue
            named = None
            for kv in event.attributes:
                if kv.key == wanted:
                    named = _string(kv.value) or None
                    break
            if name == _SESSION_START_EVENT:
                if named is None:
                    continue  # a session started, none ended
                ended: str | None = named
            else:
                ended = named or session_id
            time_ns = event.time_unix_nano or span.end_time_unix_nano
            if ended is None:
                self.count("session_events_skipped_invalid",
                           f"{name} event of span {span.name!r} skipped: no "
                           f"{_SESSION_ID} (a string) on the event or the span")
            elif time_ns > MAX_TIME_NS:
                self.count("session_events_skipped_invalid",
                           f"{name} event of span {span.name!r} skipped: "
                           f"time_unix_nano={time_ns} is past 2^63-1 ns")
            else:
                self.session_events.append(SessionEventRecord(
                    trace_id, span_id, ended, "end", None, None, END_SOURCE_EVENT, time_ns))
                return

    def resolve(self) -> None:
        """Which pending candidates (foreign spans with a local parent) are tasks: those
        whose ancestors up to a local root are all in this request and none of them is
        a task or a candidate (see the module doc)."""
        parents: dict[tuple[bytes, bytes], bytes] = {}
        for spans in self.span_lists:
            for span in spans:
                local_root = (not span.parent_span_id
                              or (span.flags & _REMOTE_PARENT) == _REMOTE_PARENT)
                parents[(span.trace_id, span.span_id)] = (
                    b"" if local_root else span.parent_span_id)
        candidates = {(task.trace_id, task.span_id) for task in self.tasks}
        candidates.update((p.trace_id, p.span_id) for p in self.pending)
        for pending in self.pending:
            trace_id = pending.trace_id
            above = parents[(trace_id, pending.span_id)]
            for _ in range(len(parents)):  # a cycle of parent ids ends here
                key = (trace_id, above)
                if key in candidates:
                    break  # a step of that task or candidate
                if key not in parents:
                    self.defer(pending)
                    break
                above = parents[key]
                if not above:
                    self.tasks.append(_foreign_task(pending))
                    break

    def defer(self, candidate: _ForeignSpan) -> None:
        """A candidate whose ancestry leaves the request: decided on the stored trace by
        ``aggregator.annotations`` (module doc)."""
        self.annotations.append(SpanAnnotationRecord(
            candidate.trace_id, candidate.span_id, candidate.span_id, "candidate", "{}",
            candidate.span.end_time_unix_nano))
        self.count("tasks_deferred")

    def result(self) -> Extraction:
        if self.pending:
            self.resolve()
        tasks = self.tasks
        batch_rollup = None
        if tasks and len({task.task_id for task in tasks}) == len(tasks):
            batch_rollup = rollup(tasks)
        return Extraction(self.groups, tasks, self.feedback, self.span_count, self.rejected,
                          self.counters, self.problems, batch_rollup,
                          tuple(self.session_events), tuple(self.annotations))


def extract(
    request: ExportTraceServiceRequest,
    origin_factory: Callable[[Any, Any], Origin] = origin_of,
) -> Extraction:
    """Span records, tasks, feedback and session events of one export request. Never
    raises on bad spans: they are rejected (bad ids) or skipped as tasks, feedback or
    session events (bad attributes) and counted."""
    out = _Extractor()
    for resource_spans in request.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            if scope_spans.spans:
                out.group(origin_factory(resource_spans, scope_spans), scope_spans.spans,
                          scope_spans.scope.name)
    return out.result()
