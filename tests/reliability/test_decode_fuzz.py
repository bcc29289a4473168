"""Property-based fuzzing of the OTLP body decoders (issue 9: a reliability suite).

For any bytes and any JSON, ``parse_protobuf``, ``parse_json`` and ``gunzip`` return a
request (or bytes) or raise ``DecodeError`` / ``PayloadTooLarge`` -- nothing else -- and
what they return is within the limits they were given. Valid requests round-trip:
protobuf -> ``parse_protobuf``, and protobuf -> OTLP/JSON -> ``parse_json``, both equal
the original. The wire walk that counts elements (``receiver.limits``) never refuses a
body upb accepts as malformed, and never counts fewer spans or elements than upb builds.

Examples per property: ``PHOSPHO_FUZZ_EXAMPLES`` (default 25, a few seconds in all);
``PHOSPHO_RELIABILITY_LONG=1`` runs 2,000 each.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import zlib
from typing import Any, cast

import pytest
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValue,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from phospho_otel.errors import DecodeError, PayloadTooLarge
from phospho_otel.receiver import limits
from phospho_otel.receiver.decode import gunzip, parse_json, parse_protobuf
from tests.reliability.conftest import LONG

EXAMPLES = 2000 if LONG else int(os.environ.get("PHOSPHO_FUZZ_EXAMPLES", "25"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# ------------------------------------------------------------------- valid OTLP requests

texts = st.text(max_size=12)
uint32 = st.integers(0, 2**32 - 1)
fixed64 = st.integers(0, 2**64 - 1)
ids16 = st.one_of(st.just(b""), st.binary(min_size=16, max_size=16))
ids8 = st.one_of(st.just(b""), st.binary(min_size=8, max_size=8))

scalar_values = st.one_of(
    st.builds(lambda v: AnyValue(string_value=v), texts),
    st.builds(lambda v: AnyValue(bool_value=v), st.booleans()),
    st.builds(lambda v: AnyValue(int_value=v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda v: AnyValue(double_value=v), st.floats(allow_nan=False)),
    st.builds(lambda v: AnyValue(bytes_value=v), st.binary(max_size=12)),
    st.just(AnyValue()),
)


def _kvlist(pairs: list[tuple[str, AnyValue]]) -> AnyValue:
    return AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key=k, value=v)
                                                      for k, v in pairs]))


any_values = st.recursive(
    scalar_values,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(
            lambda values: AnyValue(array_value=ArrayValue(values=values))),
        st.lists(st.tuples(texts, children), max_size=3).map(_kvlist),
    ),
    max_leaves=8,
)
attributes = st.lists(st.builds(lambda k, v: KeyValue(key=k, value=v), texts, any_values),
                      max_size=4)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    """A span using every field the decoders read."""
    span = Span(
        trace_id=draw(ids16), span_id=draw(ids8), parent_span_id=draw(ids8),
        trace_state=draw(texts), flags=draw(uint32), name=draw(texts),
        kind=cast("Span.SpanKind.ValueType",
                  draw(st.one_of(st.integers(0, 5), st.integers(-(2**31), 2**31 - 1)))),
        start_time_unix_nano=draw(fixed64), end_time_unix_nano=draw(fixed64),
        attributes=draw(attributes), dropped_attributes_count=draw(uint32),
        dropped_events_count=draw(uint32), dropped_links_count=draw(uint32),
    )
    for _ in range(draw(st.integers(0, 2))):
        span.events.add(time_unix_nano=draw(fixed64), name=draw(texts),
                        attributes=draw(attributes), dropped_attributes_count=draw(uint32))
    for _ in range(draw(st.integers(0, 2))):
        span.links.add(trace_id=draw(ids16), span_id=draw(ids8), trace_state=draw(texts),
                       attributes=draw(attributes), dropped_attributes_count=draw(uint32),
                       flags=draw(uint32))
    if draw(st.booleans()):
        code = cast("Status.StatusCode.ValueType", draw(st.integers(0, 2)))
        span.status.CopyFrom(Status(code=code, message=draw(texts)))
    return span


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """A valid request as OTLP/JSON can carry it (resource, scope and attribute values
    always present: the JSON decoder builds them when absent)."""
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs: ResourceSpans = request.resource_spans.add(schema_url=draw(texts))
        rs.resource.CopyFrom(Resource(attributes=draw(attributes),
                                      dropped_attributes_count=draw(uint32)))
        for _ in range(draw(st.integers(0, 2))):
            ss: ScopeSpans = rs.scope_spans.add(schema_url=draw(texts))
            ss.scope.CopyFrom(InstrumentationScope(
                name=draw(texts), version=draw(texts), attributes=draw(attributes),
                dropped_attributes_count=draw(uint32)))
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
    return request


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    """OTLP/JSON of ``request``: protobuf's JSON mapping with hex trace and span ids."""
    doc = json_format.MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for item in [span, *span.get("links", [])]:
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in item:
                            item[key] = base64.b64decode(item[key]).hex()
    return json.dumps(doc).encode()


