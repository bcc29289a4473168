"""OTLP request bodies -> ``ExportTraceServiceRequest`` (``parse_protobuf``,
``parse_json``) or ``ExportLogsServiceRequest`` (``parse_logs_protobuf``,
``parse_logs_json``). Pure functions, no I/O.

* protobuf: the wire format, parsed by the upb backend.
* JSON (OTLP/JSON): lowerCamelCase or original field names, trace and span ids as hex
  (not base64 as protobuf's JSON mapping has it), 64-bit integers as strings or numbers,
  enums as numbers; unknown fields are ignored, as the OTLP specification requires.
  Integer fields take integral numbers within their protobuf type (``fixed64`` times,
  ``uint32`` counts, ``fixed32`` flags, ``int64`` values, ``int32`` enums).
* gzip: every member of the body (RFC 1952 allows several), inflated in steps with one
  cap for all of them, so a small body that would inflate past the limit is refused after
  inflating no more than the limit; bytes after the last member are refused.

What a request may materialise is bounded before anything is built (``receiver.limits``):
``max_spans`` spans and ``max_elements`` elements (``PayloadTooLarge``), messages nested
at most ``MAX_DEPTH`` levels below the request in both encodings (``DecodeError``).

Errors are ``errors.DecodeError`` (malformed: HTTP 400 / gRPC INVALID_ARGUMENT) and
``errors.PayloadTooLarge`` (HTTP 413), each with a message saying what is wrong; nothing
else is raised for any input (``tests/reliability/test_decode_fuzz.py``). The functions
are CPU-bound (a 5 MB body takes ~10 ms as protobuf, ~0.4 s as JSON): call them off the
event loop.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import zlib
from typing import Any

from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, SeverityNumber
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from phospho_otel.errors import DecodeError, PayloadTooLarge
from phospho_otel.receiver.limits import (
    MAX_DEPTH,
    MAX_ELEMENTS,
    MAX_SPANS,
    check_json,
    check_protobuf,
    depth_error,
    too_many_spans,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "MAX_GZIP_MEMBERS",
    "MAX_SPANS",
    "gunzip",
    "parse_json",
    "parse_logs_json",
    "parse_logs_protobuf",
    "parse_protobuf",
]

MAX_GZIP_MEMBERS = 1000
"""Members a gzip body may have. Writers produce one, or a few when streams are
concatenated; each costs ~2 us to start, so 3 million empty ones (64 MB) would cost
seconds."""

_GZIP_MAGIC = b"\x1f\x8b"


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body: every member, concatenated (RFC 1952 §2.2).

    Raises ``PayloadTooLarge`` as soon as the output would exceed ``limit`` bytes (never
    holding more than ``limit + 1`` bytes of output, plus the copy returned) or when the
    body has more than ``MAX_GZIP_MEMBERS`` members; ``DecodeError`` for a malformed or
    truncated member, or for bytes after the last member that do not start one (trailing
    garbage, zero padding)."""
    view = memoryview(body)
    size = len(body)
    out = bytearray()
    pos = 0  # the offset in body of the next byte to hand to an inflater
    for _ in range(MAX_GZIP_MEMBERS):
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        step = 64  # input handed at a time, doubling: what follows a member is copied
        while not inflater.eof:
            if pos >= size:
                raise DecodeError("malformed gzip body: truncated stream")
            data = view[pos:pos + step]
            pos += len(data)
            step = min(step * 2, 1 << 20)
            try:
                out += inflater.decompress(data, limit - len(out) + 1)
            except zlib.error as exc:
                raise DecodeError(f"malformed gzip body: {exc}") from exc
            if len(out) > limit:
                raise PayloadTooLarge(f"gzip body inflates past the limit of {limit} bytes")
        pos -= len(inflater.unused_data)  # where this member ended
        if pos == size:
            return bytes(out)
        if view[pos:pos + 2] != _GZIP_MAGIC:
            raise DecodeError(f"malformed gzip body: {size - pos} trailing bytes after the "
                              f"gzip member ending at byte {pos}")
    raise PayloadTooLarge(f"gzip body has more than {MAX_GZIP_MEMBERS} members")


