"""OTLP request bodies -> ``ExportTraceServiceRequest``. Pure functions, no I/O.

* protobuf: the wire format, parsed by the upb backend.
* JSON (OTLP/JSON): lowerCamelCase or original field names, trace and span ids as hex
  (not base64 as protobuf's JSON mapping has it), 64-bit integers as strings or numbers,
  enums as numbers; unknown fields are ignored, as the OTLP specification requires.
* gzip: inflated in steps with a cap, so a small body that would inflate past the limit
  is refused after inflating no more than the limit.

Errors are ``errors.DecodeError`` (malformed: HTTP 400 / gRPC INVALID_ARGUMENT) and
``errors.PayloadTooLarge`` (HTTP 413), each with a message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from phospho_otel.errors import DecodeError, PayloadTooLarge

__all__ = ["gunzip", "parse_json", "parse_protobuf"]


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (``PayloadTooLarge``) as soon as the output would exceed
    ``limit`` bytes; never holds more than ``limit + 64 KiB`` of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while data:
            chunk = inflater.decompress(data, 65536)
            out += chunk
            if len(out) > limit:
                raise PayloadTooLarge(f"gzip body inflates past the limit of {limit} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            tail = inflater.flush()
            out += tail
            if len(out) > limit:
                raise PayloadTooLarge(f"gzip body inflates past the limit of {limit} bytes")
            if not inflater.eof:
                raise DecodeError("malformed gzip body: truncated stream")
    except zlib.error as exc:
        raise DecodeError(f"malformed gzip body: {exc}") from exc
    return bytes(out)


def parse_protobuf(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/protobuf ``ExportTraceServiceRequest``."""
    try:
        return ExportTraceServiceRequest.FromString(body)
    except _ProtobufDecodeError as exc:
        raise DecodeError(
            f"malformed protobuf: not an OTLP ExportTraceServiceRequest ({exc})"
        ) from exc


