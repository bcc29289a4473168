"""``store.tags``: the text a Jaeger tag search compares, and which tags a span has."""

from __future__ import annotations

import pytest
from opentelemetry.proto.common.v1.common_pb2 import (
    AnyValue,
    ArrayValue,
    InstrumentationScope,
    KeyValueList,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.store.api import StoredOrigin, TraceSpan
from phospho_otel.store.tags import attribute_text, may_match, span_tag_texts, tags_match
from tests.support.otlp import attrs, make_span


class TestAttributeText:
    """attribute_text: the text a tag search compares."""

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (AnyValue(string_value="x"), "x"),
            (AnyValue(bool_value=True), "true"),
            (AnyValue(int_value=-3), "-3"),
            (AnyValue(double_value=2.0), "2"),
            (AnyValue(double_value=0.1), "0.1"),
            (AnyValue(bytes_value=b"\x00"), "AA=="),
            (
                AnyValue(
                    array_value=ArrayValue(
                        values=[AnyValue(int_value=1), AnyValue(string_value="a")]
                    )
                ),
                '[1,"a"]',
            ),
            (
                AnyValue(kvlist_value=KeyValueList(values=attrs({"k": True}))),
                '{"k":true}',
            ),
            (AnyValue(), ""),
        ],
    )
    def test_text(self, value: AnyValue, text: str) -> None:
        """Scalars as text, composites as compact JSON."""
        assert attribute_text(value) == text


def traced(span: Span, service: str = "svc", resource: dict[str, object] | None = None,
           scope: str = "sc", version: str = "") -> TraceSpan:
    res = Resource(attributes=attrs({"service.name": service, **(resource or {})}))
    return TraceSpan(span, StoredOrigin(1, service, res, res.SerializeToString(), "",
                                        InstrumentationScope(name=scope, version=version), ""))


class TestSpanTags:
    """span_tag_texts, tags_match, may_match: attributes, resource, events and derived
    tags."""

    def test_tag_texts(self) -> None:
        """Span, resource and event attributes, and the derived tags, as texts."""
        span = make_span({"n": 7, "ok": False}, kind=Span.SPAN_KIND_CLIENT, status_code=2)
        span.status.message = "boom"
        event = span.events.add()
        event.name = "retry"
        event.attributes.extend(attrs({"attempt": 2}))
        texts = span_tag_texts(traced(span, resource={"host.name": "h1"}, version="1.0"))
        assert texts == {
            "n": {"7"}, "ok": {"false"}, "service.name": {"svc"}, "host.name": {"h1"},
            "attempt": {"2"}, "event": {"retry"}, "span.kind": {"client"},
            "error": {"true"}, "otel.status_code": {"ERROR"},
            "otel.status_description": {"boom"}, "otel.scope.name": {"sc"},
            "otel.scope.version": {"1.0"},
        }

    def test_match(self) -> None:
        """Every wanted tag must hold; values compare as text."""
        item = traced(make_span({"n": 7}, kind=Span.SPAN_KIND_SERVER, status_code=1),
                      resource={"host.name": "h1"})
        assert tags_match(item, {"n": "7", "host.name": "h1", "span.kind": "server",
                                 "otel.status_code": "OK"})
        assert not tags_match(item, {"n": "7", "error": "true"})
        assert not tags_match(item, {"n": "8"})
        assert tags_match(item, {})

    def test_may_match(self) -> None:
        """A wanted key absent from the span's bytes, not derived nor a resource key,
        rules the span out without decoding it."""
        raw = make_span({"llm.model": "x"}).SerializeToString()
        assert may_match(raw, frozenset(), {"llm.model": "y"})
        assert not may_match(raw, frozenset(), {"other.key": "y"})
        assert may_match(raw, frozenset({"other.key"}), {"other.key": "y"})
        assert may_match(raw, frozenset(), {"span.kind": "server"})