def parse_protobuf(body: bytes, *, max_spans: int = MAX_SPANS,
                   max_elements: int = MAX_ELEMENTS) -> ExportTraceServiceRequest:
    """Parse an OTLP/protobuf ``ExportTraceServiceRequest``.

    Raises ``PayloadTooLarge`` when it holds more than ``max_spans`` spans or
    ``max_elements`` elements (counted before upb builds anything), ``DecodeError`` when
    it is malformed or nests messages deeper than ``MAX_DEPTH`` levels."""
    check_protobuf(body, max_spans, max_elements)
    try:
        return ExportTraceServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        if "MaxDepth" in str(exc):
            raise depth_error() from None
        raise DecodeError(
            f"malformed protobuf: not an OTLP ExportTraceServiceRequest ({exc})"
        ) from exc


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _show(value: Any) -> str:
    """``repr(value)``, shortened for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..." + text[-7:]


def _hex_id(value: Any, size: int, where: str) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise DecodeError(f"{where}: expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise DecodeError(f"{where}: {_show(value)} is not hex") from None
    if len(raw) != size:
        raise DecodeError(f"{where}: expected {size} bytes, got {len(raw)}")
    return raw


_RANGES = {
    "fixed64": (0, 2**64 - 1),
    "fixed32": (0, 2**32 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "int32": (-(2**31), 2**31 - 1),
}
"""The protobuf integer types of OTLP's fields -> their (lowest, highest) value."""


