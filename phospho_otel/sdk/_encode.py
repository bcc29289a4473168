"""A fast OTLP trace encoder: writes the protobuf wire format of an
``ExportTraceServiceRequest`` directly from SDK ``ReadableSpan`` objects.

Its output is byte-identical to the stock encoder's
(``encode_spans(spans).SerializeToString()`` from opentelemetry-exporter-otlp-proto-common):
same grouping (resource, then instrumentation scope, in order of first appearance), same
field order (ascending field numbers), same omission of default values, same skipping of
attributes the stock encoder cannot encode (out-of-range ints, unsupported types).
``tests/sdk/test_encoder.py`` checks this on edge cases on every run.

It reads a span's attributes, events and links without the copies the public properties
make, through ``_otel_compat.span_fields`` and ``BOUNDED_DICT_FIELD`` (private fields of
``ReadableSpan`` and ``BoundedAttributes``; the public properties if a future SDK
renames them). It costs a fraction of the stock encoder, which builds a Python protobuf
object per span, attribute and value.

Values nested deeper than ``MAX_VALUE_DEPTH`` arrays/key-value lists (only hand-made
spans hold nested values) are left out with one warning, where the stock encoder sends
them and the receiver refuses the whole request.

Text that is not valid Unicode: a Python ``str`` may hold lone surrogates (U+D800 to
U+DFFF, e.g. from ``surrogateescape`` or a bad UTF-16 decode), which UTF-8 cannot
encode. Where the stock encoder drops the attribute with a traceback (or the whole span,
for a name), this one writes the text with each lone surrogate replaced by U+FFFD (a
well-formed pair written as two code points becomes the character it encodes;
``repair_text``): attribute keys and values (in arrays and nested values too), span,
event and scope names, status descriptions, resource attributes, schema URLs. Nothing
raises, no traceback; one warning per process; ``repairs()`` counts the repaired
strings (the span processor adds them to ``stats().repaired``). Valid text costs
nothing more: the repair runs only where encoding raised.

Thread-safety: the functions are pure (but for the per-thread repair counter); call
them from any thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from struct import Struct
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanKind

from phospho_otel.sdk._once import warn_once
from phospho_otel.sdk._otel_compat import BOUNDED_DICT_FIELD, span_fields

__all__ = ["MAX_VALUE_DEPTH", "encode_request", "encode_requests", "encode_span",
           "note_repair", "repair_text", "repairs"]

logger = logging.getLogger(__name__)

_DOUBLE = Struct("<d")
_FIXED64 = Struct("<Q")
_FIXED32 = Struct("<I")
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_UINT64_MASK = (1 << 64) - 1

_SMALL_VARINTS = [bytes([i]) for i in range(128)]

_KIND = {
    SpanKind.INTERNAL: b"\x30\x01",
    SpanKind.SERVER: b"\x30\x02",
    SpanKind.CLIENT: b"\x30\x03",
    SpanKind.PRODUCER: b"\x30\x04",
    SpanKind.CONSUMER: b"\x30\x05",
}
_FLAGS_LOCAL = b"\x85\x01" + _FIXED32.pack(0x100)  # SPAN_FLAGS_CONTEXT_HAS_IS_REMOTE_MASK
_FLAGS_REMOTE = b"\x85\x01" + _FIXED32.pack(0x300)  # ... | SPAN_FLAGS_CONTEXT_IS_REMOTE_MASK
_LINK_FLAGS_LOCAL = b"\x35" + _FIXED32.pack(0x100)
_LINK_FLAGS_REMOTE = b"\x35" + _FIXED32.pack(0x300)
_EMPTY_SCOPE = b"\x0a\x00"
_BOOL_TRUE = b"\x10\x01"
_BOOL_FALSE = b"\x10\x00"


def _varint(n: int) -> bytes:
    """Unsigned varint of ``n`` (0 <= n < 2**64)."""
    if n < 128:
        return _SMALL_VARINTS[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: tag, length, payload."""
    n = len(payload)
    return tag + (_SMALL_VARINTS[n] if n < 128 else _varint(n)) + payload


