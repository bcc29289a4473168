"""OTLP request bodies -> ``ExportTraceServiceRequest``. Pure functions, no I/O.

* protobuf: the wire format, parsed by the upb backend.
* JSON (OTLP/JSON): lowerCamelCase or original field names, trace and span ids as hex
  (not base64 as protobuf's JSON mapping has it), 64-bit integers as strings or numbers,
  enums as numbers; unknown fields are ignored, as the OTLP specification requires.
* gzip: inflated in steps with a cap, so a small body that would inflate past the limit
  is refused after inflating no more than the limit.

Errors are ``DecodeError`` (malformed: HTTP 400 / gRPC INVALID_ARGUMENT) and
``BodyTooLarge`` (HTTP 413), each with a message saying what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

__all__ = ["BodyTooLarge", "DecodeError", "gunzip", "parse_json", "parse_protobuf"]


class DecodeError(ValueError):
    """The body is not a valid OTLP export request."""


class BodyTooLarge(ValueError):
    """The body, once inflated, is larger than the limit."""


def gunzip(body: bytes, limit: int) -> bytes:
    """Inflate a gzip body, refusing (``BodyTooLarge``) as soon as the output would exceed
    ``limit`` bytes; never holds more than ``limit + 64 KiB`` of output."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while data:
            chunk = inflater.decompress(data, 65536)
            out += chunk
            if len(out) > limit:
                raise BodyTooLarge(f"gzip body inflates past the limit of {limit} bytes")
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
        if not inflater.eof:
            tail = inflater.flush()
            out += tail
            if len(out) > limit:
                raise BodyTooLarge(f"gzip body inflates past the limit of {limit} bytes")
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


_ID_FIELDS = {
    "traceId": 16,
    "trace_id": 16,
    "spanId": 8,
    "span_id": 8,
    "parentSpanId": 8,
    "parent_span_id": 8,
}


def _hex_ids_to_base64(obj: dict[str, Any], where: str) -> None:
    for key, size in _ID_FIELDS.items():
        value = obj.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise DecodeError(f"{where}.{key}: expected a hex string, got {type(value).__name__}")
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raise DecodeError(f"{where}.{key}: {value!r} is not hex") from None
        if len(raw) != size:
            raise DecodeError(f"{where}.{key}: expected {size} bytes, got {len(raw)}")
        obj[key] = base64.b64encode(raw).decode("ascii")


def _list(obj: dict[str, Any], camel: str, snake: str, where: str) -> list[Any]:
    value = obj.get(camel, obj.get(snake))
    if value is None:
        return []
    if not isinstance(value, list):
        raise DecodeError(f"{where}.{camel}: expected an array, got {type(value).__name__}")
    return value


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DecodeError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def parse_json(body: bytes) -> ExportTraceServiceRequest:
    """Parse an OTLP/JSON ``ExportTraceServiceRequest``."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(f"malformed JSON: {exc}") from exc
    doc = _dict(doc, "request")
    for i, rs in enumerate(_list(doc, "resourceSpans", "resource_spans", "request")):
        where_rs = f"resourceSpans[{i}]"
        rs = _dict(rs, where_rs)
        for j, ss in enumerate(_list(rs, "scopeSpans", "scope_spans", where_rs)):
            where_ss = f"{where_rs}.scopeSpans[{j}]"
            ss = _dict(ss, where_ss)
            for k, span in enumerate(_list(ss, "spans", "spans", where_ss)):
                where = f"{where_ss}.spans[{k}]"
                span = _dict(span, where)
                _hex_ids_to_base64(span, where)
                for n, link in enumerate(_list(span, "links", "links", where)):
                    _hex_ids_to_base64(_dict(link, f"{where}.links[{n}]"), f"{where}.links[{n}]")
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(doc, request, ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise DecodeError(f"malformed OTLP/JSON: {exc}") from exc
    return request