def count_elements(message: Any) -> int:
    """Every message (and repeated string) below ``message``, as upb built them."""
    total = 0
    for field, value in message.ListFields():
        if field.message_type is not None:
            children = list(value) if field.is_repeated else [value]
            total += len(children) + sum(count_elements(child) for child in children)
        elif field.is_repeated:
            total += len(value)
    return total


def count_spans(request: ExportTraceServiceRequest) -> int:
    """The spans of a request."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


class TestRoundTrip:
    """Valid requests decode to themselves."""

    @FUZZ
    @given(requests())
    def test_protobuf(self, request: ExportTraceServiceRequest) -> None:
        """protobuf -> parse_protobuf == the original; the walk counts it exactly."""
        body = request.SerializeToString()
        assert parse_protobuf(body) == request
        spans, elements = limits._walk(body, 10**9, 10**9)
        assert (spans, elements) == (count_spans(request), count_elements(request))
        assert parse_protobuf(body, max_spans=spans, max_elements=elements) == request

    @FUZZ
    @given(requests())
    def test_json(self, request: ExportTraceServiceRequest) -> None:
        """protobuf -> OTLP/JSON -> parse_json == the original."""
        assert parse_json(otlp_json(request)) == request


# --------------------------------------------------------------------- arbitrary protobuf


@st.composite
def wire(draw: st.DrawFn, depth: int = 0) -> bytes:
    """Random protobuf wire format: fields with small field numbers (OTLP's are 1-16),
    every wire type, nested messages, groups, and now and then a broken byte."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 4))):
        number = draw(st.integers(0, 17))
        wire_type = draw(st.sampled_from([0, 1, 2, 2, 2, 3, 5]))
        out += _varint(number << 3 | wire_type)
        if wire_type == 0:
            out += _varint(draw(st.integers(0, 2**64 - 1)))
        elif wire_type == 1:
            out += draw(st.binary(min_size=8, max_size=8))
        elif wire_type == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire_type == 3:
            if depth < 4:
                out += draw(wire(depth + 1))
            out += _varint(number << 3 | 4)
        else:
            payload = draw(wire(depth + 1)) if depth < 6 and draw(st.booleans()) \
                else draw(st.binary(max_size=20))
            out += _varint(len(payload)) + payload
    if draw(st.integers(0, 9)) == 0 and out:  # corrupt one byte
        at = draw(st.integers(0, len(out) - 1))
        out[at] = draw(st.integers(0, 255))
    return bytes(out)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A valid request's bytes with a few bytes changed, inserted or removed."""
    body = bytearray(draw(requests()).SerializeToString())
    for _ in range(draw(st.integers(1, 3))):
        if not body:
            break
        at = draw(st.integers(0, len(body) - 1))
        action = draw(st.sampled_from(["set", "insert", "delete"]))
        if action == "set":
            body[at] = draw(st.integers(0, 255))
        elif action == "insert":
            body[at:at] = draw(st.binary(min_size=1, max_size=3))
        else:
            del body[at]
    return bytes(body)


protobuf_bodies = st.one_of(st.binary(max_size=300), wire(), mutated_requests())
limit_values = st.integers(0, 40)


class TestProtobuf:
    """Any bytes: a request within the limits, or DecodeError / PayloadTooLarge."""

    @FUZZ
    @given(protobuf_bodies, limit_values, limit_values)
    def test_outcomes(self, body: bytes, max_spans: int, max_elements: int) -> None:
        """Nothing but the two errors escapes; a request returned is within the limits."""
        try:
            request = parse_protobuf(body, max_spans=max_spans, max_elements=max_elements)
        except (DecodeError, PayloadTooLarge) as error:
            assert error.message
            return
        assert count_spans(request) <= max_spans
        assert count_elements(request) <= max_elements

    @FUZZ
    @given(protobuf_bodies)
    def test_walk_agrees_with_upb(self, body: bytes) -> None:
        """The walk refuses (malformed, too deep) only what upb refuses; on what upb
        accepts it counts exactly its spans and at least its elements."""
        try:
            parsed: ExportTraceServiceRequest | None = ExportTraceServiceRequest.FromString(
                body)
        except ProtobufDecodeError:
            parsed = None
        try:
            spans, elements = limits._walk(body, 10**9, 10**9)
        except DecodeError as error:
            assert parsed is None, f"walk refused what upb accepts: {error.message}"
            return
        if parsed is not None:
            assert spans == count_spans(parsed)
            assert elements >= count_elements(parsed)

    @FUZZ
    @given(protobuf_bodies)
    def test_span_count_agrees(self, body: bytes) -> None:
        """upb's lite span count (spans as opaque bytes) equals the real one wherever
        upb parses the body."""
        try:
            parsed = ExportTraceServiceRequest.FromString(body)
        except ProtobufDecodeError:
            return
        assert limits._span_count(body) == count_spans(parsed)


# ------------------------------------------------------------------------ arbitrary JSON

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(),
                         st.text(max_size=8))
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=6), children, max_size=4)),
    max_leaves=20,
)
SPAN_KEYS = ["traceId", "spanId", "parentSpanId", "traceState", "flags", "name", "kind",
             "startTimeUnixNano", "endTimeUnixNano", "attributes", "events", "links",
             "status", "droppedAttributesCount", "trace_id", "start_time_unix_nano"]
