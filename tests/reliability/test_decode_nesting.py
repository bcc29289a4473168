"""Nesting and numbers in OTLP bodies (issue 9, defect 6).

One depth limit for both encodings: messages nest at most ``decode.MAX_DEPTH`` (100)
levels below the ``ExportTraceServiceRequest`` -- upb's own decode limit, so whatever is
accepted can be serialized and parsed back (the store keeps spans as protobuf and the
trace APIs parse them again). Deeper is ``DecodeError`` (400) naming the limit, in
OTLP/JSON and in protobuf alike; a JSON document too deep for Python's parser is a 400
too, never a ``RecursionError``. Non-finite or out-of-range numbers in integer fields are
a 400 naming the field, never an ``OverflowError`` or a generic message.

Levels: the request is 0, a ``resourceSpans`` entry 1, a ``scopeSpans`` entry 2, a span
3, a span attribute (KeyValue) 4 and its AnyValue 5; each array nesting adds an
ArrayValue and an AnyValue (2 levels), each key-value list a KeyValueList, a KeyValue and
an AnyValue (3 levels).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.errors import DecodeError
from phospho_otel.receiver.decode import parse_json, parse_protobuf
from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.oracle import write
from tests.support.servers import serve_asgi

TRACE_ID = "5b8efff798038103d269b633813fc60c"
SPAN_ID = "eee19b7ec3c1b174"
LIMIT = 100
"""Levels below the request (upb's ``kUpb_WireFormat_DefaultDepthLimit``)."""


def array_value_json(level: int) -> str:
    """The OTLP/JSON AnyValue of a span attribute whose deepest message is at ``level``
    (>= 5): arrays nested in arrays, ending in an int (odd levels) or an empty array
    (even levels). Built as text, so any depth can be written."""
    nest, rest = divmod(level - 5, 2)
    leaf = '{"arrayValue": {}}' if rest else '{"intValue": "7"}'
    return '{"arrayValue": {"values": [' * nest + leaf + "]}}" * nest


def kvlist_value_json(level: int) -> str:
    """As ``array_value_json`` with key-value lists (3 levels each), ending in an int,
    an empty list or an array of one int."""
    nest, rest = divmod(level - 5, 3)
    leaf = ['{"intValue": "7"}', '{"kvlistValue": {}}',
            '{"arrayValue": {"values": [{"intValue": "7"}]}}'][rest]
    return '{"kvlistValue": {"values": [{"key": "k", "value": ' * nest + leaf + "}]}}" * nest


def request_json(value: str, span: str = "") -> bytes:
    """A one-span OTLP/JSON request with attribute ``deep`` = ``value`` (JSON text) and
    extra span members ``span`` (JSON text, with a leading comma)."""
    return (
        '{"resourceSpans": [{"resource": {"attributes": [{"key": "service.name", '
        '"value": {"stringValue": "deep"}}]}, "scopeSpans": [{"spans": [{'
        f'"traceId": "{TRACE_ID}", "spanId": "{SPAN_ID}", "name": "deep", '
        '"startTimeUnixNano": "1764000000000000000", "endTimeUnixNano": '
        f'"1764000001000000000", "attributes": [{{"key": "deep", "value": {value}}}]{span}'
        "}]}]}]}"
    ).encode()


def deepest(request: ExportTraceServiceRequest) -> int:
    """The level of the deepest message of ``request`` (the request is 0)."""
    deepest_level = 0
    stack: list[tuple[Any, int]] = [(request, 0)]
    while stack:
        message, level = stack.pop()
        deepest_level = max(deepest_level, level)
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            children = value if field.is_repeated else [value]
            stack += [(child, level + 1) for child in children]
    return deepest_level


def array_protobuf(level: int) -> bytes:
    """The protobuf request of ``array_value_json(level)``, built with upb."""
    return parse_json(request_json(array_value_json(min(level, 6)))).SerializeToString() \
        if level <= 6 else _deep_protobuf(level)


def _deep_protobuf(level: int) -> bytes:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes.fromhex(TRACE_ID), span_id=bytes.fromhex(SPAN_ID), name="deep")
    value: AnyValue = span.attributes.add(key="deep").value
    at = 5
    while at + 2 <= level:
        value = value.array_value.values.add()
        at += 2
    if at < level:
        value.array_value.SetInParent()
    else:
        value.int_value = 7
    assert deepest(request) == level
    return request.SerializeToString()


