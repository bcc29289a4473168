"""The store API: what the aggregator writes and what the views, insights and the Jaeger
API read, in our own types. Every backend implements it (``store/sqlite`` today); nothing
here names a database.

A ``Store`` is a ``StoreWriter`` plus ``read()``, which opens a consistent snapshot: a
``StoreReader`` (``ViewReader`` + ``InsightReader`` + ``TraceReader``) whose every call
sees the same state, for the duration of a ``with`` block.

Contracts every backend keeps (``tests/store_conformance`` checks them on each):

* **Durable**: ``write`` returns once the batch would survive a crash; all or nothing.
* **Idempotent**: a span delivered again (same trace and span id) changes nothing; a
  task id logged again keeps the version with the latest ``(end_ns, span_id)``; feedback
  before its task applies when the task arrives; a span annotation delivered again (same
  trace, span and annotation id) is stored once. So any arrival order, any number of
  deliveries, give the same views.
* **Derived extractions** (``Extraction.derived``, written by the aggregator from stored
  spans and annotations): their tasks and feedback are written though no span of theirs
  is new, and a task replaces a stored version with an equal ``(end_ns, span_id)``.
* **Rollups follow ``phospho_otel.model.rollup``**.
* **Threading**: ``write`` from one thread at a time (the aggregator's writer); ``read``,
  ``counters`` and everything on a reader from any thread (a reader from one thread at a
  time). ``close`` once, after the writer has stopped.
* **Bad queries** (an unknown sort key, a search no index can answer) raise
  ``phospho_otel.errors.BadRequest``; a closed store raises ``StoreClosed``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, Protocol, TypeVar, runtime_checkable

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.model.analysis import SessionAnalysis, TaskAnalysis, Usage, UserAnalysis
from phospho_otel.model.records import (
    Extraction,
    SessionEventRecord,
    SpanAnnotationRecord,
    TaskFeedback,
    TaskRecord,
)
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.semconv import SessionAttributes, UserAttributes

__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "MAX_SPANS_PER_SEARCH",
    "MAX_SPANS_PER_TRACE",
    "METADATA_KEY_FORBIDDEN",
    "METADATA_TEXT",
    "SESSION_ANALYSIS_SORTS",
    "SESSION_SORTS",
    "SESSION_TAG",
    "TASK_ANALYSIS_SORTS",
    "TASK_FLAGS",
    "TASK_SORTS",
    "USER_ANALYSIS_SORTS",
    "USER_SORTS",
    "USER_TAG",
    "AnalysisReader",
    "AnalysisStore",
    "AnalysisUpdate",
    "Ending",
    "InsightReader",
    "Listing",
    "Page",
    "PendingAnalysis",
    "SessionFilter",
    "SessionTotals",
    "Store",
    "StoreReader",
    "StoreWriter",
    "StoredOrigin",
    "StoredTrace",
    "TaskFilter",
    "TaskRow",
    "TraceQuery",
    "TraceReader",
    "TraceSpan",
    "UserFacts",
    "UserFilter",
    "UserRow",
    "UserTotals",
    "ViewReader",
    "WriteResult",
]

T = TypeVar("T")


# ----------------------------------------------------------------------------- writing


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one export request did to the store (the OTLP reply is built from it)."""

    spans_received: int = 0
    spans_stored: int = 0
    """Spans newly stored."""
    spans_duplicate: int = 0
    """Spans already stored (a retry): ignored, counted nowhere else."""
    rejected_spans: int = 0
    """Spans that could not be stored (invalid ids): the OTLP partial-success count."""
    tasks_new: int = 0
    tasks_updated: int = 0
    """Tasks whose id was already known, replaced by a later version."""
    feedback_new: int = 0
    skipped_invalid: int = 0
    """Task and feedback spans of our convention skipped for bad attributes (stored as spans)."""
    error_message: str = ""
    """Why spans were rejected or skipped; empty when all went well."""


@runtime_checkable
class StoreWriter(Protocol):
    """Where the aggregator's writer thread writes."""

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        """Store the extracted requests in one durable transaction (group commit), one
        result per request; all or nothing (on an error nothing is kept and it raises)."""
        ...

    def counters(self) -> dict[str, int]:
        """Ingest counters since the store was created (``spans_received``,
        ``spans_duplicate``, ``tasks_skipped_invalid``...)."""
        ...


# ----------------------------------------------------------------------------- views

SESSION_SORTS = ("start_time", "end_time", "task_count", "duration_s", "session_id",
                 "tokens", "cost")
