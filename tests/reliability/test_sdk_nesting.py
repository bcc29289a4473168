"""SDK: values nested deeper than ``MAX_DEPTH`` (64) or holding a cycle never raise into
the app (no ``RecursionError``), never fail at export time, and arrive with the
too-deep part (or the cycle) replaced by a placeholder string, with one warning
(issue 9, defect 11.3)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.trace import SpanContext, TraceFlags

import phospho_otel as phospho
from phospho_otel.sdk._encode import MAX_VALUE_DEPTH
from phospho_otel.sdk._serialize import CYCLE, MAX_DEPTH, TOO_DEEP
from phospho_otel.sdk.exporter import make_transport
from phospho_otel.sdk.processor import PhosphoSpanProcessor
from phospho_otel.semconv import SEMCONV_VERSION
from phospho_otel.server import AggregatorServer, ServerSettings
from tests.sdk.otlp_sink import CapturedSpan, OtlpSink

pytestmark = pytest.mark.usefixtures("clean_sdk")


@pytest.fixture
def sink() -> Iterator[OtlpSink]:
    with OtlpSink() as s:
        phospho.init(endpoint=s.http_endpoint, tracer_provider=TracerProvider(),
                     schedule_delay_s=0.02)
        yield s


def nested_list(depth: int) -> list[Any]:
    """``[[[...]]]``: ``depth`` lists, the innermost empty."""
    root: list[Any] = []
    current = root
    for _ in range(depth - 1):
        inner: list[Any] = []
        current.append(inner)
        current = inner
    return root


def depth_of(value: Any) -> int:
    """Nesting depth of decoded JSON (a scalar is 0, ``[]`` is 1)."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


def innermost(value: Any) -> Any:
    while isinstance(value, list) and value:
        value = value[0]
    return value


def one_span(sink: OtlpSink) -> CapturedSpan:
    assert phospho.flush(10)
    (span,) = sink.wait_for(1)
    assert phospho.stats().exported == 1 and phospho.stats().failed == 0
    return span


