"""What one OTLP request may materialise, counted on the wire before anything is built.

A body-size cap bounds bytes, not objects: 61 KiB of gzip inflates to 64 MB holding 32
million empty spans (2 bytes each on the wire, ~180 bytes each once upb builds them).
So a request is also bounded in

* **spans** (``max_spans``): each costs a row, a record and its share of every
  transaction downstream;
* **elements** (``max_elements``): in protobuf every message below the request (resource
  and scope spans, resources, scopes, spans, attributes, their values, events, links,
  statuses, array and key-value list entries, entity refs) and every entry of a repeated
  string; in OTLP/JSON every value ``json.loads`` would build (objects, arrays, strings,
  numbers, literals, members OTLP does not define), an empty object or array counting
  twice;
* **depth** (``MAX_DEPTH``): messages nest at most 100 levels below the request, the
  limit of upb's own decoder, so that anything accepted can be serialized and parsed
  back (the store keeps spans as protobuf).

The counts are made without building messages and stop as soon as a limit is passed, so
a hostile body costs at most about the limit in steps. They are cheap where they can be:

* an element takes at least 2 bytes on the wire, so a protobuf body of ``n`` bytes holds
  at most ``n // 2`` elements and spans: bodies with ``n // 2`` under a limit need no
  count for it (a collector's batch of 8,192 spans is ~5 MB, under the 8 MB that the
  default ``max_elements`` needs counting from);
* spans of a body under 8 MB are counted by upb itself, in C, with a schema that reads
  each span as an opaque ``bytes`` (``_span_count``: about 0.1 ns a byte);
* elements of a larger body are first bounded by counting, in C, the bytes that can
  start an element's tag (``_tag_bound``); only when that bound is over the limit (a
  dense, hostile body) are they counted exactly, in Python, by a tag/length walk of the
  wire format (``_walk``) that stops at the limit;
* OTLP/JSON values are bounded by counting ``,``, ``{`` and ``[`` in the text (in C);
  only when that is over the limit are strings removed first, to count them exactly.

``PayloadTooLarge`` (413) is raised past ``max_spans`` or ``max_elements``;
``DecodeError`` (400) for a body the walk finds malformed (upb refuses every one of
them too) or nested past ``MAX_DEPTH``.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.errors import DecodeError, PayloadTooLarge

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_SPANS",
    "check_json",
    "check_protobuf",
    "depth_error",
    "too_many_elements",
    "too_many_spans",
]

MAX_SPANS = 100_000
"""Default spans a request may hold. A collector sends at most its batch size (8,192 by
default for the OTel Collector and rotel); twelve such batches fit, and the ingest
queue's default bound (200,000 pending spans) still holds two such requests."""

MAX_ELEMENTS = 4_000_000
"""Default elements a request may hold (see the module docstring). 8,192 spans of 200
attributes each fit; at ~60-90 bytes an element once built (links are the largest), a
request at the limit takes ~250-350 MB in upb. Protobuf bodies up to 8 MB are never
counted for it."""

MAX_DEPTH = 100
"""Levels messages may nest below the request: upb's decode limit
(``kUpb_WireFormat_DefaultDepthLimit``), which cannot be raised from Python. An attribute
value nests 48 arrays or 32 key-value lists at most."""


def too_many_spans(limit: int) -> PayloadTooLarge:
    """The error for a request over ``limit`` spans."""
    return PayloadTooLarge(
        f"request has more than {limit} spans (the limit per request): send smaller batches"
    )


def too_many_elements(limit: int) -> PayloadTooLarge:
    """The error for a request over ``limit`` elements."""
    return PayloadTooLarge(
        f"request has more than {limit} elements (spans, attributes, events, links, "
        "array and key-value list entries; values in JSON; the limit per request): "
        "send smaller batches"
    )