def _int(value: Any, where: str, kind: str) -> int:
    """An integer field of protobuf type ``kind``: a JSON number with an integral value
    or a decimal string, within the type's range."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise DecodeError(f"{where}: expected an integer, got {type(value).__name__}")
    if isinstance(value, float):
        if not (math.isfinite(value) and value.is_integer()):
            raise DecodeError(f"{where}: {_show(value)} is not an integer")
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            raise DecodeError(f"{where}: {_show(value)} is not an integer") from None
    else:
        number = value
    low, high = _RANGES[kind]
    if not low <= number <= high:
        raise DecodeError(f"{where}: {_show(value)} is out of range ({kind}: {low} to {high})")
    return number


def _enum(value: Any, names: Any, where: str) -> int:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            return int(names.Value(value))
        except ValueError:
            raise DecodeError(f"{where}: unknown value {_show(value)}") from None
    return _int(value, where, "int32")


def _list(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = _field(obj, camel, snake)
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError(f"{where}.{camel}: expected an array, got {type(value).__name__}")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _any_value(value: Any, where: str, level: int) -> dict[str, Any]:
    """OTLP/JSON AnyValue at ``level`` (levels below the request) -> constructor keywords
    of ``AnyValue``."""
    if level > MAX_DEPTH:
        raise depth_error(where)
    if value is None:
        return {}
    value = _dict(value, where)
    if "stringValue" in value or "string_value" in value:
        text = _field(value, "stringValue", "string_value")
        if not isinstance(text, str):
            raise DecodeError(f"{where}.stringValue: expected a string")
        return {"string_value": text}
    if "intValue" in value or "int_value" in value:
        return {"int_value": _int(_field(value, "intValue", "int_value"), f"{where}.intValue",
                                  "int64")}
    if "boolValue" in value or "bool_value" in value:
        flag = _field(value, "boolValue", "bool_value")
        if not isinstance(flag, bool):
            raise DecodeError(f"{where}.boolValue: expected true or false")
        return {"bool_value": flag}
    if "doubleValue" in value or "double_value" in value:
        number = _field(value, "doubleValue", "double_value")
        try:
            return {"double_value": float(number)}
        except (TypeError, ValueError, OverflowError):
            raise DecodeError(f"{where}.doubleValue: {_show(number)} is not a double") from None
    if "arrayValue" in value or "array_value" in value:
        at = f"{where}.arrayValue"
        if level + 1 > MAX_DEPTH:
            raise depth_error(at)
        array = _dict(_field(value, "arrayValue", "array_value"), at)
        values = _list(array, "values", "values", at)
        return {"array_value": {"values": [
            _any_value(v, f"{at}.values[{i}]", level + 2) for i, v in enumerate(values)
        ]}}
    if "kvlistValue" in value or "kvlist_value" in value:
        at = f"{where}.kvlistValue"
        if level + 1 > MAX_DEPTH:
            raise depth_error(at)
        kvlist = _dict(_field(value, "kvlistValue", "kvlist_value"), at)
        return {"kvlist_value": {"values": _attributes(kvlist, at, level + 2, "values")}}
    if "bytesValue" in value or "bytes_value" in value:
        data = _field(value, "bytesValue", "bytes_value")
        try:
            return {"bytes_value": base64.b64decode(data, validate=True)}
        except (binascii.Error, TypeError, ValueError):
            raise DecodeError(f"{where}.bytesValue: not base64") from None
    return {}


def _attributes(obj: dict[str, Any], where: str, level: int,
                field: str = "attributes") -> list[Any]:
    """The KeyValues of ``obj[field]``, at ``level``, as constructor keywords."""
    out = []
    for i, kv in enumerate(_list(obj, field, field, where)):
        at = f"{where}.{field}[{i}]"
        if level > MAX_DEPTH:
            raise depth_error(at)
        kv = _dict(kv, at)
        key = kv.get("key", "")
        if not isinstance(key, str):
            raise DecodeError(f"{at}.key: expected a string")
        out.append({"key": key, "value": _any_value(kv.get("value"), f"{at}.value",
                                                    level + 1)})
    return out


def _string(obj: dict[str, Any], camel: str, snake: str, where: str) -> str:
    value = _field(obj, camel, snake)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{where}.{camel}: expected a string, got {type(value).__name__}")
    return value


def _count(obj: dict[str, Any], camel: str, snake: str, where: str) -> int:
    """A ``uint32`` dropped-items count."""
    return _int(_field(obj, camel, snake), f"{where}.{camel}", "uint32")


_SPAN_LEVEL = 3
"""Levels below the request of a span (request > resourceSpans > scopeSpans > span)."""


def _span(span: dict[str, Any], where: str) -> dict[str, Any]:
    """OTLP/JSON Span -> constructor keywords of ``Span``."""
    child = _SPAN_LEVEL + 1
    kw: dict[str, Any] = {
        "trace_id": _hex_id(_field(span, "traceId", "trace_id"), 16, f"{where}.traceId"),
        "span_id": _hex_id(_field(span, "spanId", "span_id"), 8, f"{where}.spanId"),
        "parent_span_id": _hex_id(
            _field(span, "parentSpanId", "parent_span_id"), 8, f"{where}.parentSpanId"
        ),
        "trace_state": _string(span, "traceState", "trace_state", where),
        "flags": _int(span.get("flags"), f"{where}.flags", "fixed32"),
        "name": _string(span, "name", "name", where),
        "kind": _enum(span.get("kind", 0), Span.SpanKind, f"{where}.kind"),
        "start_time_unix_nano": _int(
            _field(span, "startTimeUnixNano", "start_time_unix_nano"),
            f"{where}.startTimeUnixNano", "fixed64",
        ),
        "end_time_unix_nano": _int(
            _field(span, "endTimeUnixNano", "end_time_unix_nano"),
            f"{where}.endTimeUnixNano", "fixed64",
        ),
        "attributes": _attributes(span, where, child),
        "dropped_attributes_count": _count(
            span, "droppedAttributesCount", "dropped_attributes_count", where),
        "dropped_events_count": _count(
            span, "droppedEventsCount", "dropped_events_count", where),
        "dropped_links_count": _count(
            span, "droppedLinksCount", "dropped_links_count", where),
    }
    events = _list(span, "events", "events", where)
    if events:
        kw["events"] = []
        for i, event in enumerate(events):
            at = f"{where}.events[{i}]"
            event = _dict(event, at)
            kw["events"].append({
                "time_unix_nano": _int(_field(event, "timeUnixNano", "time_unix_nano"),
                                       f"{at}.timeUnixNano", "fixed64"),
                "name": _string(event, "name", "name", at),
                "attributes": _attributes(event, at, child + 1),
                "dropped_attributes_count": _count(
                    event, "droppedAttributesCount", "dropped_attributes_count", at),
            })
    links = _list(span, "links", "links", where)
    if links:
        kw["links"] = []
        for i, link in enumerate(links):
            at = f"{where}.links[{i}]"
            link = _dict(link, at)
            kw["links"].append({
                "trace_id": _hex_id(_field(link, "traceId", "trace_id"), 16, f"{at}.traceId"),
                "span_id": _hex_id(_field(link, "spanId", "span_id"), 8, f"{at}.spanId"),
                "trace_state": _string(link, "traceState", "trace_state", at),
                "attributes": _attributes(link, at, child + 1),
                "dropped_attributes_count": _count(
                    link, "droppedAttributesCount", "dropped_attributes_count", at),
                "flags": _int(link.get("flags"), f"{at}.flags", "fixed32"),
            })
    status = span.get("status")
    if status is not None:
        status = _dict(status, f"{where}.status")
        kw["status"] = {
            "code": _enum(status.get("code", 0), Status.StatusCode, f"{where}.status.code"),
            "message": _string(status, "message", "message", f"{where}.status"),
        }
    return kw


def _resource_like(obj: Any, where: str, level: int) -> dict[str, Any]:
    """A resource or an instrumentation scope at ``level`` -> constructor keywords."""
    if obj is None:
        return {}
    obj = _dict(obj, where)
    kw: dict[str, Any] = {
        "attributes": _attributes(obj, where, level + 1),
        "dropped_attributes_count": _count(
            obj, "droppedAttributesCount", "dropped_attributes_count", where),
    }
    if "name" in obj or "version" in obj:
        kw["name"] = _string(obj, "name", "name", where)
        kw["version"] = _string(obj, "version", "version", where)
    return kw


def _load(body: bytes, max_elements: int) -> Any:
    """``json.loads(body)`` once the values it would build are counted (``limits``)."""
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError) as exc:
        raise DecodeError(f"malformed JSON: {exc}") from exc
    check_json(text, max_elements)
    try:
        return json.loads(text)
    except RecursionError:
        raise DecodeError("malformed JSON: nested too deeply for the JSON parser") from None
    except ValueError as exc:
        raise DecodeError(f"malformed JSON: {exc}") from exc


def _span_total(doc: dict[str, Any]) -> int:
    """The spans of a decoded document, counted before any is built (what is not an
    array or an object here is reported by the conversion)."""
    total = 0
    resource_spans = _field(doc, "resourceSpans", "resource_spans")
    for rs in resource_spans if isinstance(resource_spans, list) else ():
        scope_spans = _field(rs, "scopeSpans", "scope_spans") if isinstance(rs, dict) else None
        for ss in scope_spans if isinstance(scope_spans, list) else ():
            spans = ss.get("spans") if isinstance(ss, dict) else None
            total += len(spans) if isinstance(spans, list) else 0
    return total


def parse_json(body: bytes, *, max_spans: int = MAX_SPANS,
               max_elements: int = MAX_ELEMENTS) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``: messages are built straight from
    the decoded JSON (no ``json_format``, which is ~15 times slower).

    Raises ``PayloadTooLarge`` when the body holds more than ``max_elements`` JSON values
    (counted before ``json.loads``) or more than ``max_spans`` spans (counted before any
    span is built), ``DecodeError`` when it is not OTLP/JSON, nests messages deeper than
    ``MAX_DEPTH`` levels, or has an integer field that is not an integer of its type."""
    doc = _dict(_load(body, max_elements), "request")
    if _span_total(doc) > max_spans:
        raise too_many_spans(max_spans)
    request = ExportTraceServiceRequest()
    where = "request"
    try:
        for i, rs in enumerate(_list(doc, "resourceSpans", "resource_spans", "request")):
            where_rs = where = f"resourceSpans[{i}]"
            rs = _dict(rs, where_rs)
            resource_spans = request.resource_spans.add(
                schema_url=_string(rs, "schemaUrl", "schema_url", where_rs)
            )
            where = f"{where_rs}.resource"
            resource = _resource_like(rs.get("resource"), where, 2)
            resource.pop("name", None)
            resource.pop("version", None)
            resource_spans.resource.MergeFrom(Resource(**resource))
            for j, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", where_rs)):
                where_ss = where = f"{where_rs}.scopeSpans[{j}]"
                ss = _dict(ss, where_ss)
                scope_spans = resource_spans.scope_spans.add(
                    schema_url=_string(ss, "schemaUrl", "schema_url", where_ss)
                )
                scope = _resource_like(ss.get("scope"), f"{where_ss}.scope", _SPAN_LEVEL)
                scope_spans.scope.MergeFrom(InstrumentationScope(**scope))
                spans = scope_spans.spans
                for k, span in enumerate(_list(ss, "spans", "spans", where_ss)):
                    where = f"{where_ss}.spans[{k}]"
                    spans.add(**_span(_dict(span, where), where))
    except DecodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        # what upb refuses in a value already checked: a string that is not UTF-8 (a lone
        # surrogate from a \ud800 escape)
        raise DecodeError(f"malformed OTLP/JSON at {where}: {exc}") from exc
    return request