class TestJSONDepth:
    """OTLP/JSON nested past the limit is a 400; at the limit it is accepted."""

    @pytest.mark.parametrize("builder", [array_value_json, kvlist_value_json],
                             ids=["arrays", "kvlists"])
    @pytest.mark.parametrize("level", [LIMIT - 2, LIMIT - 1, LIMIT])
    def test_at_the_limit_accepted(self, builder: Callable[[int], str], level: int) -> None:
        """A message at level 100 (and 99, 98) is accepted and its protobuf parses back."""
        request = parse_json(request_json(builder(level)))
        assert deepest(request) == level
        assert ExportTraceServiceRequest.FromString(request.SerializeToString()) == request
        span = request.resource_spans[0].scope_spans[0].spans[0]
        assert Span.FromString(span.SerializeToString()) == span

    @pytest.mark.parametrize("builder", [array_value_json, kvlist_value_json],
                             ids=["arrays", "kvlists"])
    @pytest.mark.parametrize("level", [LIMIT + 1, LIMIT + 2, 125, 305])
    def test_past_the_limit_refused(self, builder: Callable[[int], str], level: int) -> None:
        """Levels 101..305 (AnyValues 48..150 deep: the issue's unreadable range) are a
        DecodeError naming the limit and where."""
        with pytest.raises(DecodeError, match=r"nested deeper than 100 .*attributes\[0\]"):
            parse_json(request_json(builder(level)))

    @pytest.mark.parametrize("level", [1_005, 2_001, 100_001])
    def test_thousands_deep_is_400_not_recursion_error(self, level: int) -> None:
        """1,000+ deep (past Python's recursion limit) is a DecodeError, not a
        RecursionError (a 500)."""
        with pytest.raises(DecodeError, match="nested"):
            parse_json(request_json(array_value_json(level)))

    @pytest.mark.parametrize("depth", [150, 5_000])
    def test_deep_unknown_member(self, depth: int) -> None:
        """Deep JSON in a member OTLP does not define: ignored when Python's parser can
        read it, a DecodeError when it cannot -- never a RecursionError."""
        body = b'{"resourceSpans": [], "x": ' + b"[" * depth + b"]" * depth + b"}"
        if depth < 900:
            assert parse_json(body) == ExportTraceServiceRequest()
        else:
            with pytest.raises(DecodeError, match="nested"):
                parse_json(body)

    def test_deep_event_and_link_attributes(self) -> None:
        """Event and link attributes sit one level deeper (level 5 is their KeyValue):
        the same limit applies."""
        for member in ("events", "links"):
            extra = f'"traceId": "{TRACE_ID}", "spanId": "{SPAN_ID}", ' if member == "links" \
                else ""
            ok = array_value_json(LIMIT - 1)  # deepest at LIMIT once one level deeper
            body = request_json('{"intValue": "1"}',
                                f', "{member}": [{{{extra}"attributes": '
                                f'[{{"key": "e", "value": {ok}}}]}}]')
            assert deepest(parse_json(body)) == LIMIT
            too_deep = array_value_json(LIMIT)
            body = request_json('{"intValue": "1"}',
                                f', "{member}": [{{{extra}"attributes": '
                                f'[{{"key": "e", "value": {too_deep}}}]}}]')
            with pytest.raises(DecodeError, match=f"nested deeper than 100 .*{member}"):
                parse_json(body)


