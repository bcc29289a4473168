"""Jaeger's tag semantics over stored spans, for backends that match tags in Python.

A trace search's ``tags`` match a span's attributes, its resource's attributes, its
events' attributes and the tags Jaeger derives from span fields (``DERIVED_TAGS``:
``span.kind``, ``error``, ``otel.status_code``...), comparing the text of a value
(``attribute_text``, the OpenTelemetry Collector's ``AsString``). Pure functions.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Mapping

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from phospho_otel.store.api import TraceSpan

__all__ = [
    "DERIVED_TAGS",
    "SPAN_KIND_NAMES",
    "attribute_text",
    "may_match",
    "span_tag_texts",
    "tags_match",
]

SPAN_KIND_NAMES: dict[int, str] = {
    Span.SPAN_KIND_UNSPECIFIED: "",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
"""OTLP span kind numbers to Jaeger's ``span.kind`` tag values ("" = no tag)."""


def _plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else str(d)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return None


def attribute_text(value: AnyValue) -> str:
    """The text of an attribute value, as the OpenTelemetry Collector's ``AsString``:
    strings as is, bools ``true``/``false``, numbers in decimal, bytes base64, arrays
    and maps as compact JSON, an empty value as ``""``."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        d = value.double_value
        return repr(d) if not d.is_integer() or not math.isfinite(d) else str(int(d))
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return ""
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def _put_all(out: dict[str, set[str]], attributes: Iterable[KeyValue]) -> None:
    for kv in attributes:
        out.setdefault(kv.key, set()).add(attribute_text(kv.value))


def span_tag_texts(item: TraceSpan) -> dict[str, set[str]]:
    """Every tag a Jaeger search can match on this span, key -> texts of its values."""
    span, origin = item.span, item.origin
    out: dict[str, set[str]] = {}
    _put_all(out, span.attributes)
    _put_all(out, origin.resource.attributes)
    for event in span.events:
        _put_all(out, event.attributes)
        if event.name:
            out.setdefault("event", set()).add(event.name)
    kind = SPAN_KIND_NAMES.get(span.kind, "")
    if kind:
        out.setdefault("span.kind", set()).add(kind)
    if span.status.code == Status.STATUS_CODE_ERROR:
        out.setdefault("error", set()).add("true")
        out.setdefault("otel.status_code", set()).add("ERROR")
    elif span.status.code == Status.STATUS_CODE_OK:
        out.setdefault("otel.status_code", set()).add("OK")
    if span.status.message:
        out.setdefault("otel.status_description", set()).add(span.status.message)
    if origin.scope.name:
        out.setdefault("otel.scope.name", set()).add(origin.scope.name)
    if origin.scope.version:
        out.setdefault("otel.scope.version", set()).add(origin.scope.version)
    out.setdefault("service.name", set()).add(origin.service_name)
    return out


DERIVED_TAGS = frozenset(
    {
        "event",
        "span.kind",
        "error",
        "otel.status_code",
        "otel.status_description",
        "otel.scope.name",
        "otel.scope.version",
        "service.name",
    }
)
"""Tags made from span fields rather than attributes (see ``span_tag_texts``)."""


def may_match(raw: bytes, resource_keys: frozenset[str], tags: Mapping[str, str]) -> bool:
    """False when a wanted attribute key is surely absent: not derived, not a resource
    attribute, and its UTF-8 bytes do not occur in the serialized span (cheap pre-check
    before decoding)."""
    for key in tags:
        if key in DERIVED_TAGS or key in resource_keys:
            continue
        if key.encode() not in raw:
            return False
    return True


def _has_tag(item: TraceSpan, key: str, wanted: str) -> bool:
    span = item.span
    for kv in span.attributes:
        if kv.key == key and attribute_text(kv.value) == wanted:
            return True
    for kv in item.origin.resource.attributes:
        if kv.key == key and attribute_text(kv.value) == wanted:
            return True
    for event in span.events:
        if key == "event" and event.name == wanted:
            return True
        for kv in event.attributes:
            if kv.key == key and attribute_text(kv.value) == wanted:
                return True
    if key in DERIVED_TAGS:
        return wanted in span_tag_texts(item).get(key, ())
    return False


def tags_match(item: TraceSpan, tags: Mapping[str, str]) -> bool:
    """True when the span has every tag (same rules as ``span_tag_texts``)."""
    return all(_has_tag(item, key, wanted) for key, wanted in tags.items())
