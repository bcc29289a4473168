"""The module-level API: ``init``, ``log``, ``user_feedback``, ``end_session``, ``flush``,
``shutdown``, ``stats``. One client per process, created by ``init()``.

The rest of the SDK reaches the client through ``current_client()``, ``tracer()`` and
``remember_task()``, never through this module's globals.

Thread-safety: every function may be called from any thread; ``init``/``shutdown``
are serialised by a lock.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import random
import threading
from collections.abc import Callable, Mapping
from time import time_ns
from typing import Any, cast

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, Tracer, TracerProvider
from opentelemetry.trace import Link, SpanContext, SpanKind

from phospho_otel.errors import ConfigurationError
from phospho_otel.sdk._context import SESSION_ID, USER_ID, check_id, current_scope
from phospho_otel.sdk._fastpath import FastPath
from phospho_otel.sdk._serialize import flatten_metadata, raw_json, to_text
from phospho_otel.sdk._settings import Settings, resolve_settings
from phospho_otel.sdk._time import SpanTime, span_times, to_epoch_ns
from phospho_otel.sdk.exporter import make_transport
from phospho_otel.sdk.processor import PhosphoSpanProcessor, ProcessorStats
from phospho_otel.semconv import (
    SEMCONV_VERSION,
    FeedbackFlagValues,
    IOAttributes,
    PhosphoAttributes,
    SessionEventNames,
    SpanTypeValues,
)

__all__ = [
    "Client",
    "LoggedTask",
    "current_client",
    "end_session",
    "flush",
    "init",
    "log",
    "new_task_id",
    "remember_task",
    "shutdown",
    "stats",
    "tracer",
    "user_feedback",
]

logger = logging.getLogger(__name__)

TRACER_NAME = "phospho_otel"
DEFAULT_TASK_NAME = "task"
FEEDBACK_SPAN_NAME = "feedback"
SESSION_END_SPAN_NAME = "session_end"
SESSION_FEEDBACK_SPAN_NAME = "session_feedback"
RECENT_TASKS = 10_000
"""Span contexts of this many recent tasks are kept, to link feedback spans to them."""

_SPAN_TYPE = PhosphoAttributes.SPAN_TYPE
_VERSION_KEY = PhosphoAttributes.SEMCONV_VERSION
_TASK_ID = PhosphoAttributes.TASK_ID
_TASK = SpanTypeValues.TASK.value
_FEEDBACK = SpanTypeValues.FEEDBACK.value
_SESSION_END = SpanTypeValues.SESSION_END.value
_SESSION_FEEDBACK = SpanTypeValues.SESSION_FEEDBACK.value
_FLAGS = frozenset(v.value for v in FeedbackFlagValues)
_MISSING: Any = object()


def new_task_id() -> str:
    """A fresh task id (32 hex digits)."""
    return f"{random.getrandbits(128):032x}"


class LoggedTask:
    """What ``log()`` recorded: the task's id, its session and user, and its span."""

    __slots__ = ("_context", "session_id", "task_id", "user_id")

    def __init__(
        self, task_id: str, session_id: str | None, user_id: str | None, context: SpanContext
    ) -> None:
        self.task_id = task_id
        self.session_id = session_id
        self.user_id = user_id
        self._context = context

    @property
    def span_context(self) -> SpanContext:
        return self._context

    @property
    def trace_id(self) -> str:
        """The task span's trace id, 32 hex digits."""
        return trace.format_trace_id(self._context.trace_id)

    @property
    def span_id(self) -> str:
        """The task span's id, 16 hex digits."""
        return trace.format_span_id(self._context.span_id)

    def __repr__(self) -> str:
        return (
            f"LoggedTask(task_id={self.task_id!r}, session_id={self.session_id!r}, "
            f"user_id={self.user_id!r}, trace_id={self.trace_id!r})"
        )