VALUE_KEYS = ["stringValue", "intValue", "boolValue", "doubleValue", "arrayValue",
              "kvlistValue", "bytesValue", "values", "key", "value"]


def _shaped(keys: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(keys), json_values | otlp_like_values,
                           max_size=5)


otlp_like_values: st.SearchStrategy[Any] = st.deferred(lambda: st.one_of(
    st.lists(_shaped(VALUE_KEYS), max_size=3),
    _shaped(VALUE_KEYS),
))


@st.composite
def otlp_like(draw: st.DrawFn) -> Any:
    """A document shaped like OTLP/JSON, with arbitrary JSON in its members."""
    span = draw(_shaped(SPAN_KEYS))
    scope_spans = {"spans": draw(st.sampled_from([[span], span, [span, 1], None]))}
    if draw(st.booleans()):
        scope_spans["scope"] = draw(json_values | _shaped(["name", "attributes"]))
    resource_spans = {"scopeSpans": [scope_spans],
                      "resource": draw(json_values | _shaped(["attributes"]))}
    return {"resourceSpans": draw(st.sampled_from([[resource_spans], resource_spans]))}


def count_json_values(value: Any) -> int:
    """JSON values of ``value`` as ``limits.check_json`` counts them: one each, plus one
    per empty object or array."""
    if isinstance(value, dict):
        return 1 + (not value) + sum(count_json_values(v) for v in value.values())
    if isinstance(value, list):
        return 1 + (not value) + sum(count_json_values(v) for v in value)
    return 1