"""Sort keys of the session list. ``tokens`` (input + output) and ``cost`` come from the
analyzer's results (``SESSION_ANALYSIS_SORTS``); a session without the figure sorts as -1
(last when descending)."""
SESSION_ANALYSIS_SORTS = ("tokens", "cost")
"""The session sort keys a backend without insights refuses (``BadRequest``)."""
USER_SORTS = ("last_seen", "first_seen", "task_count", "session_count", "user_id",
              "success_rate", "tokens", "cost")
"""Sort keys of the user list. ``success_rate``, ``tokens`` (input + output) and ``cost``
come from the analyzer's results (``USER_ANALYSIS_SORTS``); a user without the figure
sorts as -1 (last when descending)."""
USER_ANALYSIS_SORTS = ("success_rate", "tokens", "cost")
"""The user sort keys a backend without insights refuses (``BadRequest``)."""
TASK_SORTS = ("start_time", "tokens", "cost")
"""Sort keys of the task list. ``tokens`` and ``cost`` come from the analyzer's results
(``TASK_ANALYSIS_SORTS``), -1 for a task without the figure."""
TASK_ANALYSIS_SORTS = ("tokens", "cost")
"""The task sort keys a backend without insights refuses (``BadRequest``)."""
TASK_FLAGS = ("success", "failure", "none")
"""Values of ``TaskFilter.flag`` (``none``: no feedback)."""
METADATA_TEXT = (
    "a metadata value's text is the string itself for a JSON string, else its JSON text"
    " (3, 1.5, true, false, null): metadata.version=1.0.0 matches \"1.0.0\","
    " metadata.tokens=3 matches 3 and \"3\", metadata.beta=true matches true")
"""The comparison rule of ``TaskFilter.metadata``, as documented to API users."""
METADATA_KEY_FORBIDDEN = frozenset('"\\') | frozenset(chr(c) for c in range(32))
"""Characters a metadata filter key cannot hold (they cannot be named in a JSON path)."""


@dataclass(frozen=True, slots=True)
class Page:
    """Which slice of a list: sort key, direction, size, and where to start.

    ``cursor`` (a previous page's ``Listing.next_cursor``: the last row's sort value and
    id) wins over ``offset``.
    """

    sort: str
    descending: bool = True
    limit: int = 50
    offset: int = 0
    cursor: tuple[Any, str] | None = None


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """Sessions started in ``[from_ns, to_ns)``, optionally of one user, in one state
    (``active``: not analysed yet counts as active) and with one end reason."""

    from_ns: int | None = None
    to_ns: int | None = None
    user_id: str | None = None
    state: str | None = None
    end_reason: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """Only sessions with a task matching every ``(key, value)`` (``TaskFilter.metadata``)."""
    evaluation: str | None = None
    """Only sessions with this session evaluation label (``EVALUATION_LABELS``)."""
    event: str | None = None
    """Only sessions where this event was detected (in a task or the whole session)."""