class Client:
    """What ``init()`` set up: settings, provider, our processor and tracer, and the
    fast path (None when the provider gives a tracer that is not the SDK's)."""

    def __init__(
        self,
        settings: Settings,
        provider: TracerProvider,
        processor: PhosphoSpanProcessor,
        owns_provider: bool,
    ) -> None:
        self.settings = settings
        self.provider = provider
        self.processor = processor
        self.owns_provider = owns_provider
        self.tracer = provider.get_tracer(TRACER_NAME, _package_version())
        self.fast = (FastPath(self.tracer, processor) if isinstance(self.tracer, Tracer)
                     else None)


_lock = threading.Lock()
_client: Client | None = None
# the client shut down last: stats() after shutdown() are its processor's, and spans of
# log()/task()/user_feedback() after shutdown() go to its tracer, where its processor
# counts them as dropped
_last_client: Client | None = None
_atexit_registered = False
# task id -> span context of its task span, most recent last (bounded)
_recent: dict[str, SpanContext] = {}


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("phospho-otel")
    except Exception:
        return "0"


def current_client() -> Client | None:
    """The client ``init()`` set up, or None before ``init()`` / after ``shutdown()``."""
    return _client


def remember_task(task_id: str, context: SpanContext) -> None:
    """Keep the span context of a task span, for feedback spans to link to (the last
    ``RECENT_TASKS`` tasks)."""
    recent = _recent
    recent[task_id] = context
    if len(recent) > RECENT_TASKS:
        try:
            del recent[next(iter(recent))]
        except (KeyError, RuntimeError, StopIteration):  # a concurrent eviction won
            pass


def task_span_context(task_id: str) -> SpanContext | None:
    """The span context of a recent task of this process, if known."""
    return _recent.get(task_id)


def tracer() -> trace.Tracer:
    """Our tracer: the client's; after ``shutdown()`` the last client's (its shut-down
    processor counts the spans as dropped); the global provider's before ``init()``."""
    client = _client or _last_client
    if client is not None:
        return client.tracer
    return trace.get_tracer(TRACER_NAME)


def _add_processor_keeping_others(provider: TracerProvider, processor: SpanProcessor) -> None:
    """Add ``processor`` to a provider without removing any of the app's: some
    providers' ``add_span_processor`` drops their own exporting processor unless told not
    to (Phoenix's ``phoenix.otel.register`` provider, ``replace_default_processor=True`` by
    default, which would leave the app's Phoenix without spans); when the method takes
    that keyword, we pass ``False``."""
    add: Callable[..., None] = provider.add_span_processor
    try:
        keywords = set(inspect.signature(add).parameters)
    except (TypeError, ValueError):  # a builtin or C method: no such keyword
        keywords = set()
    if "replace_default_processor" in keywords:
        add(processor, replace_default_processor=False)
    else:
        add(processor)


def _takes_processors(provider: object) -> bool:
    """Whether a global provider that is not the SDK's takes span processors as the SDK's
    does (Logfire's ``ProxyTracerProvider`` around an SDK provider): ``init()`` then
    attaches to it. A new global provider cannot be set over one already set, and the
    app's instrumentations would keep using the first: our processor would get nothing."""
    return callable(getattr(provider, "add_span_processor", None)) and hasattr(
        provider, "resource")


