"""The fast OTLP encoder produces exactly the stock encoder's bytes."""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from phospho_otel.sdk._encode import encode_request, encode_requests


def stock(spans: list[ReadableSpan]) -> bytes:
    return encode_spans(spans).SerializeToString()


def record(provider: TracerProvider) -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


class TestByteIdentity:
    """Decoding is not enough: the bytes must be the same."""

    def test_edge_cases(self) -> None:
        """Resources and scopes interleaved, int64 limits, out-of-range ints, bools,
        bytes, arrays, non-ASCII, 40 kB strings, links, remote parents, trace_state,
        statuses, dropped counts, schema URLs, every span kind."""
        limits = SpanLimits(max_span_attributes=20, max_events=2, max_links=1)
        p1 = TracerProvider(resource=Resource.create({"service.name": "a", "n": 1,
                                                      "list": ("x", "y")}, "https://schema/1"),
                            span_limits=limits)
        p2 = TracerProvider(resource=Resource({"service.name": "b"}))
        e1, e2 = record(p1), record(p2)
        t1 = p1.get_tracer("scope.one", "1.2.3", schema_url="https://schema/s",
                           attributes={"scope.attr": 7})
        t2 = p1.get_tracer("scope.two")
        t3 = p2.get_tracer("")
        remote = SpanContext(0xABCDEF, 0x123, is_remote=True, trace_flags=TraceFlags(1),
                             trace_state=TraceState([("vendor", "v1"), ("other", "x=y")]))
        local = SpanContext(2**128 - 1, 2**64 - 1, is_remote=False)
        with t1.start_as_current_span("root é ✓", kind=SpanKind.SERVER, attributes={
            "str": "héllo wörld ✓ 😀", "empty": "", "t": True, "f": False, "zero": 0,
            "i64max": 2**63 - 1, "i64min": -(2**63), "neg": -1, "too_big": 2**64,
            "too_small": -(2**63) - 1, "float": 1.5, "negzero": -0.0, "inf": float("inf"),
            "strs": ["a", "", "é"], "ints": [1, -2, 2**63 - 1], "bools": [True, False],
            "floats": [0.0, 2.5], "empty_arr": [], "big": "x" * 40_000,
        }) as root:
            root.set_attribute("after", "set later")
            for i in range(3):  # one event dropped
                root.add_event(f"ev{i}", {"i": i, "s": "é"}, timestamp=10**18 + i)
            root.add_event("", {})
            root.set_status(Status(StatusCode.ERROR, "it broke ✗"))
            with t2.start_as_current_span("child", kind=SpanKind.CLIENT,
                                          links=[Link(remote, {"why": "because"}),
                                                 Link(local)]):
                pass
            with t3.start_as_current_span("", kind=SpanKind.PRODUCER):
                pass
        ctx = trace.set_span_in_context(NonRecordingSpan(remote))
        with t1.start_as_current_span("remote child", context=ctx, kind=SpanKind.CONSUMER) as s:
            s.set_status(Status(StatusCode.OK))
            try:
                raise ValueError("for the exception event")
            except ValueError as exc:
                s.record_exception(exc)
        with t2.start_as_current_span("ok no description") as s:
            s.set_status(StatusCode.OK)
        spans = [*e1.get_finished_spans(), *e2.get_finished_spans()]
        interleaved = [spans[0], spans[-1], spans[1], spans[-2], *spans[2:-2]]
        for batch in (spans, interleaved, spans[:1], []):
            assert encode_request(batch) == stock(batch)

    def test_hand_made_readable_spans(self) -> None:
        """Spans built directly: no scope, no end time, bytes values, nested mappings,
        an unsupported value type, equal resources that are different objects."""
        ctx = SpanContext(1, 2, is_remote=False)
        scope = InstrumentationScope("s", None, None, {"k": b"\x00\xff"})
        spans = [
            ReadableSpan("a", ctx, attributes={"b": b"\x00\x01", "nested": {"x": [1, {"y": 2}]},
                                               # an unsupported value, on purpose
                                               "bad": object(),  # type: ignore[dict-item]
                                               "none": None},
                         resource=Resource({"r": 1}), start_time=1),
            ReadableSpan("b", ctx, resource=Resource({"r": 1}), instrumentation_scope=scope,
                         start_time=5, end_time=6),
            ReadableSpan("c", ctx, parent=SpanContext(1, 3, is_remote=True),
                         resource=Resource({"r": 2}), status=Status(StatusCode.UNSET)),
        ]
        assert encode_request(spans) == stock(spans)

    def test_cached_values_keep_their_type(self) -> None:
        """Values equal as dict keys but encoded differently (1, True, 1.0; 0.0 and -0.0;
        NaN) come out as the stock encoder writes them, whatever came first."""
        ctx = SpanContext(1, 2, is_remote=False)
        values: list[int | float | str] = [1, True, 1.0, 0.0, -0.0, float("nan"), 0, False, "1",
                                           -0.0, 0.0, True, 1]
        spans = [ReadableSpan("s", ctx, attributes={"k": v}, resource=Resource({}))
                 for v in values]
        assert encode_request(spans) == stock(spans)
        assert encode_request(spans[::-1]) == stock(spans[::-1])

    def test_phospho_task_spans_and_split_requests(self) -> None:
        """SDK-made task spans; split requests decode back to every span, in order."""
        import phospho_otel as phospho

        provider = TracerProvider()
        exporter = record(provider)
        tracer = provider.get_tracer("phospho_otel")
        from phospho_otel.sdk._client import task_attributes

        for i in range(200):
            attrs = task_attributes({"messages": [{"role": "user", "content": f"q{i}"}]},
                                    output="a" * 1000, metadata={"i": i, "l": [i]},
                                    task_id=phospho.new_task_id(), session_id="s",
                                    user_id="u")
            tracer.start_span("task", attributes=attrs).end()
        spans = list(exporter.get_finished_spans())
        assert encode_request(spans) == stock(spans)
        requests = encode_requests(spans, max_bytes=50_000)
        assert len(requests) > 3
        assert sum(count for _, count in requests) == 200
        names = []
        for payload, count in requests:
            assert len(payload) <= 50_000
            decoded = ExportTraceServiceRequest.FromString(payload)
            got = [s for rs in decoded.resource_spans for ss in rs.scope_spans for s in ss.spans]
            assert len(got) == count
            names += [s.span_id for s in got]
        assert names == [s.context.span_id.to_bytes(8, "big") for s in spans]