@dataclass(frozen=True, slots=True)
class UserFilter:
    """Users active in ``[from_ns, to_ns)`` (last seen at or after ``from_ns``, first
    seen before ``to_ns``), optionally one user."""

    from_ns: int | None = None
    to_ns: int | None = None
    user_id: str | None = None
    user_class: str | None = None
    """Only users in this class (``model.analysis.USER_CLASSES``)."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Only users with a task matching every ``(key, value)`` (``TaskFilter.metadata``)."""


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Tasks started in ``[from_ns, to_ns)``, optionally of one user and/or session, with
    one detected event and/or one evaluation label, metadata values, a text in their input
    or output, a feedback flag."""

    from_ns: int | None = None
    to_ns: int | None = None
    user_id: str | None = None
    session_id: str | None = None
    event: str | None = None
    evaluation: str | None = None
    metadata: tuple[tuple[str, str], ...] = ()
    """``(key, value)`` pairs, all required: the task's metadata object has ``key`` and its
    value's text is ``value`` (``METADATA_TEXT``). Keys are checked by the API
    (``METADATA_KEY_FORBIDDEN``)."""
    text: str | None = None
    """A substring of the input or the output, ASCII letters compared case-insensitively
    (other characters exactly)."""
    flag: str | None = None
    """The latest feedback flag: ``success``, ``failure``, or ``none`` (no feedback)."""


class TaskRow(NamedTuple):
    """A stored task: the record it was last logged as, its latest feedback (None
    without), and its place in its session (1-based ``position`` by ``(start_ns,
    task_id)``, and whether it is the last; None without a session)."""

    task: TaskRecord
    feedback: TaskFeedback | None
    position: int | None
    is_last: bool | None


class UserRow(NamedTuple):
    """A user's rollup with figures over their sessions (None when they have none)."""

    rollup: UserRollup
    avg_session_duration_ns: float | None
    avg_tasks_per_session: float | None


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page, ``total`` None when
    not asked for, or not counted: a filter no index answers (metadata, text, flag) over
    more rows than the backend searches per page (see ``searched_to``)."""

    items: list[T]
    total: int | None
    next_cursor: tuple[Any, str] | None
    searched_to: Any = None
    """Set when a filter no index answers (metadata, text, flag) stopped the search
    before the end of the list: the sort value it searched down to (up to, ascending).
    The page then holds the matches found that far, possibly none, and ``next_cursor``
    goes on from there. A backend bounds each page's search this way so that a rare
    match cannot make one request scan the whole store."""


class ViewReader(Protocol):
    """Sessions, users and tasks, by id and as sorted, filtered pages."""

    def data_version(self) -> float:
        """A number that changes with every write: equal numbers, same data."""
        ...

    def list_sessions(self, where: SessionFilter, page: Page) -> Listing[SessionRollup]:
        """One page of sessions, with the total count of the filter."""
        ...

    def get_session(self, session_id: str) -> SessionRollup | None:
        ...

    def session_tasks(self, session_id: str, limit: int, offset: int = 0) -> list[TaskRow]:
        """A session's tasks in order (``position`` ascending)."""
        ...

    def list_users(self, where: UserFilter, page: Page) -> Listing[UserRow]:
        ...

    def get_user(self, user_id: str) -> UserRow | None:
        ...

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRollup]:
        """A user's latest sessions, newest first (by start, then id)."""
        ...

    def user_tasks(self, user_id: str, limit: int) -> list[TaskRow]:
        """A user's latest tasks, newest first (by start, then id)."""
        ...

    def user_activity(self, user_id: str) -> list[tuple[int, int]]:
        """``(UTC day since the epoch, tasks started)`` of each day the user had a task,
        ascending."""
        ...

    def list_tasks(self, where: TaskFilter, page: Page, *,
                   with_total: bool = True) -> Listing[TaskRow]:
        ...

    def get_task(self, task_id: str) -> TaskRow | None:
        ...


# ----------------------------------------------------------------------------- insights


@dataclass(frozen=True, slots=True)
class SessionTotals:
    """Aggregates over the sessions of a filter (None averages when there are none)."""

    session_count: int
    task_count: int
    avg_duration_ns: float | None
    avg_tasks: float | None
    success_count: int
    failure_count: int
    error_count: int


@dataclass(frozen=True, slots=True)
class UserTotals:
    """Aggregates over the users of a filter."""

    user_count: int
    avg_tasks: float | None
    avg_sessions: float | None
    success_count: int
    failure_count: int


class Ending(NamedTuple):
    """Sessions whose last task had this flag, status and input."""

    flag: str | None
    status: str | None
    input: str | None
    sessions: int


class InsightReader(Protocol):
    """Aggregate primitives that ``phospho_otel.insights`` composes into figures."""

    def session_totals(self, where: SessionFilter) -> SessionTotals:
        ...

    def session_lengths(self, where: SessionFilter) -> list[tuple[int, int]]:
        """``(task_count, sessions)`` for each session length, ascending."""
        ...

    def session_durations_at(self, where: SessionFilter, ranks: Sequence[int]) -> list[int]:
        """The session durations (ns) at these 0-based ranks of the ascending order
        (ranks past the end are left out)."""
        ...

    def session_duration_counts(self, where: SessionFilter,
                                edges_ns: Sequence[int]) -> list[int]:
        """How many sessions last ``[edges_ns[i], edges_ns[i + 1])`` nanoseconds, for each
        ``i`` (the last: ``edges_ns[-1]`` or more); ``edges_ns`` ascending from 0."""
        ...

    def sessions_per_day(self, where: SessionFilter) -> list[tuple[int, int]]:
        """``(day, sessions)`` per UTC day (days since the epoch) with any, ascending."""
        ...

    def session_endings(self, where: SessionFilter) -> list[Ending]:
        """The sessions counted by their last task's (flag, status, input), one entry per
        distinct triple, in no particular order."""
        ...

    def user_totals(self, where: UserFilter) -> UserTotals:
        ...

    def user_task_counts(self, where: UserFilter) -> list[int]:
        """Every user's task count, ascending."""
        ...

    def top_users(self, where: UserFilter, limit: int) -> list[UserRow]:
        """The users with the most tasks (ties by user id)."""
        ...