class TestDeepValues:
    """A 10,000-deep list anywhere a value is serialised: no RecursionError, the task
    is exported with the part below MAX_DEPTH replaced by TOO_DEEP."""

    @pytest.mark.parametrize("where", ["metadata", "raw_input", "raw_output", "input",
                                       "output"])
    def test_ten_thousand_deep_list_in_log(self, sink: OtlpSink, where: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
        """``log()`` returns; the value arrives as JSON text MAX_DEPTH deep whose
        innermost part is the TOO_DEEP placeholder; one warning."""
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        deep = nested_list(10_000)
        kwargs: dict[str, Any] = {"input": "q"}
        kwargs[where] = {"d": deep} if where == "metadata" else deep
        phospho.log(**kwargs)
        attributes = one_span(sink).attributes
        key = {"metadata": "phospho.metadata.d", "raw_input": "phospho.raw_input",
               "raw_output": "phospho.raw_output", "input": "input.value",
               "output": "output.value"}[where]
        decoded = json.loads(attributes[key])
        assert depth_of(decoded) == MAX_DEPTH
        assert innermost(decoded) == TOO_DEEP
        assert attributes["input.value"] == "q" or where == "input"
        warnings = [r for r in caplog.records if "nested" in r.getMessage()]
        assert len(warnings) == 1 and not warnings[0].exc_info

    def test_task_and_session_metadata(self, sink: OtlpSink) -> None:
        """``task(metadata=...)``, ``set_metadata`` and ``session(metadata=...)``."""
        with phospho.session(metadata={"s": nested_list(5_000)}), \
                phospho.task(input="q", metadata={"t": nested_list(5_000)}) as run:
            run.set_metadata({"m": nested_list(5_000)})
            run.set_output(nested_list(5_000))
        attributes = one_span(sink).attributes
        for key in ("phospho.metadata.s", "phospho.metadata.t", "phospho.metadata.m",
                    "output.value"):
            assert innermost(json.loads(attributes[key])) == TOO_DEEP, key

    def test_the_limit_is_exact(self, sink: OtlpSink) -> None:
        """MAX_DEPTH levels are kept whole; one more and the innermost level is cut,
        whichever JSON encoder path the value takes."""
        phospho.log("q", metadata={"ok": nested_list(MAX_DEPTH),
                                   "over": nested_list(MAX_DEPTH + 1),
                                   "dict": {"a": {"b": nested_list(MAX_DEPTH)}}})
        attributes = one_span(sink).attributes
        ok = json.loads(attributes["phospho.metadata.ok"])
        assert ok == nested_list(MAX_DEPTH)
        over = json.loads(attributes["phospho.metadata.over"])
        assert depth_of(over) == MAX_DEPTH and innermost(over) == TOO_DEEP
        cut = json.loads(attributes["phospho.metadata.dict"])
        assert depth_of(cut) == MAX_DEPTH

    def test_deep_json_text_raw_payload(self, sink: OtlpSink) -> None:
        """A raw payload given as JSON text nested 10,000 deep (``json.loads`` of it
        raises RecursionError) is kept whole, as a JSON string."""
        text = "[" * 10_000 + "]" * 10_000
        phospho.log("q", raw_input=text, raw_output="[" * 100 + "]" * 100)
        attributes = one_span(sink).attributes
        assert json.loads(attributes["phospho.raw_input"]) == text
        assert json.loads(attributes["phospho.raw_output"]) == "[" * 100 + "]" * 100

    def test_feedback_metadata(self, sink: OtlpSink) -> None:
        """``user_feedback(metadata=...)`` too."""
        phospho.user_feedback("t1", "success", metadata={"d": nested_list(10_000)})
        attributes = one_span(sink).attributes
        assert innermost(json.loads(attributes["phospho.metadata.d"])) == TOO_DEEP


class TestCycles:
    """A value that contains itself: no RecursionError, the cycle becomes CYCLE."""

    def test_list_and_dict_containing_themselves(self, sink: OtlpSink) -> None:
        loop: list[Any] = [1]
        loop.append(loop)
        knot: dict[str, Any] = {"a": 1}
        knot["self"] = knot

        class Node:
            def __init__(self) -> None:
                self.next = self

        phospho.log(loop, metadata={"loop": loop, "knot": knot, "node": Node()},
                    raw_output=[knot, loop])
        attributes = one_span(sink).attributes
        assert json.loads(attributes["input.value"]) == [1, CYCLE]
        assert json.loads(attributes["phospho.metadata.loop"]) == [1, CYCLE]
        assert json.loads(attributes["phospho.metadata.knot"]) == {"a": 1, "self": CYCLE}
        assert json.loads(attributes["phospho.metadata.node"]) == {"next": CYCLE}
        assert json.loads(attributes["phospho.raw_output"]) == [
            {"a": 1, "self": CYCLE}, [1, CYCLE]]

    def test_shared_value_is_not_a_cycle(self, sink: OtlpSink) -> None:
        """The same list twice side by side is repeated, not marked as a cycle."""
        shared = [1, 2]
        phospho.log("q", metadata={"pair": [shared, shared]})
        attributes = one_span(sink).attributes
        assert json.loads(attributes["phospho.metadata.pair"]) == [[1, 2], [1, 2]]


def nested_mapping(depth: int) -> dict[str, Any]:
    root: dict[str, Any] = {}
    current = root
    for _ in range(depth - 1):
        inner: dict[str, Any] = {}
        current["k"] = inner
        current = inner
    return root


class TestDeepAttributeValues:
    """Hand-made spans may hold nested attribute values (the SDK's own are flat). One
    nested past what receivers parse (100 message levels: ~32 key-value lists) made
    the aggregator refuse the whole request, losing every span in it; 10,000 deep, the
    encoder failed with a RecursionError traceback. Such a value is now left out
    (one warning), and the span and its request arrive."""

    def test_deep_values_do_not_poison_the_request(
        self, tmp_path: Any, caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        settings = ServerSettings(store=str(tmp_path / "agg.db"), http_port=0, grpc_port=0)
        with AggregatorServer(settings) as server:
            transport = make_transport("http/protobuf", f"{server.http_url}/v1/traces", {},
                                       "none")
            processor = PhosphoSpanProcessor(transport, schedule_delay_s=0.02)
            resource = Resource({"service.name": "hand-made"})
            for i, bad in enumerate([nested_mapping(35), nested_list(10_000),
                                     nested_list(MAX_VALUE_DEPTH)]):
                processor.on_end(ReadableSpan(
                    "task", SpanContext(1, i + 1, is_remote=False,
                                        trace_flags=TraceFlags(TraceFlags.SAMPLED)),
                    resource=resource,
                    start_time=10**18, end_time=10**18 + 1,
                    attributes={"phospho.span.type": "task", "phospho.task.id": f"deep-{i}",
                                "phospho.semconv.version": SEMCONV_VERSION,
                                "input.value": f"q{i}", "bad": bad}))  # type: ignore[dict-item]
            assert processor.force_flush(10_000)
            stats = processor.stats()
            processor.shutdown(5)
            assert (stats.exported, stats.failed) == (3, 0)
            with httpx.Client(base_url=server.http_url) as client:
                for i in range(3):
                    reply = client.get(f"/api/tasks/deep-{i}")
                    assert reply.status_code == 200, reply.text
                    assert reply.json()["input"] == f"q{i}"
        assert not [r for r in caplog.records if r.exc_info]
        warnings = [r.getMessage() for r in caplog.records if "nests" in r.getMessage()]
        assert len(warnings) == 1 and "'bad'" in warnings[0]