def _field(obj: dict[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _hex_id(value: Any, size: int, where: str) -> bytes:
    if value is None or value == "":
        return b""
    if not isinstance(value, str):
        raise DecodeError(f"{where}: expected a hex string, got {type(value).__name__}")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise DecodeError(f"{where}: {value!r} is not hex") from None
    if len(raw) != size:
        raise DecodeError(f"{where}: expected {size} bytes, got {len(raw)}")
    return raw


def _int(value: Any, where: str) -> int:
    """An int64/uint64 field: a JSON number or a decimal string."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, str, float)):
        raise DecodeError(f"{where}: expected an integer, got {type(value).__name__}")
    try:
        number = int(value)
    except ValueError:
        raise DecodeError(f"{where}: {value!r} is not an integer") from None
    if isinstance(value, float) and number != value:
        raise DecodeError(f"{where}: {value!r} is not an integer")
    return number


def _enum(value: Any, names: Any, where: str) -> int:
    if isinstance(value, str) and not value.lstrip("-").isdigit():
        try:
            return int(names.Value(value))
        except ValueError:
            raise DecodeError(f"{where}: unknown value {value!r}") from None
    return _int(value, where)


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


def _any_value(value: Any, where: str) -> dict[str, Any]:
    """OTLP/JSON AnyValue -> constructor keywords of ``AnyValue``."""
    if value is None:
        return {}
    value = _dict(value, where)
    if "stringValue" in value or "string_value" in value:
        text = _field(value, "stringValue", "string_value")
        if not isinstance(text, str):
            raise DecodeError(f"{where}.stringValue: expected a string")
        return {"string_value": text}
    if "intValue" in value or "int_value" in value:
        return {"int_value": _int(_field(value, "intValue", "int_value"), f"{where}.intValue")}
    if "boolValue" in value or "bool_value" in value:
        flag = _field(value, "boolValue", "bool_value")
        if not isinstance(flag, bool):
            raise DecodeError(f"{where}.boolValue: expected true or false")
        return {"bool_value": flag}
    if "doubleValue" in value or "double_value" in value:
        number = _field(value, "doubleValue", "double_value")
        try:
            return {"double_value": float(number)}
        except (TypeError, ValueError):
            raise DecodeError(f"{where}.doubleValue: {number!r} is not a number") from None
    if "arrayValue" in value or "array_value" in value:
        array = _dict(_field(value, "arrayValue", "array_value"), f"{where}.arrayValue")
        values = _list(array, "values", "values", f"{where}.arrayValue")
        return {"array_value": {"values": [
            _any_value(v, f"{where}.arrayValue.values[{i}]") for i, v in enumerate(values)
        ]}}
    if "kvlistValue" in value or "kvlist_value" in value:
        kvlist = _dict(_field(value, "kvlistValue", "kvlist_value"), f"{where}.kvlistValue")
        return {"kvlist_value": {"values": _attributes(kvlist, f"{where}.kvlistValue", "values")}}
    if "bytesValue" in value or "bytes_value" in value:
        data = _field(value, "bytesValue", "bytes_value")
        try:
            return {"bytes_value": base64.b64decode(data, validate=True)}
        except (binascii.Error, TypeError, ValueError):
            raise DecodeError(f"{where}.bytesValue: not base64") from None
    return {}


def _attributes(obj: dict[str, Any], where: str, field: str = "attributes") -> list[Any]:
    out = []
    for i, kv in enumerate(_list(obj, field, field, where)):
        at = f"{where}.{field}[{i}]"
        kv = _dict(kv, at)
        key = kv.get("key", "")
        if not isinstance(key, str):
            raise DecodeError(f"{at}.key: expected a string")
        out.append({"key": key, "value": _any_value(kv.get("value"), f"{at}.value")})
    return out


def _string(obj: dict[str, Any], camel: str, snake: str, where: str) -> str:
    value = _field(obj, camel, snake)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise DecodeError(f"{where}.{camel}: expected a string, got {type(value).__name__}")
    return value


def _span(span: dict[str, Any], where: str) -> dict[str, Any]:
    """OTLP/JSON Span -> constructor keywords of ``Span``."""
    kw: dict[str, Any] = {
        "trace_id": _hex_id(_field(span, "traceId", "trace_id"), 16, f"{where}.traceId"),
        "span_id": _hex_id(_field(span, "spanId", "span_id"), 8, f"{where}.spanId"),
        "parent_span_id": _hex_id(
            _field(span, "parentSpanId", "parent_span_id"), 8, f"{where}.parentSpanId"
        ),
        "trace_state": _string(span, "traceState", "trace_state", where),
        "flags": _int(span.get("flags"), f"{where}.flags"),
        "name": _string(span, "name", "name", where),
        "kind": _enum(span.get("kind", 0), Span.SpanKind, f"{where}.kind"),
        "start_time_unix_nano": _int(
            _field(span, "startTimeUnixNano", "start_time_unix_nano"), f"{where}.startTimeUnixNano"
        ),
        "end_time_unix_nano": _int(
            _field(span, "endTimeUnixNano", "end_time_unix_nano"), f"{where}.endTimeUnixNano"
        ),
        "attributes": _attributes(span, where),
        "dropped_attributes_count": _int(
            _field(span, "droppedAttributesCount", "dropped_attributes_count"), where
        ),
        "dropped_events_count": _int(
            _field(span, "droppedEventsCount", "dropped_events_count"), where
        ),
        "dropped_links_count": _int(
            _field(span, "droppedLinksCount", "dropped_links_count"), where
        ),
    }
    events = _list(span, "events", "events", where)
    if events:
        kw["events"] = [
            {
                "time_unix_nano": _int(_field(e, "timeUnixNano", "time_unix_nano"),
                                       f"{where}.events[{i}].timeUnixNano"),
                "name": _string(e, "name", "name", f"{where}.events[{i}]"),
                "attributes": _attributes(e, f"{where}.events[{i}]"),
                "dropped_attributes_count": _int(
                    _field(e, "droppedAttributesCount", "dropped_attributes_count"), where
                ),
            }
            for i, e in enumerate(_dict(e, f"{where}.events[{i}]") for i, e in enumerate(events))
        ]
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
                "attributes": _attributes(link, at),
                "dropped_attributes_count": _int(
                    _field(link, "droppedAttributesCount", "dropped_attributes_count"), at
                ),
                "flags": _int(link.get("flags"), f"{at}.flags"),
            })
    status = span.get("status")
    if status is not None:
        status = _dict(status, f"{where}.status")
        kw["status"] = {
            "code": _enum(status.get("code", 0), Status.StatusCode, f"{where}.status.code"),
            "message": _string(status, "message", "message", f"{where}.status"),
        }
    return kw


def _resource_like(obj: Any, where: str) -> dict[str, Any]:
    if obj is None:
        return {}
    obj = _dict(obj, where)
    kw: dict[str, Any] = {
        "attributes": _attributes(obj, where),
        "dropped_attributes_count": _int(
            _field(obj, "droppedAttributesCount", "dropped_attributes_count"), where
        ),
    }
    if "name" in obj or "version" in obj:
        kw["name"] = _string(obj, "name", "name", where)
        kw["version"] = _string(obj, "version", "version", where)
    return kw


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``: messages are built straight from
    the decoded JSON (no ``json_format``, which is ~15 times slower)."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"malformed JSON: {exc}") from exc
    doc = _dict(doc, "request")
    request = ExportTraceServiceRequest()
    for i, rs in enumerate(_list(doc, "resourceSpans", "resource_spans", "request")):
        where_rs = f"resourceSpans[{i}]"
        rs = _dict(rs, where_rs)
        resource_spans = request.resource_spans.add(
            schema_url=_string(rs, "schemaUrl", "schema_url", where_rs)
        )
        resource = _resource_like(rs.get("resource"), f"{where_rs}.resource")
        resource.pop("name", None)
        resource.pop("version", None)
        try:
            resource_spans.resource.MergeFrom(Resource(**resource))
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"malformed OTLP/JSON at {where_rs}.resource: {exc}") from exc
        for j, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", where_rs)):
            where_ss = f"{where_rs}.scopeSpans[{j}]"
            ss = _dict(ss, where_ss)
            scope_spans = resource_spans.scope_spans.add(
                schema_url=_string(ss, "schemaUrl", "schema_url", where_ss)
            )
            scope = _resource_like(ss.get("scope"), f"{where_ss}.scope")
            spans = scope_spans.spans
            try:
                scope_spans.scope.MergeFrom(InstrumentationScope(**scope))
                for k, span in enumerate(_list(ss, "spans", "spans", where_ss)):
                    where = f"{where_ss}.spans[{k}]"
                    spans.add(**_span(_dict(span, where), where))
            except (TypeError, ValueError) as exc:
                if isinstance(exc, DecodeError):
                    raise
                raise DecodeError(f"malformed OTLP/JSON in {where_ss}: {exc}") from exc
    return request
