"""The fast path for the SDK's own spans (``log()`` and ``task()``).

When our ``PhosphoSpanProcessor`` is the only processor on the provider (the usual
case), the SDK's generic ``Span`` object buys us nothing: it validates, under a lock,
attributes we built ourselves, then copies itself into a ``ReadableSpan`` for the
processors. Here the finished ``ReadableSpan`` is built directly and handed to our
processor: about a third of the cost of an SDK span. Everything the SDK would do that
matters is kept: the provider's sampler (decision, attributes, trace state), id
generator, resource and span limits (attribute, event and link counts and the
attributes per event and per link, with the SDK's keep-the-newest rule and its dropped
counts); the session-scope stamping of ``on_start``; W3C parent/child relations
(``TaskSpan`` is the current span inside a task, so spans of any tracer started inside
are its children); exception events and error status exactly as the SDK records them.

The caller takes the ordinary SDK path (``usable()`` is False) while another processor
is on the provider (re-checked whenever the processors change, so that processor sees
every span) and while a tracer configurator disables our tracer. The fast path turns
itself off for good, with one log line, when:

- the installed opentelemetry-sdk is outside the versions ``_otel_compat`` was checked
  against (``CHECKED_SDK_VERSIONS``; info), or its ``Tracer`` lacks a field we read;
- an attribute value length limit is set (``OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT``,
  ``OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT``; debug): cutting every value of our own
  spans would cost what the fast path saves, so such apps get the SDK's own cutting;
- the SDK's span metrics are on (``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``; debug):
  ``Tracer.start_span`` counts spans, so our spans must go through it to be counted;
- the parity self-test (``_parity``), run once before the first fast-path span, finds a
  difference between a fast-path span and an SDK span made with the same calls
  (warning, naming the field);
- building a ``ReadableSpan`` raises (an upstream signature change; warning): that
  ``log()`` span takes the SDK path, and that ``task()`` span is replayed through the
  SDK with the same ids (``_otel_compat.replay_span``). Nothing is raised into the app.

Every OpenTelemetry internal is reached through ``_otel_compat``.
"""

from __future__ import annotations

import copy
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping
from time import time_ns

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, Span, SpanLimits, SpanProcessor, Tracer
from opentelemetry.sdk.trace.sampling import SamplingResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.util import types

from phospho_otel.sdk import _otel_compat as compat
from phospho_otel.sdk._parity import NAME, Probe, difference, probe_context
from phospho_otel.sdk.processor import PhosphoSpanProcessor, stamp_of

__all__ = ["FastPath", "TaskSpan"]

logger = logging.getLogger(__name__)