def init(
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    compression: str | None = None,
    service_name: str | None = None,
    tracer_provider: TracerProvider | None = None,
    timeout_s: float | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_s: float | None = None,
    max_attribute_bytes: int | None = None,
    max_request_bytes: int | None = None,
) -> None:
    """Start exporting tasks (and every other span of the app) over OTLP.

    Each argument falls back to its environment variable, then to a default:

    - ``endpoint``: collector base URL (``/v1/traces`` appended for HTTP);
      ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (used as is) or
      ``OTEL_EXPORTER_OTLP_ENDPOINT``; default ``http://localhost:4318`` (HTTP) or
      ``http://localhost:4317`` (gRPC).
    - ``protocol``: ``"http/protobuf"`` (default) or ``"grpc"``;
      ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL``.
    - ``headers``: sent with every export; ``OTEL_EXPORTER_OTLP_(TRACES_)HEADERS``.
    - ``compression``: ``"none"`` (default) or ``"gzip"``;
      ``OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION``.
    - ``service_name``: the resource's ``service.name``; ``OTEL_SERVICE_NAME``.
    - ``tracer_provider``: an SDK ``TracerProvider`` to attach to; by default the
      global one if it is an SDK provider or takes span processors as one (Logfire's),
      else a new one that becomes global.
    - ``max_queue_size`` (``PHOSPHO_MAX_QUEUE_SIZE``, 100,000 spans),
      ``max_attribute_bytes`` (``PHOSPHO_MAX_ATTRIBUTE_BYTES``, 64 KiB),
      ``max_export_batch_size`` (512), ``schedule_delay_s`` (0.2), ``timeout_s`` (10:
      per request, and for the flush at interpreter exit), ``max_request_bytes`` (3 MiB).

    Calling ``init()`` again while initialised does nothing (a warning if the arguments
    differ); call ``shutdown()`` first to re-initialise. Raises ``ConfigurationError``
    (a ``ValueError``) for an unusable argument, including an endpoint that cannot be
    used (the message names it). Does not connect: a collector that is not up yet is
    fine, spans wait in the queue.
    """
    global _client, _atexit_registered
    # every parameter but tracer_provider is a setting (_settings.Settings, same names)
    arguments = {name: value for name, value in locals().items() if name != "tracer_provider"}
    settings = resolve_settings(arguments)
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise ConfigurationError(
            "tracer_provider must be an opentelemetry.sdk.trace.TracerProvider, "
            f"got {type(tracer_provider).__name__}"
        )
    with _lock:
        if _client is not None:
            if _client.settings != settings or (
                tracer_provider is not None and tracer_provider is not _client.provider
            ):
                logger.warning(
                    "phospho: init() called again with other settings; ignored "
                    "(call phospho_otel.shutdown() first to re-initialise)"
                )
            return
        owns = False
        provider = tracer_provider
        if provider is None:
            current = trace.get_tracer_provider()
            if isinstance(current, TracerProvider) or _takes_processors(current):
                provider = cast(TracerProvider, current)  # or duck-typed (Logfire's)
            else:
                attributes = {SERVICE_NAME: settings.service_name} if settings.service_name else {}
                provider = TracerProvider(resource=Resource.create(attributes))
                trace.set_tracer_provider(provider)
                owns = True
        if settings.service_name and not owns:
            existing = provider.resource.attributes.get(SERVICE_NAME)
            if existing != settings.service_name:
                logger.warning(
                    "phospho: the tracer provider's resource has service.name=%r; "
                    "service_name=%r cannot be applied to an existing provider",
                    existing, settings.service_name,
                )
        transport = make_transport(
            settings.protocol, settings.endpoint, settings.headers, settings.compression
        )
        processor = PhosphoSpanProcessor(
            transport,
            max_queue_size=settings.max_queue_size,
            max_export_batch_size=settings.max_export_batch_size,
            schedule_delay_s=settings.schedule_delay_s,
            max_attribute_bytes=settings.max_attribute_bytes,
            max_request_bytes=settings.max_request_bytes,
            timeout_s=settings.timeout_s,
        )
        _add_processor_keeping_others(provider, processor)
        if _last_client is not None:  # it may still be on this provider: not its spans
            _last_client.processor.retire()
        _client = Client(settings, provider, processor, owns)
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
    logger.debug("phospho: exporting to %s over %s", settings.endpoint, settings.protocol)


def _resolve_ids(session_id: str | None, user_id: str | None) -> tuple[str | None, str | None]:
    """Check the given ids; fill the missing ones from the enclosing session scope."""
    check_id("session_id", session_id)
    check_id("user_id", user_id)
    scope = current_scope()
    if scope is not None:
        if session_id is None:
            session_id = scope.session_id
        if user_id is None:
            user_id = scope.user_id
    return session_id, user_id