def depth_error(where: str = "") -> DecodeError:
    """The error for a message nested past ``MAX_DEPTH`` (at ``where``, when known; a
    long path is shortened in the middle)."""
    if len(where) > 240:
        where = f"{where[:160]}...{where[-60:]}"
    at = f" at {where}" if where else ""
    return DecodeError(
        f"malformed OTLP: messages nested deeper than {MAX_DEPTH} levels{at} (the limit; "
        "upb cannot parse deeper ones back)"
    )


# ------------------------------------------------------------------------------- protobuf

_Fields = dict[int, Any]
"""A message's schema for the walk: length-delimited tag -> the child's ``_Fields`` (a
message field) or ``_LEAF`` (a repeated string or bytes entry)."""

_LEAF: _Fields = {}


def _schemas() -> tuple[_Fields, _Fields]:
    """The walk's schema of ``ExportTraceServiceRequest`` and of ``Span``, read from the
    descriptors (so a newer opentelemetry-proto's fields are counted too)."""
    built: dict[str, _Fields] = {}

    def schema(descriptor: Descriptor) -> _Fields:
        if descriptor.full_name in built:
            return built[descriptor.full_name]
        fields: _Fields = {}
        built[descriptor.full_name] = fields
        for field in descriptor.fields:
            tag = field.number << 3 | 2
            if field.message_type is not None:
                fields[tag] = schema(field.message_type)
            elif field.is_repeated and field.type in (FieldDescriptor.TYPE_STRING,
                                                      FieldDescriptor.TYPE_BYTES):
                fields[tag] = _LEAF
            elif field.is_repeated:  # a packed repeated scalar: not in OTLP traces
                raise AssertionError(f"{field.full_name}: packed fields are not counted")
        return fields

    root = schema(ExportTraceServiceRequest.DESCRIPTOR)
    return root, built["opentelemetry.proto.trace.v1.Span"]


_ROOT, _SPAN = _schemas()


def _tag_first_bytes() -> bytes:
    """Every byte an element's tag can start with: the tag itself when under 128, with
    the continuation bit when encoded with redundant bytes (upb reads those)."""
    tags: set[int] = set()
    stack, seen = [_ROOT], set()
    while stack:
        fields = stack.pop()
        if id(fields) in seen:
            continue
        seen.add(id(fields))
        for tag, child in fields.items():
            tags.add(tag & 0x7F | 0x80)
            if tag < 0x80:
                tags.add(tag)
            stack.append(child)
    return bytes(b for b in range(256) if b not in tags)


_NOT_TAG_BYTES = _tag_first_bytes()


_TAG_BOUND_CHUNK = 1 << 20
"""Bytes counted per C call by ``_tag_bound``: the GIL is held ~1 ms at a time, so the
event loop's thread keeps answering while a large body is counted."""


def _tag_bound(body: bytes) -> int:
    """An upper bound of the elements of ``body``: the bytes that can start an element's
    tag (each element has a tag, and tags are at distinct offsets). In C, ~1 ns a byte."""
    view = memoryview(body)
    return sum(len(bytes(view[at:at + _TAG_BOUND_CHUNK]).translate(None, _NOT_TAG_BYTES))
               for at in range(0, len(body), _TAG_BOUND_CHUNK))


def _lite_request_class() -> Any:
    """``ExportTraceServiceRequest`` with only ``resource_spans.scope_spans.spans``, each
    span an opaque ``bytes``: upb parses it in C and builds one string per span."""
    file = descriptor_pb2.FileDescriptorProto(
        name="phospho_otel/receiver/_span_count.proto", package="phospho_otel.span_count",
        syntax="proto3")
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE
    for name, field, number, kind, type_name in (
        ("Request", "resource_spans", 1, message, ".phospho_otel.span_count.ResourceSpans"),
        ("ResourceSpans", "scope_spans", 2, message, ".phospho_otel.span_count.ScopeSpans"),
        ("ScopeSpans", "spans", 2, descriptor_pb2.FieldDescriptorProto.TYPE_BYTES, ""),
    ):
        declared = file.message_type.add(name=name).field.add(
            name=field, number=number, label=repeated, type=kind)
        if type_name:
            declared.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("phospho_otel.span_count.Request"))