_UNSET = Status(StatusCode.UNSET)
_INTERNAL = SpanKind.INTERNAL
_TRACE_FLAGS = {  # (sampled, random trace id): the span's flags, as start_span sets them
    (sampled, random_id): TraceFlags(
        (TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
        | (TraceFlags.RANDOM_TRACE_ID if random_id else 0))
    for sampled in (False, True) for random_id in (False, True)
}
_processors_of = compat.span_processors
_UNSEEN = object()
_NO_LIMIT = sys.maxsize
_LAZY = threading.Lock()  # creating a TaskSpan's event or link list


def _never() -> bool:
    return False


def merge_bounded(attributes: dict[str, types.AnyValue],
                  new: Mapping[str, types.AnyValue], limit: int) -> int:
    """Set ``new`` into ``attributes`` one key at a time as the SDK's
    ``BoundedAttributes`` does with ``maxlen=limit``: a key set again moves to the end,
    a new key in a full dict drops the oldest one. Returns how many were dropped."""
    if limit == 0:
        return len(new)
    dropped = 0
    for key, value in new.items():
        if key in attributes:
            del attributes[key]
        elif len(attributes) >= limit:
            del attributes[next(iter(attributes))]
            dropped += 1
        attributes[key] = value
    return dropped


class _Off(Exception):
    """The fast path must stay off: why, and how loudly to say it."""

    def __init__(self, reason: str, level: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.level = level


class _Capture(SpanProcessor):
    """The self-test's SDK-side processor: stamps like ours, keeps the spans."""

    def __init__(self, stamping: PhosphoSpanProcessor, spans: list[ReadableSpan]) -> None:
        self._stamping = stamping
        self._spans = spans

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self._stamping.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._spans.append(span)


class FastPath:
    """Builds our spans without the SDK ``Span`` object when that is safe.

    Args:
        tracer: our SDK tracer.
        processor: our processor: the fast path is used while it is the provider's
            only one.
        self_test: run the parity self-test before the first fast-path span.

    Thread-safe: ``usable``, ``instant`` and ``start`` may be called from any thread.
    """

    def __init__(self, tracer: Tracer, processor: PhosphoSpanProcessor, *,
                 self_test: bool = True) -> None:
        self.tracer = tracer
        self.processor = processor
        self.off_reason: str | None = None
        """Why the fast path turned itself off for good (None while it may be used)."""
        self._deliver: Callable[[ReadableSpan], None] = processor.on_end
        self._self_test = self_test
        self._probing = False
        self._lock = threading.Lock()
        self._seen: object = _UNSEEN  # the processor tuple the last check saw
        self._ok = False
        self._enabled: Callable[[], bool] = _never
        # read from the tracer once (see _use)
        self._limits: SpanLimits | None = None
        self.scope: InstrumentationScope | None = None
        self.max_attributes: int | None = None
        self.max_events: int | None = None
        self.max_links: int | None = None
        self.max_event_attributes: int | None = None
        self.max_link_attributes: int | None = None
        self._room = _NO_LIMIT  # max_attributes, as an int

    # -- when ------------------------------------------------------------------------

    def usable(self) -> bool:
        """True if the next span of ``log()`` / ``task()`` can take the fast path."""
        try:
            processors = _processors_of(self.tracer)
        except AttributeError:
            processors = None
        if processors is not self._seen:  # re-checked when processors are added
            self._refresh(processors)
        return self._ok and self._enabled()

    def _refresh(self, processors: object) -> None:
        with self._lock:
            ok = self._check(processors)
            self._ok = ok  # before _seen: a reader that sees the new tuple sees this
            self._seen = processors

    def _check(self, processors: object) -> bool:
        if self.off_reason is not None:
            return False
        if not isinstance(processors, tuple) or len(processors) != 1 or (
            processors[0] is not self.processor
        ):
            return False  # the SDK path, so that the other processors see our spans
        if self._limits is not None:  # checked (and self-tested) already
            return True
        try:
            parts = self._parts()
            if self._self_test:
                self._verify(parts)
            self._use(parts)
        except _Off as off:
            self._turn_off(off.reason, off.level)
            return False
        except Exception as exc:  # the self-test itself broke: an SDK change
            self._turn_off(f"the parity self-test failed: {exc!r}", logging.WARNING)
            return False
        return True

    def _parts(self) -> compat.TracerParts:
        version = compat.installed_sdk_version()
        if not compat.sdk_version_checked(version):
            raise _Off(f"opentelemetry-sdk {version} is outside the versions it was checked "
                       f"against, {compat.checked_range_text()}", logging.INFO)
        parts = compat.read_tracer(self.tracer)
        if parts is None:
            raise _Off("the tracer lacks a field the fast path reads", logging.INFO)
        limits = parts.limits
        if limits.max_attribute_length is not None or (
            limits.max_span_attribute_length is not None
        ):
            raise _Off("an attribute value length limit is set", logging.DEBUG)
        metrics = compat.span_metrics_enabled(self.tracer)
        if metrics is None:
            raise _Off("cannot tell whether the SDK's span metrics are on", logging.INFO)
        if metrics:
            raise _Off("the SDK's span metrics are on", logging.DEBUG)
        return parts

    def _use(self, parts: compat.TracerParts) -> None:
        limits = parts.limits
        self.max_attributes = limits.max_span_attributes
        self._room = _NO_LIMIT if limits.max_span_attributes is None else (
            limits.max_span_attributes)
        self.max_events = limits.max_events
        self.max_links = limits.max_links
        self.max_event_attributes = limits.max_event_attributes
        self.max_link_attributes = limits.max_link_attributes
        self.scope = parts.scope
        self._enabled = parts.is_enabled
        self._limits = limits

    def _verify(self, parts: compat.TracerParts) -> None:
        """The parity self-test (``_parity``); raises ``_Off`` naming a difference."""
        fast_spans: list[ReadableSpan] = []
        sdk_spans: list[ReadableSpan] = []
        probe = copy.copy(self)  # same tracer; its spans to a list, its errors raised
        probe._use(parts)
        probe._deliver = fast_spans.append
        probe._probing = True
        sdk = compat.probe_tracer(self.tracer, _Capture(self.processor, sdk_spans))
        plan = Probe(parts.limits)
        ctx = probe_context()
        with compat.quiet_probe():
            probe.instant(NAME, plan.attributes(), ctx)
            sdk.start_span(NAME, context=ctx, attributes=plan.attributes()).end()
            fast_task = probe.start(NAME, plan.attributes(), ctx)
            sdk_task = sdk.start_span(NAME, context=ctx, attributes=plan.attributes())
            plan.exercise(fast_task)
            plan.exercise(sdk_task)
            end = time_ns()
            fast_task.end(end)
            sdk_task.end(end)
        found = difference(fast_spans, sdk_spans, with_end=(False, True))
        if found:
            raise _Off(f"the parity self-test found a difference: {found}", logging.WARNING)

    def _turn_off(self, reason: str, level: int) -> None:
        self.off_reason = reason
        self._ok = False
        logger.log(level, "phospho: fast path off (%s); log() and task() spans take the "
                   "ordinary OpenTelemetry SDK path", reason)

    def failed(self, exc: Exception) -> None:
        """Building a span raised: turn the fast path off (the caller recovers the span)."""
        if self._probing:
            raise _Off(f"building a span raised {exc!r}", logging.WARNING) from exc
        with self._lock:
            if self.off_reason is None:
                self._turn_off(f"building a span raised {exc!r}", logging.WARNING)

    # -- how -------------------------------------------------------------------------

    def _context(
        self, name: str, attributes: dict[str, types.AnyValue], parent_ctx: Context,
    ) -> tuple[SpanContext, SpanContext | None, SamplingResult]:
        tracer = self.tracer
        ids = tracer.id_generator
        parent: SpanContext | None = get_current_span(parent_ctx).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = ids.generate_trace_id()
            random_id = ids.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        sampling = tracer.sampler.should_sample(
            parent_ctx, trace_id, name, _INTERNAL, attributes, ()
        )
        sampled = sampling.decision.is_sampled()  # type: ignore[no-untyped-call]  # unannotated in OTel
        context = SpanContext(  # positional: SpanContext(trace_id, span_id, is_remote, ...)
            trace_id,
            ids.generate_span_id(),
            False,
            _TRACE_FLAGS[sampled, bool(random_id)],
            sampling.trace_state,
        )
        return context, parent, sampling

    def _over_limit(self, sampling: SamplingResult, stamp: Mapping[str, types.AnyValue] | None
                    ) -> tuple[dict[str, types.AnyValue], int]:
        """A span's first attributes when the sampler's and the session stamp's are more
        than the span attribute limit (rare): set key by key, as the SDK does; the kept
        ones and how many were dropped."""
        kept: dict[str, types.AnyValue] = {}
        dropped = merge_bounded(kept, sampling.attributes or {}, self._room)
        if stamp:
            dropped += merge_bounded(kept, {k: v for k, v in stamp.items() if k not in kept},
                                     self._room)
        return kept, dropped

    def instant(self, name: str, attributes: dict[str, types.AnyValue],
                parent_ctx: Context | None = None,
                times: tuple[int, int] | None = None) -> SpanContext | None:
        """Record a finished span (``log()``) and return its context; None if it could
        not be built (the fast path is then off: use the SDK path). ``times``: its
        (start, end) ns; by default it starts and ends now."""
        if parent_ctx is None:
            parent_ctx = otel_context.get_current()
        context, parent, sampling = self._context(name, attributes, parent_ctx)
        if sampling.decision.is_recording():  # type: ignore[no-untyped-call]  # unannotated in OTel
            if times is None:
                start = end = time_ns()
            else:
                start, end = times
            # the first attributes: the sampler's, then the session stamp (as on_start);
            # inlined here and in start(): the hot path
            own = dict(sampling.attributes) if sampling.attributes else {}
            stamp = stamp_of(parent_ctx)
            if stamp:
                for key, value in stamp.items():
                    if key not in own:
                        own[key] = value
            try:
                span = compat.instant_span(
                    name, context, parent, self.tracer.resource,
                    own if len(own) <= self._room
                    else compat.counted_attributes(*self._over_limit(sampling, stamp)),
                    start, end, self.scope,
                )
            except Exception as exc:
                self.failed(exc)
                return None
            self._deliver(span)
        return context

    def start(self, name: str, attributes: dict[str, types.AnyValue],
              parent_ctx: Context | None) -> trace.Span:
        """Start a span for ``task()``: a ``TaskSpan``, or a non-recording span when
        the sampler drops it."""
        if parent_ctx is None:
            parent_ctx = otel_context.get_current()
        context, parent, sampling = self._context(name, attributes, parent_ctx)
        if not sampling.decision.is_recording():  # type: ignore[no-untyped-call]  # unannotated in OTel
            return trace.NonRecordingSpan(context)
        own = dict(sampling.attributes) if sampling.attributes else {}
        stamp = stamp_of(parent_ctx)
        if stamp:
            for key, value in stamp.items():
                if key not in own:
                    own[key] = value
        if len(own) <= self._room:
            return TaskSpan(self, name, context, parent, parent_ctx, own, 0)
        return TaskSpan(self, name, context, parent, parent_ctx,
                        *self._over_limit(sampling, stamp))


class TaskSpan(trace.Span):
    """A recording span for ``task()`` that becomes a ``ReadableSpan`` when it ends.

    Implements the whole ``opentelemetry.trace.Span`` interface, with the tracer's span
    limits, so instrumentation that annotates the current span works inside a task.
    Like the SDK's span it may be used from several threads; once ended, further
    changes are ignored.
    """

    def __init__(self, fast: FastPath, name: str, context: SpanContext,
                 parent: SpanContext | None, parent_ctx: Context,
                 attributes: dict[str, types.AnyValue], dropped: int) -> None:
        self._fast = fast
        self._name = name
        self._context = context
        self._parent = parent
        self._parent_ctx = parent_ctx  # for a replay through the SDK
        self._attributes = attributes
        self._dropped = dropped
        self._events: BoundedList[Event] | None = None
        self._links: BoundedList[Link] | None = None
        self._status = _UNSET
        self._start = time_ns()
        self._end: int | None = None

    def _merge(self, new: Mapping[str, types.AnyValue], dropped: int) -> None:
        attributes = self._attributes
        limit = self._fast._room
        size = len(attributes)
        if size + len(new) <= limit:
            attributes.update(new)
            if len(attributes) != size + len(new):  # keys set again move to the end
                for key in new:
                    attributes[key] = attributes.pop(key)
        else:
            with _LAZY:
                dropped += merge_bounded(attributes, new, limit)
        self._dropped += dropped

    def set_own_attributes(self, attributes: dict[str, types.AnyValue]) -> None:
        """Set attributes the SDK built and already validated."""
        if self._end is not None:
            return
        own = self._attributes
        size = len(own)
        if size + len(attributes) > self._fast._room:
            self._merge(attributes, 0)
            return
        own.update(attributes)
        if len(own) != size + len(attributes):  # keys set again move to the end (SDK)
            for key in attributes:
                own[key] = own.pop(key)

    # -- opentelemetry.trace.Span ------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end is None:
            self._merge(*compat.clean_attributes(attributes))

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end is None:
            self._merge(*compat.clean_attribute(key, value))

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._end is not None:
            return
        fast = self._fast
        event = Event(name=name, timestamp=timestamp, attributes=compat.bounded_attributes(
            fast.max_event_attributes, attributes))
        events = self._events
        if events is None:
            with _LAZY:
                if self._events is None:
                    self._events = compat.bounded_list(fast.max_events)
                events = self._events
        events.append(event)

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end is not None or not compat.is_valid_link(context, attributes):
            return
        fast = self._fast
        link = Link(context, compat.bounded_attributes(fast.max_link_attributes, attributes))
        links = self._links
        if links is None:
            with _LAZY:
                if self._links is None:
                    self._links = compat.bounded_list(fast.max_links)
                links = self._links
        links.append(link)

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def is_recording(self) -> bool:
        return self._end is None

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self._status = status
        elif status is not StatusCode.UNSET:
            self._status = Status(status, description)

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        event_attributes: dict[str, types.AnyValue] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins" else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            event_attributes.update(attributes)
        self.add_event("exception", event_attributes, timestamp)

    def end(self, end_time: int | None = None) -> None:
        if self._end is not None:
            return
        end = self._end = end_time if end_time is not None else time_ns()
        fast = self._fast
        events = self._events or ()
        links = self._links or ()
        try:
            span = compat.readable_span(
                self._name, self._context, self._parent, fast.tracer.resource,
                compat.counted_attributes(self._attributes, self._dropped)
                if self._dropped else self._attributes,
                events, links, self._status, self._start, end, fast.scope,
            )
        except Exception as exc:
            fast.failed(exc)
            try:  # the same span (same ids: its children point to it) through the SDK
                compat.replay_span(fast.tracer, self._name, self._context, self._parent_ctx,
                                   self._attributes, list(events), list(links), self._status,
                                   self._start, end)
            except Exception:
                logger.exception("phospho: could not record the task span %r", self._name)
            return
        fast._deliver(span)