def task_attributes(
    input: Any,
    *,
    output: Any = None,
    raw_input: Any = None,
    raw_output: Any = None,
    metadata: Mapping[str, Any] | None,
    task_id: str,
    session_id: str | None,
    user_id: str | None,
) -> dict[str, Any]:
    """The attributes of a task span (see ``docs/semantic-conventions.md``)."""
    text, mime = to_text(input)
    attributes: dict[str, Any] = {
        _SPAN_TYPE: _TASK,
        _VERSION_KEY: SEMCONV_VERSION,
        _TASK_ID: task_id,
        IOAttributes.INPUT_VALUE: text,
        IOAttributes.INPUT_MIME_TYPE: mime,
    }
    if session_id is not None:
        attributes[SESSION_ID] = session_id
    if user_id is not None:
        attributes[USER_ID] = user_id
    if raw_input is None and not isinstance(input, str):
        raw_input = input
    if raw_input is not None:
        attributes[PhosphoAttributes.RAW_INPUT] = raw_json(raw_input)
    if output is not None:
        attributes.update(output_attributes(output, raw_output))
    elif raw_output is not None:
        attributes[PhosphoAttributes.RAW_OUTPUT] = raw_json(raw_output)
    if metadata:
        attributes.update(flatten_metadata(metadata))
    return attributes


def output_attributes(output: Any, raw_output: Any = None) -> dict[str, Any]:
    """``output.value``, its MIME type and ``phospho.raw_output`` for an output."""
    text, mime = to_text(output)
    attributes: dict[str, Any] = {
        IOAttributes.OUTPUT_VALUE: text,
        IOAttributes.OUTPUT_MIME_TYPE: mime,
    }
    if raw_output is None and not isinstance(output, str):
        raw_output = output
    if raw_output is not None:
        attributes[PhosphoAttributes.RAW_OUTPUT] = raw_json(raw_output)
    return attributes


def check_task_args(
    input: Any, metadata: Any, task_id: Any, name: Any
) -> None:
    """Raise ``TypeError``/``ValueError`` for bad ``log()``/``task()`` arguments."""
    if input is _MISSING or input is None:
        raise ValueError("input is required (the task's input, e.g. the user's message)")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    if task_id is not None and (not isinstance(task_id, str) or not task_id):
        raise TypeError(f"task_id must be a non-empty str or None, got {task_id!r}")
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError(f"name must be a non-empty str or None, got {name!r}")


def log(
    input: Any = _MISSING,
    output: Any = None,
    *,
    raw_input: Any = None,
    raw_output: Any = None,
    metadata: Mapping[str, Any] | None = None,
    task_id: str | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    name: str | None = None,
    start_time: SpanTime | None = None,
    end_time: SpanTime | None = None,
) -> LoggedTask:
    """Record one task (one operation of the LLM app) as one span, and return it.

    Args:
        input: what the task was given; required. Non-string values become text by the
            text rule (``phospho_otel.sdk._serialize``) and are kept whole in
            ``phospho.raw_input`` unless ``raw_input`` is given.
        output: what it produced (optional; same rule, kept in ``phospho.raw_output``).
        raw_input / raw_output: raw payloads, stored as JSON text.
        metadata: each key ``k`` becomes ``phospho.metadata.<k>``.
        task_id: kept exactly when given; generated otherwise.
        session_id / user_id: default to the enclosing ``session(...)`` scope's.
        name: the span's name (operation name in trace viewers); ``"task"`` by default.
        start_time / end_time: when the task started and ended (to backfill history or
            replay it): a ``datetime`` (aware; a naive one is taken as UTC) or an int of
            ns since the epoch. Neither: the span starts and ends now. Only one: the
            span starts and ends then (zero duration). ``TypeError`` for another type
            (bools and floats included), ``ValueError`` if the end is before the start.

    The span is a child of the current span, if any. Returns at once: export happens in
    the background.
    """
    check_task_args(input, metadata, task_id, name)
    times = (None if start_time is None and end_time is None
             else span_times(start_time, end_time))
    if task_id is None:
        task_id = new_task_id()
    session_id, user_id = _resolve_ids(session_id, user_id)
    attributes = task_attributes(
        input,
        output=output,
        raw_input=raw_input,
        raw_output=raw_output,
        metadata=metadata,
        task_id=task_id,
        session_id=session_id,
        user_id=user_id,
    )
    client = _client
    fast = client.fast if client is not None else None
    context = None
    if fast is not None and fast.usable():
        context = fast.instant(name or DEFAULT_TASK_NAME, attributes, None, times)
    if context is None:  # the ordinary SDK path
        if times is None:
            span = tracer().start_span(name or DEFAULT_TASK_NAME, kind=SpanKind.INTERNAL,
                                       attributes=attributes)
            span.end()
        else:
            span = tracer().start_span(name or DEFAULT_TASK_NAME, kind=SpanKind.INTERNAL,
                                       attributes=attributes, start_time=times[0])
            span.end(end_time=times[1])
        context = span.get_span_context()
    remember_task(task_id, context)
    return LoggedTask(task_id, session_id, user_id, context)