MAX_VALUE_DEPTH = 30
"""Arrays and key-value lists an attribute value may nest. The aggregator, like any
receiver parsing with upb or prost, refuses a request whose messages nest more than 100
levels (``receiver.limits.MAX_DEPTH``); an event attribute 30 key-value lists deep
takes 96. A value nested deeper (only a hand-made ``ReadableSpan`` can hold one: the
SDK's attributes are flat) is left out, with one warning, instead of making the whole
request be refused (the stock encoder sends it; beyond about 1,000 levels it fails
with a ``RecursionError`` traceback)."""


class _TooDeep(ValueError):
    pass


class _Repairs(threading.local):
    count = 0


_repairs = _Repairs()


def repair_text(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD; a surrogate pair written as
    two code points becomes the character it encodes. Valid text comes back equal."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def note_repair(where: str) -> None:
    """Count one repaired string (on this thread) and warn once per process."""
    _repairs.count += 1
    warn_once(logger, "lone-surrogate",
              "phospho: text that is not valid Unicode (a lone surrogate) in %s; sent with "
              "U+FFFD in its place (counted in stats().repaired; warned once per process)",
              where)


def repairs() -> int:
    """Strings repaired so far on the calling thread (see ``note_repair``)."""
    return _repairs.count


def _utf8(text: str, where: str) -> bytes:
    """UTF-8 of ``text``, repaired if it holds lone surrogates (``repair_text``). For
    the encode sites off the per-attribute path; that path inlines the first try."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        note_repair(where)
        return repair_text(text).encode("utf-8")


def _warn_too_deep(key: str) -> None:
    warn_once(logger, "value-too-deep", "phospho: attribute %r nests arrays/key-value lists "
              "deeper than %d levels; left out of the span (warned once per process)",
              key, MAX_VALUE_DEPTH)


def _repaired_value(value: Any, depth: int = 0) -> Any:
    """An attribute value with every string in it (in arrays and mappings too, keys
    included) repaired; raises ``_TooDeep`` as ``_any_value`` would."""
    if isinstance(value, str):
        return repair_text(value)
    if isinstance(value, (bytes, bytearray)):
        return value
    if isinstance(value, (Sequence, Mapping)) and depth >= MAX_VALUE_DEPTH:
        raise _TooDeep
    if isinstance(value, Sequence):
        return [_repaired_value(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {repair_text(str(k)): _repaired_value(v, depth + 1) for k, v in value.items()}
    return value


def _any_value(value: Any, depth: int = 0) -> bytes:
    """The body of an ``AnyValue`` message; raises like the stock encoder does, and
    ``_TooDeep`` for arrays/key-value lists nested deeper than ``MAX_VALUE_DEPTH``."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return _BOOL_TRUE if value else _BOOL_FALSE
    if isinstance(value, str):
        return _field(b"\x0a", value.encode("utf-8"))
    if isinstance(value, int):
        if value < _INT64_MIN or value > _INT64_MAX:
            raise ValueError(f"Value out of range: {value}")
        return b"\x18" + _varint(value & _UINT64_MASK)
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return _field(b"\x3a", value)
    if isinstance(value, Sequence):
        if depth >= MAX_VALUE_DEPTH:
            raise _TooDeep
        depth += 1
        return _field(b"\x2a", b"".join([_field(b"\x0a", _any_value(v, depth))
                                         for v in value]))
    if isinstance(value, Mapping):
        if depth >= MAX_VALUE_DEPTH:
            raise _TooDeep
        depth += 1
        return _field(
            b"\x32",
            b"".join([_field(b"\x0a", _key_value(str(k), v, depth))
                      for k, v in value.items()]),
        )
    raise TypeError(f"Invalid type {type(value)} of value {value}")


def _key_value(key: str, value: Any, depth: int) -> bytes:
    return _field(b"\x0a", key.encode("utf-8")) + _field(b"\x12", _any_value(value, depth))


_KV_CACHE: dict[tuple[Any, ...], bytes] = {}
"""Encoded ``KeyValue`` fields (with their tag) for short scalar values: session ids,
span types, MIME types, metadata... repeat across spans. Cleared when it grows large."""
_KV_CACHE_MAX = 8192
_CACHEABLE_STR = 128
_KEY_CACHE: dict[str, bytes] = {}


def _key_field(key: str) -> bytes:
    encoded = _KEY_CACHE.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", key.encode("utf-8"))
        if len(_KEY_CACHE) < _KV_CACHE_MAX:
            _KEY_CACHE[key] = encoded
    return encoded


def _attributes(tag: bytes, attributes: Mapping[str, Any] | None) -> list[bytes]:
    """Repeated ``KeyValue`` fields; an attribute that cannot be encoded is skipped."""
    if not attributes:
        return []
    items = getattr(attributes, BOUNDED_DICT_FIELD, attributes)  # BoundedAttributes' dict
    out = []
    cache = _KV_CACHE
    for key, value in items.items():
        kind = type(value)
        # floats are not cached: 0.0 == -0.0 (and NaN != NaN) as dict keys
        cacheable = (kind is str and len(value) <= _CACHEABLE_STR) or kind is bool or (
            kind is int
        )
        if cacheable:
            cache_key = (tag, key, kind, value)
            encoded = cache.get(cache_key)
            if encoded is not None:
                out.append(encoded)
                continue
        try:
            if kind is str:
                body = _field(b"\x0a", value.encode("utf-8"))
            else:
                body = _any_value(value)
            encoded = _field(tag, _key_field(key) + _field(b"\x12", body))
        except UnicodeEncodeError:  # a lone surrogate in the key or the value: repair
            fixed = repair_text(key)
            try:
                encoded = _field(tag, _field(b"\x0a", fixed.encode("utf-8")) + _field(
                    b"\x12", _any_value(_repaired_value(value))))
            except _TooDeep:
                _warn_too_deep(fixed)
                continue
            except Exception as exc:  # not only its text was wrong (as below)
                logger.exception("Failed to encode key %s: %s", fixed, exc)
                continue
            note_repair(f"attribute {fixed!r}")
            out.append(encoded)
            continue
        except _TooDeep:
            _warn_too_deep(key)
            continue
        except Exception as exc:
            logger.exception("Failed to encode key %s: %s", key, exc)
            continue
        out.append(encoded)
        if cacheable:
            if len(cache) >= _KV_CACHE_MAX:
                cache.clear()
            cache[cache_key] = encoded
    return out


def encode_span(span: ReadableSpan) -> bytes:
    """The body of one OTLP ``Span`` message (without its own tag and length)."""
    ctx = span.get_span_context()
    if ctx is None:
        raise ValueError("a span without a span context")
    out = [
        b"\x0a\x10",
        ctx.trace_id.to_bytes(16, "big"),
        b"\x12\x08",
        ctx.span_id.to_bytes(8, "big"),
    ]
    trace_state = ctx.trace_state
    if trace_state:
        out.append(_field(b"\x1a", ",".join(f"{k}={v}" for k, v in trace_state.items()).encode()))
    parent = span.parent
    if parent:
        out.append(b"\x22\x08")
        out.append(parent.span_id.to_bytes(8, "big"))
    name = span.name
    if name:
        try:
            encoded_name = name.encode("utf-8")
        except UnicodeEncodeError:
            encoded_name = _utf8(name, "a span name")
        out.append(_field(b"\x2a", encoded_name))
    out.append(_KIND[span.kind])
    if span.start_time:
        out.append(b"\x39" + _FIXED64.pack(span.start_time))
    if span.end_time:
        out.append(b"\x41" + _FIXED64.pack(span.end_time))
    attributes, events, links = span_fields(span)
    out.extend(_attributes(b"\x4a", attributes))
    if span.dropped_attributes:
        out.append(b"\x50" + _varint(span.dropped_attributes))
    for event in events:
        body = []
        if event.timestamp:
            body.append(b"\x09" + _FIXED64.pack(event.timestamp))
        if event.name:
            body.append(_field(b"\x12", _utf8(event.name, "an event name")))
        body.extend(_attributes(b"\x1a", event.attributes))
        if event.dropped_attributes:
            body.append(b"\x20" + _varint(event.dropped_attributes))
        out.append(_field(b"\x5a", b"".join(body)))
    if span.dropped_events:
        out.append(b"\x60" + _varint(span.dropped_events))
    for link in links:
        lctx = link.context
        body = [
            b"\x0a\x10",
            lctx.trace_id.to_bytes(16, "big"),
            b"\x12\x08",
            lctx.span_id.to_bytes(8, "big"),
        ]
        body.extend(_attributes(b"\x22", link.attributes))
        if link.dropped_attributes:
            body.append(b"\x28" + _varint(link.dropped_attributes))
        body.append(_LINK_FLAGS_REMOTE if lctx.is_remote else _LINK_FLAGS_LOCAL)
        out.append(_field(b"\x6a", b"".join(body)))
    if span.dropped_links:
        out.append(b"\x70" + _varint(span.dropped_links))
    status = span.status
    if status is not None:
        body_parts = []
        if status.description:
            body_parts.append(_field(b"\x12", _utf8(status.description,
                                                      "a status description")))
        code = status.status_code.value
        if code:
            body_parts.append(b"\x18" + _varint(code))
        out.append(_field(b"\x7a", b"".join(body_parts)))
    out.append(_FLAGS_REMOTE if parent is not None and parent.is_remote else _FLAGS_LOCAL)
    return b"".join(out)


def _resource(resource: Resource) -> bytes:
    return b"".join(_attributes(b"\x0a", resource.attributes))


def _scope(scope: InstrumentationScope | None) -> bytes:
    if scope is None:
        return _EMPTY_SCOPE
    body = []
    if scope.name:
        body.append(_field(b"\x0a", _utf8(scope.name, "an instrumentation scope name")))
    if scope.version:
        body.append(_field(b"\x12", _utf8(scope.version, "an instrumentation scope version")))
    body.extend(_attributes(b"\x1a", scope.attributes))
    return _field(b"\x0a", b"".join(body))


class _Batch:
    """Encoded spans grouped by resource then scope, in order of first appearance."""

    __slots__ = ("by_id", "groups", "size")

    def __init__(self) -> None:
        # resource -> scope -> encoded Span fields; dict equality/hash like the stock encoder
        self.groups: dict[Resource, dict[InstrumentationScope | None, list[bytes]]] = {}
        # id(resource), id(scope) -> list, so equal-by-value lookups (Resource.__hash__
        # serialises its attributes to JSON) happen once per distinct object, not per span
        self.by_id: dict[tuple[int, int], list[bytes]] = {}
        self.size = 0

    def add(self, span: ReadableSpan, encoded: bytes) -> None:
        resource = span.resource
        scope = span.instrumentation_scope or None
        key = (id(resource), id(scope))
        spans = self.by_id.get(key)
        if spans is None:
            scopes = self.groups.setdefault(resource, {})
            spans = scopes.setdefault(scope, [])
            self.by_id[key] = spans
        field = _field(b"\x12", encoded)
        spans.append(field)
        self.size += len(field) + 8

    def __len__(self) -> int:
        return len(self.by_id)

    def request(self) -> bytes:
        out = []
        for resource, scopes in self.groups.items():
            scope_spans = []
            for scope, spans in scopes.items():
                body = _scope(scope) + b"".join(spans)
                if scope is not None and scope.schema_url:
                    body += _field(b"\x1a", _utf8(scope.schema_url, "a schema URL"))
                scope_spans.append(_field(b"\x12", body))
            body = _field(b"\x0a", _resource(resource)) + b"".join(scope_spans)
            if resource.schema_url:
                body += _field(b"\x1a", _utf8(resource.schema_url, "a schema URL"))
            out.append(_field(b"\x0a", body))
        return b"".join(out)


def encode_request(spans: Iterable[ReadableSpan]) -> bytes:
    """Serialized ``ExportTraceServiceRequest`` holding ``spans``: the same bytes as
    ``encode_spans(spans).SerializeToString()``."""
    batch = _Batch()
    for span in spans:
        batch.add(span, encode_span(span))
    return batch.request()


def encode_requests(spans: Iterable[ReadableSpan], max_bytes: int) -> list[tuple[bytes, int]]:
    """Serialized requests of about ``max_bytes`` at most (a single larger span gets a
    request of its own), each with its span count. A span that cannot be encoded at all
    (e.g. a name that is not valid UTF-8) is logged and left out."""
    requests: list[tuple[bytes, int]] = []
    batch = _Batch()
    count = 0
    for span in spans:
        try:
            encoded = encode_span(span)
        except Exception:
            logger.exception("phospho: could not encode span %r; dropped", span.name)
            continue
        if count and batch.size + len(encoded) + 16 > max_bytes:
            requests.append((batch.request(), count))
            batch = _Batch()
            count = 0
        batch.add(span, encoded)
        count += 1
    if count:
        requests.append((batch.request(), count))
    return requests