# ----------------------------------------------------------------------------- analysis


class PendingAnalysis(NamedTuple):
    """Work for the analyzer: tasks that are new or changed (a newer version, new
    feedback) and sessions with new session events, since the last ``write_analysis``.
    Hand ``token`` back to ``write_analysis`` with the results: that marks exactly this
    work done (work that arrives meanwhile stays pending)."""

    tasks: list[tuple[str, str | None]]
    """``(task id, session id or None)``."""
    session_ids: list[str]
    token: tuple[int, int]


class UserFacts(NamedTuple):
    """What the user classes are decided from (``insights.classes``); the ``*_in_window``
    figures count from the window's first UTC day (tasks, active days) or instant
    (sessions, by their start)."""

    user_id: str
    first_seen_ns: int | None
    """Start of the user's first task (None without tasks)."""
    last_seen_ns: int | None
    task_count: int
    session_count: int
    tasks_in_window: int
    sessions_in_window: int
    active_days_in_window: int
    """UTC days with at least one task, in the window."""
    evaluated_count: int
    """Tasks evaluated ``success`` or ``failure``."""
    failure_count: int
    sessions_ended: int
    sessions_ended_after_failure: int
    """Ended ``abandoned_after_failure``, ``abandoned_after_error`` or ``frustrated``."""
    rephrase_count: int
    """Tasks evaluated a failure because the next input rephrased them
    (``heuristic:rephrase``)."""
    event_counts: Mapping[str, int]
    """Detected events over the user's tasks, by name."""
    usage: Usage | None = None
    """The analysed usages of all the user's tasks summed, figure by figure (None where no
    task reports it; None altogether when none reports any)."""


@dataclass(frozen=True, slots=True)
class AnalysisUpdate:
    """One transaction of the analyzer's results, and the work it completes."""

    tasks: Sequence[TaskAnalysis] = ()
    sessions: Sequence[SessionAnalysis] = ()
    users: Sequence[UserAnalysis] | None = None
    """When given, the classes of **every** user (users left out have no class)."""
    token: tuple[int, int] | None = None
    """``PendingAnalysis.token`` of the work these results complete."""


class AnalysisReader(Protocol):
    """What the analyzer reads and the views show of its results."""

    def pending_analysis(self, limit: int) -> PendingAnalysis:
        """Up to about ``limit`` items of pending work, oldest first."""
        ...

    def task_analyses(self, task_ids: Iterable[str]) -> dict[str, TaskAnalysis]:
        ...

    def session_analyses(self, session_ids: Iterable[str]) -> dict[str, SessionAnalysis]:
        ...

    def user_analyses(self, user_ids: Iterable[str]) -> dict[str, UserAnalysis]:
        ...

    def session_events(self, session_id: str) -> list[SessionEventRecord]:
        """A session's ends and feedback, by time."""
        ...

    def sessions_idle_since(self, before_ns: int, limit: int) -> list[str]:
        """Active sessions (analysed as active) with no activity since ``before_ns``."""
        ...

    def judge_pending(self, limit: int) -> list[str]:
        """Tasks whose LLM-judge verdict is still to come, oldest first."""
        ...

    def user_facts(self, window_from_ns: int) -> list[UserFacts]:
        """Every user's facts, the window counts from ``window_from_ns`` on."""
        ...

    def latest_activity_ns(self) -> int | None:
        """The latest task end in the store (None when empty)."""
        ...

    def user_days(self) -> list[tuple[str, int]]:
        """``(user_id, UTC day since the epoch)`` of every day each user had a task."""
        ...

    def traces_mentioning(self, trace_ids: Iterable[bytes],
                          keys: Iterable[str]) -> set[bytes]:
        """The traces among ``trace_ids`` with a stored span whose serialized bytes hold
        one of ``keys`` (an attribute key is stored as its UTF-8 text): a cheap first pass
        before decoding traces for what only some spans carry. It may answer a trace
        that does not have the attribute (the text inside a value), never leave out one
        that has."""
        ...

    def event_days(self) -> list[tuple[str, int, int]]:
        """``(event name, UTC day since the epoch, tasks)`` for each day a task with the
        event started, by name then day."""
        ...

    def end_reasons(self, where: SessionFilter, examples: int) -> list[tuple[str, int, list[str]]]:
        """``(end_reason, sessions, up to `examples` session ids, latest first)``."""
        ...

    def success_by_position(self, max_position: int) -> list[tuple[int, int, int, int]]:
        """``(position, success, failure, unknown)`` of tasks by their place in their
        session, the last entry counting every position from ``max_position`` on."""
        ...

    def active_durations(self, where: SessionFilter) -> list[int]:
        """Every ended session's active duration (ns), ascending."""
        ...

    def class_counts(self) -> dict[str, int]:
        """Users in each class."""
        ...