def _check_feedback_args(flag: Any, notes: Any, source: Any, metadata: Any) -> str:
    """Raise for bad ``user_feedback()`` arguments; the flag's value."""
    flag_value = flag.value if isinstance(flag, FeedbackFlagValues) else flag
    if flag_value not in _FLAGS:
        raise ValueError(f"flag must be 'success' or 'failure', got {flag!r}")
    if notes is not None and not isinstance(notes, str):
        raise TypeError(f"notes must be a str or None, got {type(notes).__name__}")
    if not isinstance(source, str) or not source:
        raise TypeError(f"source must be a non-empty str, got {source!r}")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    return str(flag_value)


def _instant_span(name: str, attributes: dict[str, Any], time: int | None,
                  links: list[Link] | None = None, event: str | None = None,
                  event_attributes: dict[str, Any] | None = None) -> None:
    """Record a span that starts and ends at ``time`` (now when None) through the
    ordinary SDK path, with an optional event at that time."""
    span = tracer().start_span(name, kind=SpanKind.INTERNAL, attributes=attributes,
                               links=links, start_time=time)
    if event is not None:
        span.add_event(event, event_attributes, timestamp=time)
    span.end(end_time=time)


def user_feedback(
    task_id: str | None = None,
    flag: str = "success",
    notes: str | None = None,
    source: str = "user",
    *,
    metadata: Mapping[str, Any] | None = None,
    session_id: str | None = None,
    user_id: str | None = None,
    at: SpanTime | None = None,
) -> None:
    """Attach feedback to a task, or to a whole session, after the fact, from any
    process.

    - ``user_feedback(task_id, flag)``: a feedback span (``phospho.span.type="feedback"``)
      naming the task by ``phospho.task.id``; when this process logged the task
      recently, the span also links to the task's span. ``session_id`` / ``user_id``
      (default: the enclosing ``session(...)`` scope's) go on the span too.
    - ``user_feedback(session_id=..., flag=...)`` without a task id: feedback on the
      whole session, a ``session_feedback`` span with ``session.id``. The session must
      be named explicitly: an enclosing ``session(...)`` scope's id is never taken for
      it (a forgotten ``task_id`` must not become feedback on the whole session).

    ``flag`` is ``"success"`` or ``"failure"``; ``source`` says who gave it (``"user"``,
    ``"owner"``, an evaluator's name...); ``at`` is when it was given (a ``datetime``, a
    naive one taken as UTC, or an int of ns since the epoch; now by default). Neither a
    task id nor a session id: ``TypeError``.
    """
    if task_id is None:
        if session_id is None:
            raise TypeError(
                "user_feedback() needs a task_id (feedback on one task) or session_id= "
                "(feedback on a whole session)"
            )
    elif not isinstance(task_id, str) or not task_id:
        raise TypeError(f"task_id must be a non-empty str, got {task_id!r}")
    flag_value = _check_feedback_args(flag, notes, source, metadata)
    time = None if at is None else to_epoch_ns("at", at)
    session_id, user_id = _resolve_ids(session_id, user_id)
    attributes: dict[str, Any] = {
        _SPAN_TYPE: _FEEDBACK if task_id is not None else _SESSION_FEEDBACK,
        _VERSION_KEY: SEMCONV_VERSION,
    }
    if task_id is not None:
        attributes[_TASK_ID] = task_id
    attributes[PhosphoAttributes.FEEDBACK_FLAG] = flag_value
    attributes[PhosphoAttributes.FEEDBACK_SOURCE] = source
    if notes is not None:
        attributes[PhosphoAttributes.FEEDBACK_NOTES] = notes
    if session_id is not None:
        attributes[SESSION_ID] = session_id
    if user_id is not None:
        attributes[USER_ID] = user_id
    if metadata:
        attributes.update(flatten_metadata(metadata))
    if task_id is None:
        _instant_span(SESSION_FEEDBACK_SPAN_NAME, attributes, time)
        return
    context = _recent.get(task_id)
    links = [Link(context, {_TASK_ID: task_id})] if context is not None else None
    _instant_span(FEEDBACK_SPAN_NAME, attributes, time, links)


