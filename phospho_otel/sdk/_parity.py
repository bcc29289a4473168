"""The fast path's parity self-test: the same calls made on a fast-path span and on an
SDK span must give the same ``ReadableSpan``.

``FastPath`` runs it once, the first time it could be used (not in ``init()``), with
spans that are never exported: the fast path's go to a list instead of our processor,
the SDK's come from a copy of the tracer whose only processor stamps the session scope
(as ours does) and keeps them (``_otel_compat.probe_tracer``). On any difference the
fast path stays off and one warning names the field.

The probe is a ``log()``-like instant span and a ``task()``-like span under a remote
parent inside a session scope, given attributes (one set twice), events with
attributes, links with attributes, an exception, an error status and a new name. Where
a span limit is small (as set with ``OTEL_SPAN_EVENT_COUNT_LIMIT=2`` and the like) the
probe goes one past it, so the dropped counts are compared too; the SDK's warnings about
it are kept out of the logs (``quiet_probe``). Compared: name, kind, trace and parent
ids, trace flags and state, attributes (in order), events (name, time, attributes,
dropped attributes), links (context, attributes, dropped attributes), the dropped
attribute, event and link counts, status, resource, instrumentation scope and end time.
Start times differ by construction and are not compared.

The probe calls the provider's sampler (with a sampled remote parent, so parent-based
samplers sample); a sampler that decides at random may let only one of the two probe
spans through, and the fast path then stays off: slower, still correct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits
from opentelemetry.trace import SpanContext, Status, StatusCode, TraceFlags, TraceState

from phospho_otel.sdk._context import SCOPE_KEY, Scope

__all__ = ["NAME", "Probe", "difference", "probe_context"]

NAME = "phospho-parity-probe"
_TRACE_ID = 0x5048_4F53_5048_4F5F_5041_5249_5459_0001
_SMALL = 4  # limits up to this are probed one past; larger ones are not reached


def probe_context() -> Context:
    """A context with a remote sampled parent span and a session scope, built from an
    empty context (not the caller's)."""
    parent = SpanContext(_TRACE_ID, 0x0B0E, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED),
                         trace_state=TraceState([("phospho", "probe")]))
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(parent), Context())
    scope = Scope("probe-session", "probe-user", {"probe": 1})
    return otel_context.set_value(SCOPE_KEY, scope, ctx)


def _count(limit: int | None, default: int) -> int:
    return limit + 1 if limit is not None and limit <= _SMALL else default


class Probe:
    """The calls of the probe, sized for the tracer's span limits."""

    def __init__(self, limits: SpanLimits) -> None:
        span_limit = limits.max_span_attributes
        self.extra_attributes = (span_limit + 1 if span_limit is not None and span_limit <= 16
                                 else 2)
        self.events = _count(limits.max_events, 2)
        self.event_attributes = _count(limits.max_event_attributes, 2)
        self.links = _count(limits.max_links, 2)
        self.link_attributes = _count(limits.max_link_attributes, 2)

    @staticmethod
    def attributes() -> dict[str, Any]:
        """The attributes a probe span starts with."""
        return {"phospho.span.type": "task", "input.value": "probe", "probe.n": 1}

    def exercise(self, span: trace.Span) -> None:
        """Every call the probe makes on a started span, before it ends."""
        span.set_attribute("probe.list", ["a", "b"])
        span.set_attributes({f"probe.extra.{i}": i for i in range(self.extra_attributes)})
        span.set_attribute("probe.list", ("c",))  # set again: moves to the end
        for i in range(self.events):
            span.add_event(f"probe-event-{i}",
                           {f"k{j}": j for j in range(self.event_attributes)},
                           timestamp=1_000 + i)
        for i in range(self.links):
            linked = SpanContext(_TRACE_ID + 1 + i, 0x1000 + i, is_remote=True,
                                 trace_flags=TraceFlags(TraceFlags.SAMPLED))
            span.add_link(linked, {f"l{j}": str(j) for j in range(self.link_attributes)})
        span.add_link(trace.INVALID_SPAN_CONTEXT)  # invalid and bare: not kept
        span.record_exception(ValueError("probe"), {"probe": True}, timestamp=2_000)
        span.set_status(Status(StatusCode.ERROR, "probe"))
        span.update_name(NAME + "-renamed")


def _context_fields(context: SpanContext | None) -> tuple[Any, ...] | None:
    if context is None:
        return None
    return (context.trace_id, context.is_remote, int(context.trace_flags),
            context.trace_state.to_header())


def _parent_fields(context: SpanContext | None) -> tuple[Any, ...] | None:
    fields = _context_fields(context)
    return None if fields is None or context is None else (*fields, context.span_id)


def _fields(span: ReadableSpan, with_end: bool) -> list[tuple[str, Callable[[], Any]]]:
    return [
        ("name", lambda: span.name),
        ("kind", lambda: span.kind),
        ("context", lambda: _context_fields(span.context)),
        ("parent", lambda: _parent_fields(span.parent)),
        ("attributes", lambda: list((span.attributes or {}).items())),
        ("dropped attributes", lambda: span.dropped_attributes),
        ("events", lambda: [(e.name, e.timestamp, list((e.attributes or {}).items()),
                             e.dropped_attributes) for e in span.events]),
        ("dropped events", lambda: span.dropped_events),
        ("links", lambda: [(_context_fields(link.context), link.context.span_id,
                            list((link.attributes or {}).items()), link.dropped_attributes)
                           for link in span.links]),
        ("dropped links", lambda: span.dropped_links),
        ("status", lambda: (span.status.status_code, span.status.description)),
        ("resource", lambda: span.resource),
        ("instrumentation scope", lambda: span.instrumentation_scope),
        ("end time", lambda: span.end_time if with_end else None),
    ]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 160 else text[:157] + "..."


def difference(fast: Sequence[ReadableSpan], sdk: Sequence[ReadableSpan],
               with_end: Sequence[bool]) -> str | None:
    """The first field that differs between the fast path's probe spans and the SDK's
    (``with_end``: whether each pair's end times must match), or None."""
    if len(fast) != len(sdk):
        return f"span count: fast path {len(fast)} != SDK {len(sdk)}"
    for fast_span, sdk_span, end in zip(fast, sdk, with_end, strict=True):
        for (field, fast_value), (_, sdk_value) in zip(
            _fields(fast_span, end), _fields(sdk_span, end), strict=True
        ):
            a, b = fast_value(), sdk_value()
            if a != b:
                return f"{field} of {sdk_span.name!r}: fast path {_short(a)} != SDK {_short(b)}"
    return None