@runtime_checkable
class AnalysisStore(Protocol):
    """A store that keeps the analyzer's results (the SQLite backend does)."""

    def write_analysis(self, update: AnalysisUpdate) -> None:
        """Store the results in one durable transaction and mark their work done."""
        ...


# ----------------------------------------------------------------------------- traces

SESSION_TAG = SessionAttributes.SESSION_ID
"""Trace search tag answered from the spans' session id (any convention's)."""
USER_TAG = UserAttributes.USER_ID
"""Trace search tag answered from the spans' user id (any convention's)."""
DEFAULT_MAX_CANDIDATES = 20_000
"""Most candidate spans examined to match non-indexed tags, per search."""
MAX_SPANS_PER_TRACE = 20_000
"""A trace with more spans is cut (``StoredTrace.truncated``)."""
MAX_SPANS_PER_SEARCH = 200_000
"""A search stops loading traces once it holds this many spans."""


@dataclass(frozen=True, slots=True)
class StoredOrigin:
    """The resource and instrumentation scope spans were sent with, decoded."""

    id: int
    service_name: str
    resource: Resource
    resource_bytes: bytes
    resource_schema_url: str
    scope: InstrumentationScope
    scope_schema_url: str


@dataclass(frozen=True, slots=True)
class TraceSpan:
    """One stored span, as received, with its origin."""

    span: Span
    origin: StoredOrigin


@dataclass(frozen=True, slots=True)
class StoredTrace:
    """All stored spans of one trace (never empty), ordered by start time."""

    trace_id: bytes
    spans: list[TraceSpan]
    truncated: bool = False


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """A trace search. Times and durations are nanoseconds; ``None`` means no bound.

    ``tags`` match span attributes, resource attributes, event attributes and the
    Jaeger-derived tags (``span.kind``, ``error``, ``otel.status_code``...), comparing
    the value's text (``store.tags.attribute_text``). ``limit`` counts traces. A search
    needs a ``service``, a ``session.id`` or a ``user.id`` tag (``is_indexed``).
    """

    service: str | None = None
    operation: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    start_min_ns: int | None = None
    start_max_ns: int | None = None
    duration_min_ns: int | None = None
    duration_max_ns: int | None = None
    limit: int = 20
    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def is_indexed(self) -> bool:
        """True when an index narrows the search (a service, session or user)."""
        return bool(self.service) or SESSION_TAG in self.tags or USER_TAG in self.tags


class TraceReader(Protocol):
    """Spans by trace, trace search, and the service and operation lists."""

    def get_traces(self, trace_ids: Iterable[bytes], *,
                   max_total_spans: int | None = None) -> list[StoredTrace]:
        """The stored traces among ``trace_ids`` (16 raw bytes each), in the order given;
        unknown ids are left out. With ``max_total_spans``, no further trace is loaded
        once that many spans are (the first one always is)."""
        ...

    def find_trace_ids(self, query: TraceQuery) -> list[bytes]:
        """Ids of the traces matching ``query`` (one of their spans matches every
        condition), newest matching span first, at most ``query.limit``. Raises
        ``BadRequest`` when the query is not ``is_indexed``."""
        ...

    def span_annotations(self, trace_ids: Iterable[bytes]) -> list[SpanAnnotationRecord]:
        """The stored span annotations of these traces (each once), in no particular
        order."""
        ...

    def services(self) -> list[str]:
        """Names of the services that sent spans, sorted."""
        ...

    def operations(self, service: str) -> list[tuple[str, int]]:
        """``(span name, OTLP span kind)`` of a service's spans, sorted by name."""
        ...

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        """``(parent service, child service, calls)`` from child spans started in
        ``[start_ns, end_ns]`` whose parent belongs to another service, sorted."""
        ...


# ----------------------------------------------------------------------------- the store


class StoreReader(ViewReader, InsightReader, AnalysisReader, TraceReader, Protocol):
    """Everything a consistent snapshot of the store answers."""


@runtime_checkable
class Store(StoreWriter, Protocol):
    """A store backend: a writer, snapshots to read, and its lifecycle."""

    def read(self) -> AbstractContextManager[StoreReader]:
        """A consistent snapshot for the duration of a ``with`` block."""
        ...

    def close(self) -> None:
        """Release everything; idempotent. Later calls raise ``StoreClosed``."""
        ...
