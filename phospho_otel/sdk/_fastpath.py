"""The fast path for the SDK's own spans (``log()`` and ``task()``).

When our ``PhosphoSpanProcessor`` is the only processor on the provider (the usual
case), the SDK's generic ``Span`` object buys us nothing: it validates, under a lock,
attributes we built ourselves, then copies itself into a ``ReadableSpan`` for the
processors. Here the finished ``ReadableSpan`` is built directly and handed to our
processor: about a third of the cost of an SDK span. Everything the SDK would do that
matters is kept: the provider's sampler (decision, attributes, trace state), id
generator, resource and span limits; the session-scope stamping of ``on_start``; W3C
parent/child relations (``TaskSpan`` is the current span inside a task, so spans of any
tracer started inside are its children); exception events and error status exactly as
the SDK records them.

When another processor is present, span limits are not the defaults we can honour, or
the tracer is not an SDK tracer, ``FastPath`` declines and the caller uses the ordinary
SDK path. ``tests/sdk/test_api.py`` checks both paths send the same spans.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.util import types

from phospho_otel.sdk.processor import PhosphoSpanProcessor, scope_attributes

__all__ = ["FastPath", "TaskSpan"]


class FastPath:
    """Builds our spans without the SDK ``Span`` object when that is safe."""

    def __init__(self, tracer: Any, processor: PhosphoSpanProcessor) -> None:
        self.tracer = tracer
        self.processor = processor
        self._seen: object = None  # the processor tuple the last check saw
        self._ok = False

    def usable(self, n_attributes: int) -> bool:
        """True if a span with this many attributes can take the fast path."""
        tracer = self.tracer
        processors = getattr(getattr(tracer, "span_processor", None), "_span_processors", None)
        if processors is not self._seen:  # re-checked when processors are added
            self._seen = processors
            limits = getattr(tracer, "_span_limits", None)
            self._ok = (
                isinstance(processors, tuple)
                and len(processors) == 1
                and processors[0] is self.processor
                and limits is not None
                and getattr(limits, "max_attribute_length", 0) is None
                and hasattr(tracer, "_instrumentation_scope")
                and hasattr(tracer, "_is_enabled")
            )
        if not self._ok or self.processor._shutdown:
            return False
        limit = tracer._span_limits.max_span_attributes
        return (limit is None or n_attributes <= limit) and tracer._is_enabled()

    def _context(
        self, name: str, attributes: dict[str, Any], parent_ctx: otel_context.Context,
        links: Sequence[Link] | None = None,
    ) -> tuple[SpanContext, SpanContext | None, Any]:
        tracer = self.tracer
        parent = trace.get_current_span(parent_ctx).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = tracer.id_generator.generate_trace_id()
            random_id = tracer.id_generator.is_trace_id_random()
        else:
            trace_id = parent.trace_id
            random_id = parent.trace_flags.random_trace_id
        sampling = tracer.sampler.should_sample(
            parent_ctx, trace_id, name, SpanKind.INTERNAL, attributes, links
        )
        flags = TraceFlags.SAMPLED if sampling.decision.is_sampled() else TraceFlags.DEFAULT
        if random_id:
            flags |= TraceFlags.RANDOM_TRACE_ID
        context = SpanContext(
            trace_id,
            tracer.id_generator.generate_span_id(),
            is_remote=False,
            trace_flags=TraceFlags(flags),
            trace_state=sampling.trace_state,
        )
        return context, parent, sampling

    @staticmethod
    def _attributes(sampling: Any, parent_ctx: otel_context.Context) -> dict[str, Any]:
        attributes = dict(sampling.attributes) if sampling.attributes else {}
        stamp = scope_attributes(parent_ctx)
        if stamp:
            for key, value in stamp.items():
                if key not in attributes:
                    attributes[key] = value
        return attributes

    def instant(self, name: str, attributes: dict[str, Any]) -> SpanContext:
        """Record a span that starts and ends now (``log()``); its context."""
        parent_ctx = otel_context.get_current()
        context, parent, sampling = self._context(name, attributes, parent_ctx)
        if sampling.decision.is_recording():
            now = time_ns()
            self.processor.on_end(ReadableSpan(
                name,
                context,
                parent,
                self.tracer.resource,
                self._attributes(sampling, parent_ctx),
                kind=SpanKind.INTERNAL,
                start_time=now,
                end_time=now,
                instrumentation_scope=self.tracer._instrumentation_scope,
            ))
        return context

    def start(
        self, name: str, attributes: dict[str, Any], parent_ctx: otel_context.Context | None
    ) -> trace.Span:
        """Start a span for ``task()``: a ``TaskSpan``, or a non-recording span when
        the sampler drops it."""
        if parent_ctx is None:
            parent_ctx = otel_context.get_current()
        context, parent, sampling = self._context(name, attributes, parent_ctx)
        if not sampling.decision.is_recording():
            return trace.NonRecordingSpan(context)
        return TaskSpan(self, name, context, parent, self._attributes(sampling, parent_ctx))


def _clean(attributes: Mapping[str, types.AnyValue]) -> dict[str, Any]:
    """Attributes from outside, validated as the SDK does (bad ones dropped, warned)."""
    return dict(BoundedAttributes(None, attributes, immutable=False, max_value_len=None))


class TaskSpan(trace.Span):
    """A recording span for ``task()`` that becomes a ``ReadableSpan`` when it ends.

    Implements the whole ``opentelemetry.trace.Span`` interface, so instrumentation
    that annotates the current span works inside a task. Like the SDK's span it may be
    used from several threads; once ended, further changes are ignored.
    """

    def __init__(self, fast: FastPath, name: str, context: SpanContext,
                 parent: SpanContext | None, attributes: dict[str, Any]) -> None:
        self._fast = fast
        self._name = name
        self._context = context
        self._parent = parent
        self._attributes = attributes
        self._events: list[Event] = []
        self._links: list[Link] = []
        self._status = Status(StatusCode.UNSET)
        self._start = time_ns()
        self._end: int | None = None

    def set_own_attributes(self, attributes: dict[str, Any]) -> None:
        """Set attributes the SDK built and already validated."""
        if self._end is None:
            self._attributes.update(attributes)

    # -- opentelemetry.trace.Span ------------------------------------------------------

    def get_span_context(self) -> SpanContext:
        return self._context

    def set_attributes(self, attributes: Mapping[str, types.AnyValue]) -> None:
        if self._end is None:
            self._attributes.update(_clean(attributes))

    def set_attribute(self, key: str, value: types.AnyValue) -> None:
        if self._end is None:
            self._attributes.update(_clean({key: value}))

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._end is None:
            self._events.append(Event(
                name=name,
                attributes=BoundedAttributes(None, attributes, immutable=True,
                                             max_value_len=None),
                timestamp=timestamp,
            ))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(Link(context, BoundedAttributes(
                None, attributes, immutable=True, max_value_len=None)))

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
        event_attributes: dict[str, Any] = {
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
        self._end = end_time if end_time is not None else time_ns()
        fast = self._fast
        fast.processor.on_end(ReadableSpan(
            self._name,
            self._context,
            self._parent,
            fast.tracer.resource,
            self._attributes,
            events=self._events,
            links=self._links,
            kind=SpanKind.INTERNAL,
            status=self._status,
            start_time=self._start,
            end_time=self._end,
            instrumentation_scope=fast.tracer._instrumentation_scope,
        ))