# ----------------------------------------------------------------------------- logs


def parse_logs_protobuf(body: bytes, *,
                        max_elements: int = MAX_ELEMENTS) -> ExportLogsServiceRequest:
    """Parse an OTLP/protobuf ``ExportLogsServiceRequest``.

    A log record is at least 2 bytes on the wire, as is every element, so a body of ``n``
    bytes holds at most ``n // 2`` elements: a body whose ``n // 2`` is over
    ``max_elements`` (8 MB by default) is refused with ``PayloadTooLarge`` unread (log
    batches are far smaller; the trace walk of ``limits`` is not run on logs).
    ``DecodeError`` when it is malformed or nested deeper than upb reads."""
    if len(body) // 2 > max_elements:
        raise PayloadTooLarge(f"logs request of {len(body)} bytes is over the limit of "
                              f"{2 * max_elements} bytes: send smaller batches")
    try:
        return ExportLogsServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        if "MaxDepth" in str(exc):
            raise depth_error() from None
        raise DecodeError(
            f"malformed protobuf: not an OTLP ExportLogsServiceRequest ({exc})"
        ) from exc


_LOG_LEVEL = 3
"""Levels below the request of a log record (request > resourceLogs > scopeLogs > record)."""


def _log_record(record: dict[str, Any], where: str) -> dict[str, Any]:
    """OTLP/JSON LogRecord -> constructor keywords of ``LogRecord``."""
    child = _LOG_LEVEL + 1
    kw: dict[str, Any] = {
        "time_unix_nano": _int(_field(record, "timeUnixNano", "time_unix_nano"),
                               f"{where}.timeUnixNano", "fixed64"),
        "observed_time_unix_nano": _int(
            _field(record, "observedTimeUnixNano", "observed_time_unix_nano"),
            f"{where}.observedTimeUnixNano", "fixed64"),
        "severity_number": _enum(_field(record, "severityNumber", "severity_number") or 0,
                                 SeverityNumber, f"{where}.severityNumber"),
        "severity_text": _string(record, "severityText", "severity_text", where),
        "attributes": _attributes(record, where, child),
        "dropped_attributes_count": _count(
            record, "droppedAttributesCount", "dropped_attributes_count", where),
        "flags": _int(record.get("flags"), f"{where}.flags", "fixed32"),
        "trace_id": _hex_id(_field(record, "traceId", "trace_id"), 16, f"{where}.traceId"),
        "span_id": _hex_id(_field(record, "spanId", "span_id"), 8, f"{where}.spanId"),
        "event_name": _string(record, "eventName", "event_name", where),
    }
    body = record.get("body")
    if body is not None:
        kw["body"] = _any_value(body, f"{where}.body", child)
    return kw