class TestProtobufDepth:
    """Protobuf bodies past the same limit are a 400 that says so."""

    def test_at_the_limit_accepted(self) -> None:
        """A protobuf request whose deepest message is at level 100 parses."""
        assert deepest(parse_protobuf(_deep_protobuf(LIMIT))) == LIMIT

    @pytest.mark.parametrize("level", [LIMIT + 1, LIMIT + 2, 305])
    def test_past_the_limit_refused_clearly(self, level: int) -> None:
        """Past the limit: DecodeError naming the nesting and the limit (not only upb's
        "Error parsing message")."""
        with pytest.raises(DecodeError, match="nested deeper than 100"):
            parse_protobuf(_deep_protobuf(level))

    def test_json_and_protobuf_agree(self) -> None:
        """The same request at every level around the limit is accepted or refused alike
        in both encodings."""
        for level in range(LIMIT - 3, LIMIT + 4):
            outcomes = []
            for decode, body in ((parse_json, request_json(array_value_json(level))),
                                 (parse_protobuf, _deep_protobuf(level))):
                try:
                    decode(body)
                    outcomes.append("ok")
                except DecodeError:
                    outcomes.append("400")
            assert outcomes[0] == outcomes[1] == ("ok" if level <= LIMIT else "400"), level


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh store."""
    s = open_store(str(tmp_path / "phospho.db"), synchronous="NORMAL")
    yield s
    s.close()


def _serve(store: Store) -> AbstractContextManager[int]:
    routes = jaeger_routes(store, parse_otlp_json=parse_json)
    return serve_asgi(Starlette(routes=[Mount("/jaeger", routes=routes)]))


class TestReadBack:
    """A span at the limit, accepted from OTLP/JSON, is stored and read back."""

    @pytest.mark.parametrize("builder", [array_value_json, kvlist_value_json],
                             ids=["arrays", "kvlists"])
    def test_store_and_jaeger_read_back(self, store: Store,
                                        builder: Callable[[int], str]) -> None:
        """Stored from JSON at level 100; the store's trace reader and both Jaeger APIs
        (v1 and api_v3, over HTTP) answer 200 with the attribute."""
        request = parse_json(request_json(builder(LIMIT)))
        (result,) = write(store, request)
        assert result.spans_stored == 1
        with store.read() as reader:
            (trace,) = reader.get_traces([bytes.fromhex(TRACE_ID)])
        assert trace.spans[0].span == request.resource_spans[0].scope_spans[0].spans[0]
        with _serve(store) as port, httpx.Client(timeout=10, trust_env=False) as client:
            base = f"http://127.0.0.1:{port}/jaeger"
            v1 = client.get(f"{base}/api/traces/{TRACE_ID}")
            assert v1.status_code == 200, v1.text
            (span,) = v1.json()["data"][0]["spans"]
            assert any(tag["key"] == "deep" for tag in span["tags"])
            v3 = client.get(f"{base}/api/v3/traces/{TRACE_ID}")
            assert v3.status_code == 200, v3.text
            spans = v3.json()["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"]
            assert spans[0]["attributes"][0]["key"] == "deep"


def _span_member(name: str, value: str) -> bytes:
    return request_json('{"intValue": "1"}', f', "{name}": {value}')


class TestIntegerFields:
    """Integer fields in OTLP/JSON: non-finite or out of range is a 400 naming the field."""

    @pytest.mark.parametrize("value", ["1e999", "-1e999", "NaN", "Infinity", "-Infinity",
                                       '"1e999"', "1" + "0" * 30])
    def test_non_finite_or_huge_start_time(self, value: str) -> None:
        """``"startTimeUnixNano": 1e999`` (and NaN, Infinity, 10^30) name the field."""
        with pytest.raises(DecodeError, match="startTimeUnixNano"):
            parse_json(_span_member("startTimeUnixNano", value))

    @pytest.mark.parametrize(
        ("member", "value"),
        [
            ("startTimeUnixNano", "-1"),
            ("endTimeUnixNano", '"18446744073709551616"'),
            ("flags", str(2**32)),
            ("flags", "-1"),
            ("droppedAttributesCount", str(2**32)),
            ("droppedEventsCount", "-1"),
            ("droppedLinksCount", "1e999"),
            ("kind", str(2**31)),
        ],
    )
    def test_out_of_range(self, member: str, value: str) -> None:
        """Each span integer field outside its protobuf type's range is named."""
        with pytest.raises(DecodeError, match=member):
            parse_json(_span_member(member, value))

    @pytest.mark.parametrize(
        ("value", "field"),
        [
            ('{"intValue": "9223372036854775808"}', "intValue"),
            ('{"intValue": -9223372036854775809}', "intValue"),
            ('{"intValue": 1e999}', "intValue"),
            ('{"intValue": NaN}', "intValue"),
            ('{"doubleValue": 1' + "0" * 400 + "}", "doubleValue"),
        ],
    )
    def test_attribute_values(self, value: str, field: str) -> None:
        """AnyValue ints outside int64, non-finite ints, and doubles too large for a
        double are named with their attribute."""
        with pytest.raises(DecodeError, match=rf"attributes\[0\]\.value\.{field}"):
            parse_json(request_json(value))

    def test_nested_counts_and_status(self) -> None:
        """Event times, link flags, dropped counts and the status code are named too."""
        cases = [
            ('"events": [{"timeUnixNano": 1e999}]', r"events\[0\]\.timeUnixNano"),
            ('"events": [{"droppedAttributesCount": -1}]',
             r"events\[0\]\.droppedAttributesCount"),
            (f'"links": [{{"traceId": "{TRACE_ID}", "spanId": "{SPAN_ID}", "flags": -1}}]',
             r"links\[0\]\.flags"),
            ('"status": {"code": 9999999999}', r"status\.code"),
        ]
        for member, where in cases:
            body = request_json('{"intValue": "1"}', ", " + member)
            with pytest.raises(DecodeError, match=where):
                parse_json(body)

    def test_extremes_accepted(self) -> None:
        """The range ends themselves are valid."""
        body = request_json('{"intValue": "-9223372036854775808"}',
                            ', "flags": 4294967295, "droppedLinksCount": 4294967295')
        body = body.replace(b'"1764000001000000000"', b'"18446744073709551615"')
        span = parse_json(body).resource_spans[0].scope_spans[0].spans[0]
        assert span.end_time_unix_nano == 2**64 - 1
        assert span.attributes[0].value.int_value == -(2**63)
        assert (span.flags, span.dropped_links_count) == (2**32 - 1, 2**32 - 1)
        assert json.loads(body)  # the body itself is plain JSON