_LiteRequest = _lite_request_class()


def _span_count(body: bytes) -> int | None:
    """The spans of ``body`` counted by upb (``None`` when upb cannot read even the top
    three levels: the body is malformed). Memory: ~30 bytes per resource span, scope span
    and span, which the caller has bounded."""
    try:
        lite = _LiteRequest.FromString(body)
    except _ProtobufDecodeError:
        return None
    return sum(len(scope.spans) for resource in lite.resource_spans
               for scope in resource.scope_spans)


def check_protobuf(body: bytes, max_spans: int = MAX_SPANS,
                   max_elements: int = MAX_ELEMENTS) -> None:
    """Raise ``PayloadTooLarge`` unless ``body`` holds at most ``max_spans`` spans and
    ``max_elements`` elements, without building them. Also raises ``DecodeError`` for
    what the walk (when it runs) finds malformed or nested past ``MAX_DEPTH``; a body that
    passes may still be malformed (upb says so when it parses it)."""
    half = len(body) // 2
    if half <= max_spans and half <= max_elements:
        return
    if half > max_elements and _tag_bound(body) > max_elements:
        _walk(body, max_spans, max_elements)
        return
    # At most max_elements elements, so upb's lite parse is bounded too.
    if half > max_spans:
        spans = _span_count(body)
        if spans is None:  # malformed at the top: let the walk say where (bounded)
            _walk(body, max_spans, max_elements)
        elif spans > max_spans:
            raise too_many_spans(max_spans)


class _Malformed(Exception):
    """The wire format is broken (upb refuses the body too)."""


def _walk(body: bytes, max_spans: int, max_elements: int) -> tuple[int, int]:
    """Count spans and elements of ``body`` by walking its tags and lengths, descending
    into the messages OTLP defines (never building one), and stop as soon as a limit is
    passed. Unknown fields and strings are skipped by their length. Follows upb where the
    wire format leaves a choice: tags of up to 5 bytes and 32 bits, lengths of up to 5
    bytes, unknown groups skipped (and counted in the depth), a known field with another
    wire type unknown. Raises ``PayloadTooLarge``, or ``DecodeError`` when malformed
    (upb refuses those bodies too) or nested past ``MAX_DEPTH``. Returns (spans,
    elements)."""
    try:
        return _walk_wire(body, max_spans, max_elements)
    except _Malformed as exc:
        raise DecodeError(f"malformed protobuf: not an OTLP ExportTraceServiceRequest "
                          f"({exc})") from None
    except IndexError:
        raise DecodeError("malformed protobuf: not an OTLP ExportTraceServiceRequest "
                          "(truncated)") from None


def _varint_rest(buf: bytes, pos: int, first: int, max_shift: int) -> tuple[int, int]:
    """The varint whose first byte (``first``, continuation bit set) was read, and the
    offset after it; at most ``max_shift // 7 + 1`` bytes."""
    value, shift = first & 0x7F, 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > max_shift:
            raise _Malformed(f"varint longer than {max_shift // 7 + 1} bytes")


