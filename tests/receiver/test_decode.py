"""receiver.decode: OTLP protobuf, OTLP/JSON and capped gzip."""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.errors import DecodeError, PayloadTooLarge
from phospho_otel.receiver.decode import gunzip, parse_json, parse_protobuf
from tests.support.otlp import make_request, task_span


def _hex(obj: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in obj:
            obj[key] = base64.b64decode(obj[key]).hex()


def otlp_json(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """A request in OTLP/JSON: camelCase, hex ids, int64 as strings."""
    doc = json_format.MessageToDict(request)
    for rs in doc["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                _hex(span, ("traceId", "spanId", "parentSpanId"))
                for link in span.get("links", []):
                    _hex(link, ("traceId", "spanId"))
    return doc


def rich_request() -> ExportTraceServiceRequest:
    """A request using every field the JSON decoder handles."""
    span = task_span("t", metadata={"n": 2**40, "f": 1.5, "b": True, "l": [1, "x"],
                                    "raw": b"\x00\x01"}, status_code=2,
                     parent_span_id=b"\x07" * 8)
    span.status.message = "boom"
    span.trace_state = "k=v"
    span.flags = 0x301
    span.kind = Span.SPAN_KIND_SERVER
    span.dropped_attributes_count = 2
    event = span.events.add(name="exception", time_unix_nano=123)
    event.attributes.add(key="exception.type").value.string_value = "ValueError"
    kv = event.attributes.add(key="nested").value.kvlist_value.values.add(key="a")
    kv.value.double_value = 0.5
    link = span.links.add(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, flags=1)
    link.attributes.add(key="why").value.string_value = "feedback"
    request = make_request([span])
    request.resource_spans[0].schema_url = "https://opentelemetry.io/schemas/1.24.0"
    request.resource_spans[0].resource.dropped_attributes_count = 1
    request.resource_spans[0].scope_spans[0].scope.version = "1.2.3"
    request.resource_spans[0].scope_spans[0].schema_url = "s"
    return request


class TestProtobuf:
    """OTLP/protobuf bodies."""

    def test_round_trip(self) -> None:
        """A serialized request parses back equal."""
        request = make_request([task_span("t")])
        assert parse_protobuf(request.SerializeToString()) == request

    def test_garbage(self) -> None:
        """Bytes that are not a request raise DecodeError naming the message."""
        with pytest.raises(DecodeError, match="ExportTraceServiceRequest"):
            parse_protobuf(b"\xff\xff\xff\xff garbage")


class TestJSON:
    """OTLP/JSON bodies."""

    def test_hex_ids_and_int64_strings(self) -> None:
        """Hex ids, string int64s, enum names and every value type decode to the same
        request as protobuf."""
        request = rich_request()
        doc = otlp_json(request)
        span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        assert isinstance(span["startTimeUnixNano"], str)
        assert len(span["traceId"]) == 32
        doc["resourceSpans"][0]["unknownField"] = {"x": 1}
        assert parse_json(json.dumps(doc).encode()) == request

    def test_snake_case_and_numbers(self) -> None:
        """Original field names and numeric int64s are accepted too."""
        body = {
            "resource_spans": [{"scope_spans": [{"spans": [{
                "trace_id": "0af7651916cd43dd8448eb211c80319c",
                "span_id": "b7ad6b7169203331",
                "name": "x",
                "kind": 2,
                "start_time_unix_nano": 5,
                "status": {"code": 2},
            }]}]}]
        }
        request = parse_json(json.dumps(body).encode())
        span = request.resource_spans[0].scope_spans[0].spans[0]
        assert span.trace_id.hex() == "0af7651916cd43dd8448eb211c80319c"
        assert (span.kind, span.start_time_unix_nano, span.status.code) == (2, 5, 2)

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (b"{not json", "malformed JSON"),
            (b"[1, 2]", "expected an object"),
            (b'{"resourceSpans": {}}', "expected an array"),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
             r"resourceSpans\[0\]\.scopeSpans\[0\]\.spans\[0\]\.traceId: 'zz' is not hex"),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "abcd"}]}]}]}',
             "expected 8 bytes"),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
             r"startTimeUnixNano: 'soon' is not an integer"),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SIDEWAYS"}]}]}]}',
             "kind: unknown value 'SIDEWAYS'"),
            (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"attributes": [{"key": "k", '
             b'"value": {"boolValue": "yes"}}]}]}]}]}', "boolValue: expected true or false"),
            (b'\xff\xfe', "malformed JSON"),
        ],
    )
    def test_malformed(self, body: bytes, message: str) -> None:
        """Malformed JSON raises DecodeError saying where and what."""
        with pytest.raises(DecodeError, match=message):
            parse_json(body)


class TestGunzip:
    """gzip bodies, inflated with a cap."""

    def test_inflates(self) -> None:
        """A gzip body inflates to its content."""
        assert gunzip(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000

    def test_bomb_refused_without_inflating_it_all(self) -> None:
        """A 100 MB bomb is refused against a 1 MB limit, early."""
        bomb = gzip.compress(bytes(100 * 1024 * 1024), compresslevel=9)
        assert len(bomb) < 200_000
        with pytest.raises(PayloadTooLarge):
            gunzip(bomb, 1024 * 1024)

    def test_malformed_and_truncated(self) -> None:
        """Non-gzip and truncated gzip bodies raise DecodeError."""
        with pytest.raises(DecodeError, match="malformed gzip"):
            gunzip(b"plain text", 1000)
        with pytest.raises(DecodeError, match="truncated"):
            gunzip(gzip.compress(b"y" * 5000)[:-20], 10_000)