def end_session(
    session_id: str | None = None,
    *,
    user_id: str | None = None,
    at: SpanTime | None = None,
) -> None:
    """Mark a session as ended (the user closed the chat, the app knows it is over), from
    any process.

    Records a ``session_end`` span (``phospho.span.type="session_end"``) with
    ``session.id`` (and ``user.id`` when known) carrying a ``session.end`` span event
    (the OpenTelemetry session event) with ``session.id``. ``session_id`` / ``user_id``
    default to the enclosing ``session(...)`` scope's; no session id: ``ValueError``.
    ``at`` is when it ended (a ``datetime``, a naive one taken as UTC, or an int of ns
    since the epoch; now by default). The aggregator ends the session then, with end
    reason ``explicit`` unless its evidence says more; a later task reopens it.
    """
    time = None if at is None else to_epoch_ns("at", at)
    session_id, user_id = _resolve_ids(session_id, user_id)
    if session_id is None:
        raise ValueError(
            "end_session() needs a session: pass session_id, or call it inside "
            "a phospho.session(...) scope"
        )
    attributes: dict[str, Any] = {
        _SPAN_TYPE: _SESSION_END,
        _VERSION_KEY: SEMCONV_VERSION,
        SESSION_ID: session_id,
    }
    if user_id is not None:
        attributes[USER_ID] = user_id
    if time is None:
        time = time_ns()  # the span and its event at the same instant
    _instant_span(SESSION_END_SPAN_NAME, attributes, time, None, SessionEventNames.END,
                  {SESSION_ID: session_id})


def flush(timeout_s: float = 10.0) -> bool:
    """Export every span ended so far; True if all went out within ``timeout_s``."""
    client = _client
    if client is None:
        return True
    return client.processor.force_flush(int(timeout_s * 1000))


def shutdown(timeout_s: float = 10.0) -> None:
    """Flush for up to ``timeout_s``, then stop exporting; returns within ``timeout_s``
    (plus a quarter of a second) even when the collector never answers: a request still
    in flight is aborted, and what was not sent is counted in ``stats().dropped``.
    Spans that end afterwards (``log()``, ``task()``, any tracer's) are not exported:
    they are counted as dropped, with one warning per process. ``init()`` may be called
    again afterwards.

    Also runs at interpreter exit, with the ``timeout_s`` given to ``init()`` (the
    export timeout, 10 s by default) as its budget."""
    global _client, _last_client
    with _lock:
        client, _client = _client, None
        if client is not None:
            _last_client = client
    if client is not None:
        client.processor.shutdown(timeout_s)


def forget() -> None:
    """Shut down and forget the last client too, as if ``init()`` never ran (for
    ``testing.reset``)."""
    global _last_client
    shutdown(0)
    with _lock:
        if _last_client is not None:
            _last_client.processor.retire()
        _last_client = None


def _shutdown_at_exit() -> None:
    """The atexit hook: ``shutdown()`` within the client's export timeout."""
    client = _client
    if client is not None:
        shutdown(client.settings.timeout_s)


def stats() -> ProcessorStats:
    """Counters of the export pipeline since ``init()`` (after ``shutdown()``: its final
    counters, and the spans that ended after it, until the next ``init()``; zeros
    before any ``init()``)."""
    client = _client or _last_client
    if client is None:
        return ProcessorStats(exported=0, dropped=0, failed=0, queued=0, retries=0, truncated=0)
    return client.processor.stats()


def current_settings() -> Settings | None:
    """The settings ``init()`` resolved, or None before ``init()``."""
    client = _client
    return None if client is None else client.settings
