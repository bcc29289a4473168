"""Every use of OpenTelemetry internals by the SDK, in one place.

The rest of ``phospho_otel.sdk`` reaches private fields of the OpenTelemetry SDK (and
the few private-ish constructions it relies on) only through this module, so that a
new OpenTelemetry release is reviewed here, against this list (what is used, and what
happens if a release changes it):

- ``span_processors``: ``Tracer.span_processor._span_processors`` (is our processor
  alone?). Missing: the fast path is not used.
- ``read_tracer``: ``Tracer._span_limits``, ``_instrumentation_scope``, ``_is_enabled``.
  Missing: the fast path turns off (one log line).
- ``span_metrics_enabled``: ``Tracer._tracer_metrics`` (the SDK's span metrics, 1.40+).
  Missing: the fast path turns off (one log line).
- ``readable_span``, ``instant_span``, ``copy_with_attributes``: ``ReadableSpan(...)``,
  whose docstring says "users should NOT be creating these objects directly". A new
  signature raises: the caller catches it, the fast path turns off and that span is
  replayed through the SDK (``replay_span``: ``copy.copy(Tracer)`` with our ids, then
  ``start_span``) or, for the size limit, exported untruncated.
- ``bounded_attributes``, ``clean_attribute(s)``, ``counted_attributes``:
  ``opentelemetry.attributes.BoundedAttributes`` (value cleaning, count limits, the
  ``dropped`` count; rewritten three times in 2026). ``bounded_list``:
  ``opentelemetry.sdk.util.BoundedList``. ``is_valid_link``: the SDK's private
  ``_is_valid_link`` (a copy of the 1.45 rule if it is gone). Drift in their semantics
  is what the parity self-test (``_parity``) catches: the fast path turns off.
- ``span_fields``, ``span_attributes``, ``BOUNDED_DICT_FIELD``: ``ReadableSpan._attributes``,
  ``_events``, ``_links`` and ``BoundedAttributes._dict``, read without copies by the
  encoder and the size limit. Renamed: the public properties are used (slower, same
  bytes).
- ``probe_tracer``, ``quiet_probe``: ``copy.copy(Tracer)`` for the self-test's SDK spans,
  and the loggers ``opentelemetry.attributes`` / ``opentelemetry.sdk.trace`` it quiets.
- ``reset_global_tracer_provider``: ``trace._TRACER_PROVIDER_SET_ONCE`` and
  ``trace._TRACER_PROVIDER`` (``phospho_otel.sdk.testing.reset``).

Checked against opentelemetry-sdk and opentelemetry-api 1.45.0, 1.45.1 and 1.45.2 (whose
``opentelemetry/sdk/trace/__init__.py``, ``sdk/trace/_tracer_metrics.py``,
``sdk/util/__init__.py``, ``attributes/__init__.py`` and ``trace/__init__.py`` are
identical); 1.45.2 was the newest release. ``CHECKED_SDK_VERSIONS`` is that range (the
installed version is read from ``opentelemetry.sdk.version``): with an SDK outside it
the fast path stays off (``FastPath`` logs one line) and every span takes the ordinary
SDK path, which only uses public API. Raising the range means reading the upstream diff
of the files above against this list, then running ``tests/sdk`` with
``PHOSPHO_TEST_ANY_OTEL_SDK=1`` (the fast path forced on: the parity tests in
``test_paths.py``, ``test_limits.py`` and ``test_compat.py`` then run against that SDK).

Nothing here raises into the app on its own account: readers return ``None`` when a
field is missing (``span_processors``, a C-level getter, raises ``AttributeError``,
which its caller catches). The constructors may raise if upstream changed a signature;
their callers catch that.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from operator import attrgetter
from typing import Any

from opentelemetry import trace as trace_api
from opentelemetry.attributes import BoundedAttributes
from opentelemetry.context import Context
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import (
    Event,
    ReadableSpan,
    SpanLimits,
    SpanProcessor,
    SynchronousMultiSpanProcessor,
    Tracer,
)
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status
from opentelemetry.util import types

__all__ = [
    "BOUNDED_DICT_FIELD",
    "CHECKED_SDK_VERSIONS",
    "TracerParts",
    "bounded_attributes",
    "bounded_list",
    "checked_range_text",
    "clean_attribute",
    "clean_attributes",
    "copy_with_attributes",
    "counted_attributes",
    "installed_sdk_version",
    "instant_span",
    "is_valid_link",
    "probe_tracer",
    "quiet_probe",
    "read_tracer",
    "readable_span",
    "replay_span",
    "reset_global_tracer_provider",
    "sdk_version_checked",
    "span_attributes",
    "span_fields",
    "span_metrics_enabled",
    "span_processors",
]

logger = logging.getLogger(__name__)

CHECKED_SDK_VERSIONS: tuple[tuple[int, int], tuple[int, int]] = ((1, 45), (1, 46))
"""``(lowest, first unchecked)``: the opentelemetry-sdk releases ``>=1.45,<1.46`` this
module was checked against (pyproject pins the same range)."""

_DIST = "opentelemetry-sdk"


# -- the SDK version -------------------------------------------------------------------

def installed_sdk_version() -> str | None:
    """The installed opentelemetry-sdk version (``opentelemetry.sdk.version``, else the
    package metadata), or None if it cannot be told."""
    try:
        from opentelemetry.sdk.version import __version__

        return str(__version__)
    except ImportError:
        pass
    try:
        return metadata.version(_DIST)
    except metadata.PackageNotFoundError:
        return None


def _release(version: str) -> tuple[int, ...] | None:
    """The leading numeric release of ``version`` (``"1.46.0rc1"`` gives ``(1, 46, 0)``)."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = ""
        for char in piece:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):  # "0rc1": a pre-release tag ends the release
            break
    return tuple(parts) or None