def parse_logs_json(body: bytes, *,
                    max_elements: int = MAX_ELEMENTS) -> ExportLogsServiceRequest:
    """Parse an OTLP/JSON ``ExportLogsServiceRequest``, with the rules of ``parse_json``
    (hex ids, integers as strings or numbers, unknown fields ignored, ``max_elements``
    JSON values at most, ``MAX_DEPTH`` levels)."""
    doc = _dict(_load(body, max_elements), "request")
    request = ExportLogsServiceRequest()
    where = "request"
    try:
        for i, rl in enumerate(_list(doc, "resourceLogs", "resource_logs", "request")):
            where_rl = where = f"resourceLogs[{i}]"
            rl = _dict(rl, where_rl)
            resource_logs = request.resource_logs.add(
                schema_url=_string(rl, "schemaUrl", "schema_url", where_rl))
            resource = _resource_like(rl.get("resource"), f"{where_rl}.resource", 2)
            resource.pop("name", None)
            resource.pop("version", None)
            resource_logs.resource.MergeFrom(Resource(**resource))
            for j, sl in enumerate(_list(rl, "scopeLogs", "scope_logs", where_rl)):
                where_sl = where = f"{where_rl}.scopeLogs[{j}]"
                sl = _dict(sl, where_sl)
                scope_logs = resource_logs.scope_logs.add(
                    schema_url=_string(sl, "schemaUrl", "schema_url", where_sl))
                scope = _resource_like(sl.get("scope"), f"{where_sl}.scope", _LOG_LEVEL)
                scope_logs.scope.MergeFrom(InstrumentationScope(**scope))
                records = scope_logs.log_records
                for k, record in enumerate(_list(sl, "logRecords", "log_records", where_sl)):
                    where = f"{where_sl}.logRecords[{k}]"
                    records.append(LogRecord(**_log_record(_dict(record, where), where)))
    except DecodeError:
        raise
    except (TypeError, ValueError, OverflowError) as exc:
        raise DecodeError(f"malformed OTLP/JSON at {where}: {exc}") from exc
    return request