def _walk_wire(buf: bytes, max_spans: int, max_elements: int) -> tuple[int, int]:
    """(spans, elements) of ``buf``; see ``_walk``."""
    # One loop over every field of every message descended into; a frame per open
    # message (or unknown group). Reading past ``end`` (or past the buffer: IndexError)
    # only ever happens on a malformed body and is caught by the bound checks.
    pos, end = 0, len(buf)
    fields = _ROOT
    group = -1  # the field number of the unknown group being skipped, -1 in a message
    depth = spans = 0
    budget = max_elements
    stack: list[tuple[_Fields, int, int]] = []
    span_fields, leaf = _SPAN, _LEAF
    while True:
        if pos >= end:
            if pos > end:
                raise _Malformed("a field runs past the end of its message")
            if group >= 0:
                raise _Malformed("unterminated group")
            if not depth:
                return spans, max_elements - budget
            fields, end, group = stack.pop()
            depth -= 1
            continue
        tag = buf[pos]
        if tag & 0x87 == 2:  # the common case: a one-byte tag, length-delimited
            size = buf[pos + 1]
            pos += 2
            if size & 0x80:
                size, pos = _varint_rest(buf, pos, size, 28)
            if tag == 2 and group < 0:  # (upb skips field 0 in unknown groups)
                raise _Malformed("field number 0")
        else:
            pos += 1
            if tag & 0x80:  # tags: at most 5 bytes and 32 bits
                tag, pos = _varint_rest(buf, pos, tag, 28)
                if tag > 0xFFFFFFFF:
                    raise _Malformed("tag over 32 bits")
            if tag < 8 and group < 0:
                raise _Malformed("field number 0")
            wire_type = tag & 7
            if wire_type == 0:
                for _ in range(10):
                    byte = buf[pos]
                    pos += 1
                    if not byte & 0x80:
                        break
                else:
                    raise _Malformed("varint longer than 10 bytes")
                continue
            if wire_type == 1:
                pos += 8
                continue
            if wire_type == 5:
                pos += 4
                continue
            if wire_type == 3:  # an unknown group (OTLP has none): skipped, never counted
                if depth >= MAX_DEPTH:
                    raise depth_error()
                stack.append((fields, end, group))
                depth += 1
                fields, group = leaf, tag >> 3
                continue
            if wire_type == 4:
                if tag >> 3 != group:
                    raise _Malformed("unexpected end of group")
                fields, _, group = stack.pop()
                depth -= 1
                continue
            if wire_type != 2:
                raise _Malformed(f"wire type {wire_type}")
            size = buf[pos]  # lengths: at most 5 bytes
            pos += 1
            if size & 0x80:
                size, pos = _varint_rest(buf, pos, size, 28)
        child = fields.get(tag)
        if child is None:  # a string, bytes, or a field OTLP does not define
            pos += size
            if pos > end:
                raise _Malformed("a field runs past the end of its message")
            continue
        budget -= 1
        if budget < 0:
            raise too_many_elements(max_elements)
        if child is span_fields:
            spans += 1
            if spans > max_spans:
                raise too_many_spans(max_spans)
        if child is leaf or not size:
            pos += size
            if pos > end:
                raise _Malformed("a field runs past the end of its message")
            continue
        size += pos  # now the end of the child
        if size > end:
            raise _Malformed("a field runs past the end of its message")
        if depth >= MAX_DEPTH:
            raise depth_error()
        stack.append((fields, end, group))
        depth += 1
        fields, end, group = child, size, -1


# ----------------------------------------------------------------------------------- JSON

_STRING = re.compile(r'"[^"]*"')


def check_json(text: str, max_elements: int = MAX_ELEMENTS) -> None:
    """Raise ``PayloadTooLarge`` unless the JSON ``text`` holds at most ``max_elements``
    values (an empty object or array counting twice), before ``json.loads`` builds any.

    Each value but the document is inside an array or object and all but the first of
    each container's are preceded by a comma, so the values are at most one more than the
    commas, ``{`` and ``[`` outside strings. Counted in C: first in the whole text (an
    upper bound: strings may hold some), then, when that is over the limit, with strings
    removed (escaped backslashes, then escaped quotes, then each string). Where the text
    is not JSON, the count still bounds what ``json.loads`` builds before it fails."""
    if len(text) // 2 + 1 <= max_elements:
        return
    if _structure_count(text) <= max_elements:
        return
    stripped = _STRING.sub("", text.replace("\\\\", "").replace('\\"', ""))
    if _structure_count(stripped) > max_elements:
        raise too_many_elements(max_elements)


def _structure_count(text: str) -> int:
    return 1 + text.count(",") + text.count("{") + text.count("[")