def checked_range_text() -> str:
    """The checked range as a version specifier, e.g. ``>=1.45,<1.46``."""
    (lo_major, lo_minor), (hi_major, hi_minor) = CHECKED_SDK_VERSIONS
    return f">={lo_major}.{lo_minor},<{hi_major}.{hi_minor}"


def sdk_version_checked(version: str | None = None) -> bool:
    """True if ``version`` (default: the installed SDK's) is in ``CHECKED_SDK_VERSIONS``.
    A pre-release of the first unchecked minor (``1.46.0rc1``) is outside."""
    if version is None:
        version = installed_sdk_version()
    release = _release(version) if version else None
    if release is None:
        return False
    lo, hi = CHECKED_SDK_VERSIONS
    return lo <= release[:2] < hi


# -- tracer internals (the fast path's checks) -----------------------------------------

span_processors: Callable[[object], Any] = attrgetter("span_processor._span_processors")
"""The span processors of a tracer's provider (raises ``AttributeError`` if this SDK
keeps them elsewhere): a tuple the SDK replaces, never mutates, when one is added, so
an identity check tells that the list changed. A C-level getter: called per span."""


class TracerParts:
    """What the fast path reads from an SDK ``Tracer`` once, to build spans as its
    ``start_span`` would."""

    __slots__ = ("is_enabled", "limits", "scope")

    def __init__(self, limits: SpanLimits, scope: InstrumentationScope,
                 is_enabled: Callable[[], bool]) -> None:
        self.limits = limits
        self.scope = scope
        self.is_enabled = is_enabled
        """``Tracer._is_enabled``: False when a tracer configurator disabled it (its
        spans are then non-recording); called for each span."""


def read_tracer(tracer: object) -> TracerParts | None:
    """The span limits, instrumentation scope and enabled check of an SDK tracer, or
    None if this SDK does not have them where 1.45 has them."""
    limits = getattr(tracer, "_span_limits", None)
    scope = getattr(tracer, "_instrumentation_scope", None)
    is_enabled = getattr(tracer, "_is_enabled", None)
    if not (isinstance(limits, SpanLimits) and isinstance(scope, InstrumentationScope)
            and callable(is_enabled)):
        return None
    return TracerParts(limits, scope, is_enabled)


def span_metrics_enabled(tracer: object) -> bool | None:
    """True if the tracer records the SDK's own span metrics (``otel.sdk.span.*``,
    ``OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED``); None if this cannot be told."""
    try:
        from opentelemetry.sdk.trace._tracer_metrics import NoOpTracerMetrics
    except ImportError:
        return None
    metrics = getattr(tracer, "_tracer_metrics", None)
    if metrics is None:
        return None
    return not isinstance(metrics, NoOpTracerMetrics)


# -- building spans --------------------------------------------------------------------