class TestJSON:
    """Any bytes, any JSON: a request within the limits, or DecodeError /
    PayloadTooLarge."""

    @FUZZ
    @given(st.one_of(json_values, otlp_like()), limit_values, st.integers(0, 200))
    def test_outcomes(self, doc: Any, max_spans: int, max_elements: int) -> None:
        """Nothing but the two errors escapes; the limits hold."""
        body = json.dumps(doc).encode()
        try:
            request = parse_json(body, max_spans=max_spans, max_elements=max_elements)
        except (DecodeError, PayloadTooLarge) as error:
            assert error.message
            return
        assert count_spans(request) <= max_spans
        assert count_json_values(doc) <= max_elements

    @FUZZ
    @given(st.binary(max_size=200))
    def test_bytes(self, body: bytes) -> None:
        """Arbitrary bytes (not UTF-8, not JSON) are refused cleanly."""
        try:
            parse_json(body)
        except (DecodeError, PayloadTooLarge):
            pass

    @FUZZ
    @given(json_values, st.booleans())
    def test_value_count_is_exact(self, doc: Any, ascii_only: bool) -> None:
        """``check_json`` counts the values exactly, whatever the strings hold (commas,
        brackets, escaped quotes and backslashes, non-ASCII)."""
        text = json.dumps(doc, ensure_ascii=ascii_only)
        count = count_json_values(doc)
        limits.check_json(text, count)
        if count > 1:
            with pytest.raises(PayloadTooLarge):
                limits.check_json(text, count - 1)


# ------------------------------------------------------------------------------- gzip


def _members(parts: list[bytes], levels: list[int]) -> bytes:
    out = io.BytesIO()
    for part, level in zip(parts, levels, strict=False):
        with gzip.GzipFile(fileobj=out, mode="ab", compresslevel=level) as writer:
            writer.write(part)
    return out.getvalue()


class TestGunzip:
    """Any bytes: the inflated bytes within the cap, or DecodeError / PayloadTooLarge."""

    @FUZZ
    @given(st.lists(st.binary(max_size=300), min_size=1, max_size=4),
           st.lists(st.integers(0, 9), min_size=4, max_size=4), st.integers(0, 1500))
    def test_members(self, parts: list[bytes], levels: list[int], limit: int) -> None:
        """Every member, concatenated, when within the cap; PayloadTooLarge otherwise."""
        body = _members(parts, levels)
        expected = b"".join(parts)
        if len(expected) <= limit:
            assert gunzip(body, limit) == expected
        else:
            with pytest.raises(PayloadTooLarge):
                gunzip(body, limit)

    @FUZZ
    @given(st.binary(max_size=200), st.binary(max_size=8), st.integers(0, 400),
           st.data())
    def test_corrupted(self, data: bytes, tail: bytes, limit: int,
                       draw: st.DataObject) -> None:
        """A gzip body with a byte changed, truncated, or with bytes appended: nothing but
        the two errors, and never more than the cap."""
        body = bytearray(gzip.compress(data))
        action = draw.draw(st.sampled_from(["set", "truncate", "append", "raw"]))
        if action == "set":
            body[draw.draw(st.integers(0, len(body) - 1))] = draw.draw(st.integers(0, 255))
        elif action == "truncate":
            del body[draw.draw(st.integers(0, len(body) - 1)):]
        elif action == "append":
            body += tail
        else:
            body = bytearray(data)
        try:
            out = gunzip(bytes(body), limit)
        except (DecodeError, PayloadTooLarge):
            return
        assert len(out) <= limit
        if action == "append" and tail:
            # accepted only when the tail is itself a gzip member
            assert tail[:2] == b"\x1f\x8b"
        try:
            reference = gzip.decompress(bytes(body))
        except (OSError, EOFError, zlib.error):
            return
        assert out == reference