def readable_span(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    resource: Resource,
    attributes: types.Attributes,
    events: Sequence[Event],
    links: Sequence[Link],
    status: Status,
    start_time: int,
    end_time: int,
    scope: InstrumentationScope | None,
) -> ReadableSpan:
    """An ended span of kind INTERNAL, as ``Span._readable_span()`` makes it. Raises
    whatever the SDK's constructor raises (the caller must catch it)."""
    return ReadableSpan(name=name, context=context, parent=parent, resource=resource,
                        attributes=attributes, events=events, links=links,
                        kind=SpanKind.INTERNAL, status=status, start_time=start_time,
                        end_time=end_time, instrumentation_scope=scope)


def instant_span(
    name: str,
    context: SpanContext,
    parent: SpanContext | None,
    resource: Resource,
    attributes: types.Attributes,
    start_time: int,
    end_time: int,
    scope: InstrumentationScope | None,
) -> ReadableSpan:
    """An ended span of kind INTERNAL from ``start_time`` to ``end_time``, without
    events, links or status (``log()``'s); what ``readable_span`` gives with those empty,
    with the fewest arguments (it is on the hot path). Raises what the constructor
    raises."""
    return ReadableSpan(name=name, context=context, parent=parent, resource=resource,
                        attributes=attributes, start_time=start_time, end_time=end_time,
                        instrumentation_scope=scope)


def copy_with_attributes(span: ReadableSpan, attributes: types.Attributes) -> ReadableSpan:
    """``span`` with other attributes (everything else, dropped counts included, kept).
    Raises whatever the SDK's constructor raises (the caller must catch it)."""
    _, events, links = span_fields(span)
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attributes,
        events=events,
        links=links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def bounded_attributes(maxlen: int | None, attributes: types.Attributes) -> BoundedAttributes:
    """Immutable attributes of an event or a link, limited and cleaned as the SDK's
    ``Span.add_event`` / ``add_link`` do (the fast path runs only without a value
    length limit)."""
    return BoundedAttributes(maxlen, attributes, immutable=True, max_value_len=None)


def clean_attributes(attributes: Mapping[str, types.AnyValue]) -> tuple[dict[str, Any], int]:
    """Attributes from outside, cleaned as the SDK's ``Span.set_attributes`` cleans
    them (bad values converted or dropped, warned), and how many were dropped."""
    bounded = BoundedAttributes(None, attributes, immutable=False, max_value_len=None)
    return dict(bounded.items()), bounded.dropped


def clean_attribute(key: str, value: types.AnyValue) -> tuple[dict[str, Any], int]:
    """One attribute cleaned as the SDK's ``Span.set_attribute`` cleans it."""
    bounded = BoundedAttributes(None, immutable=False, max_value_len=None)
    bounded[key] = value
    return dict(bounded.items()), bounded.dropped


def counted_attributes(attributes: Mapping[str, types.AnyValue],
                       dropped: int) -> BoundedAttributes:
    """``attributes`` as the immutable mapping a span reports ``dropped`` (the
    ``dropped_attributes`` count of ``ReadableSpan``) with."""
    bounded = BoundedAttributes(None, attributes, immutable=True, max_value_len=None)
    bounded.dropped = dropped
    return bounded


def bounded_list(maxlen: int | None) -> BoundedList[Any]:
    """The SDK's list of a span's events or links: keeps the last ``maxlen``, counts
    the others as dropped (``ReadableSpan.dropped_events`` / ``dropped_links``)."""
    return BoundedList(maxlen)


def _is_valid_link_145(context: SpanContext, attributes: types.Attributes) -> bool:
    return bool(context and (context.is_valid or (attributes or context.trace_state)))


is_valid_link: Callable[[SpanContext, types.Attributes], bool] = getattr(
    sdk_trace, "_is_valid_link", _is_valid_link_145)
"""The SDK's rule for a link worth keeping (``Span.add_link``)."""


# -- reading spans (the encoder and the size limit) -----------------------------------

def _private_fields_ok() -> bool:
    try:
        probe = ReadableSpan("probe", attributes={"k": 1}, events=(), links=())
        return (dict(probe._attributes or {}) == dict(probe.attributes or {})
                and tuple(probe._events) == probe.events
                and tuple(probe._links) == probe.links)
    except Exception:  # any change: use the public properties
        return False


_PRIVATE_FIELDS = _private_fields_ok()

span_fields: Callable[[ReadableSpan], tuple[Any, Any, Any]] = (
    attrgetter("_attributes", "_events", "_links") if _PRIVATE_FIELDS
    else attrgetter("attributes", "events", "links")
)
"""``(attributes, events, links)`` of a span without the copies the public properties
make (``attributes`` may be None)."""

span_attributes: Callable[[ReadableSpan], Any] = attrgetter(
    "_attributes" if _PRIVATE_FIELDS else "attributes")
"""A span's attributes without a copy (may be None)."""


def _bounded_dict_field() -> str:
    try:
        probe = BoundedAttributes(None, {"k": 1})
        if type(getattr(probe, "_dict", None)) is dict and probe._dict == {"k": 1}:
            return "_dict"
    except Exception:  # any change: iterate the public mapping
        pass
    return "__phospho_otel_absent__"


BOUNDED_DICT_FIELD = _bounded_dict_field()
"""The name of the plain dict inside ``BoundedAttributes`` (``_dict`` in 1.45), for hot
loops: ``getattr(attributes, BOUNDED_DICT_FIELD, attributes)`` is that dict (no copy, no
lock) for ``BoundedAttributes``, the mapping itself otherwise. If this SDK keeps it
elsewhere, a name no object has: the public mapping is read (slower, same result)."""


# -- the parity self-test and the replay -----------------------------------------------

def probe_tracer(tracer: Tracer, processor: SpanProcessor) -> Tracer:
    """A copy of ``tracer`` whose spans go to ``processor`` only: same sampler, ids,
    resource, limits, scope and configuration, none of the provider's processors."""
    probe = copy.copy(tracer)
    processors = SynchronousMultiSpanProcessor()  # type: ignore[no-untyped-call]  # OTel's __init__ lacks "-> None"
    processors.add_span_processor(processor)
    probe.span_processor = processors
    return probe


class _Quiet(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread != self.thread


_NOISY = ("opentelemetry.attributes", "opentelemetry.sdk.trace")


@contextmanager
def quiet_probe() -> Iterator[None]:
    """Drop the SDK's warnings (attribute lists full...) raised by this thread while
    the self-test probes the limits; other threads log as usual."""
    quiet = _Quiet()
    loggers = [logging.getLogger(name) for name in _NOISY]
    for each in loggers:
        each.addFilter(quiet)
    try:
        yield
    finally:
        for each in loggers:
            each.removeFilter(quiet)


class _SameIds(IdGenerator):
    def __init__(self, context: SpanContext, ids: IdGenerator) -> None:
        self._context = context
        self._ids = ids

    def generate_span_id(self) -> int:
        return self._context.span_id

    def generate_trace_id(self) -> int:
        return self._context.trace_id

    def is_trace_id_random(self) -> bool:
        return self._ids.is_trace_id_random()


class _SameDecision(Sampler):
    def __init__(self, context: SpanContext, attributes: types.Attributes) -> None:
        self._context = context
        self._attributes = attributes

    def should_sample(self, *args: Any, **kwargs: Any) -> SamplingResult:
        decision = (Decision.RECORD_AND_SAMPLE if self._context.trace_flags.sampled
                    else Decision.RECORD_ONLY)
        return SamplingResult(decision, self._attributes, self._context.trace_state)

    def get_description(self) -> str:
        return "phospho-otel replay"


def replay_span(
    tracer: Tracer,
    name: str,
    context: SpanContext,
    parent_context: Context,
    attributes: Mapping[str, types.AnyValue],
    events: Sequence[Event],
    links: Sequence[Link],
    status: Status,
    start_time: int,
    end_time: int,
) -> None:
    """Record, through the SDK's own ``Tracer.start_span`` and its processors, a span
    the fast path started but could not build: same ids, attributes, events, links,
    status and times (dropped counts are not carried over)."""
    replay = copy.copy(tracer)
    replay.id_generator = _SameIds(context, tracer.id_generator)
    replay.sampler = _SameDecision(context, dict(attributes))
    span = replay.start_span(name, context=parent_context, kind=SpanKind.INTERNAL,
                             links=links, start_time=start_time)
    for event in events:
        span.add_event(event.name, event.attributes, event.timestamp)
    span.set_status(status)
    span.end(end_time)


# -- tests -----------------------------------------------------------------------------

def reset_global_tracer_provider() -> None:
    """Forget the global tracer provider, which OpenTelemetry lets a process set once
    (what OpenTelemetry's own test utilities do)."""
    from opentelemetry.util._once import Once

    trace_api._TRACER_PROVIDER_SET_ONCE = Once()
    trace_api._TRACER_PROVIDER = None
