"""What one request may materialise (issue 9, defect 3): a body-size cap bounds bytes,
not objects -- 61 KiB of gzip held 32 million empty spans and took 5.4 GB. Spans and
elements (resource and scope spans, attributes, events, links, array and key-value list
entries; every value in OTLP/JSON) are counted on the wire and a request past
``max_spans`` or ``max_elements`` is refused with ``PayloadTooLarge`` (413) *before*
``ExportTraceServiceRequest.FromString`` or ``json.loads`` builds anything.

The issue's bodies are decoded in a child process whose address space is capped a few
hundred MB above what it holds before decoding, so a decoder that builds the objects
fails there (MemoryError) instead of taking the machine's memory."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.errors import PayloadTooLarge
from phospho_otel.receiver import decode
from phospho_otel.receiver.decode import parse_json, parse_protobuf
from tests.support.otlp import make_request, task_span

ROOT = Path(__file__).resolve().parents[2]
MAX_BODY = 64 * 1024 * 1024  # ServerSettings.max_body_bytes' default


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint."""
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited field."""
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def empty_spans(count: int) -> bytes:
    """A request of ``count`` empty spans in one scope (2 bytes a span)."""
    return ld(1, ld(2, b"\x12\x00" * count))


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from phospho_otel.errors import PayloadTooLarge, DecodeError
    from phospho_otel.receiver.decode import gunzip, parse_json, parse_protobuf

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    def hwm():
        # VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report
        # the forking parent's peak
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))

    def vm():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))

    body = Path(sys.argv[1]).read_bytes()
    encoding, budget = sys.argv[2], int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (vm() + budget, vm() + budget))
    before = rss()
    started = time.perf_counter()
    try:
        raw = gunzip(body, 64 * 1024 * 1024)
        (parse_json if encoding == "json" else parse_protobuf)(raw)
        outcome = "accepted"
    except PayloadTooLarge as exc:
        outcome = "413: " + exc.message
    except DecodeError as exc:
        outcome = "400: " + exc.message
    except MemoryError:
        outcome = "MemoryError"
    peak = hwm() - before
    print(json.dumps({"outcome": outcome, "seconds": time.perf_counter() - started,
                      "peak_mb": peak / 1e6}))
""")


def decode_in_child(tmp_path: Path, gzipped: bytes, encoding: str,
                    budget_mb: int) -> dict[str, Any]:
    """Gunzip and decode ``gzipped`` in a child process allowed ``budget_mb`` more address
    space than it has when it starts decoding; its outcome, seconds and peak RSS growth."""
    path = tmp_path / "body.gz"
    path.write_bytes(gzipped)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), encoding, str(budget_mb << 20)],
        capture_output=True, text=True, timeout=120, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


class TestTheIssuesBodies:
    """The hostile bodies of the issue, at the default limits and a 64 MiB body cap."""

    def test_61_kib_gzip_of_32_million_empty_spans(self, tmp_path: Path) -> None:
        """Protobuf: refused with 413 naming the span limit, in well under a second and
        about the inflated body's size of memory (it took 5.4 GB)."""
        raw = empty_spans(32_000_000)
        assert len(raw) <= MAX_BODY
        gzipped = gzip.compress(raw, 9)
        del raw
        assert len(gzipped) < 70 * 1024
        result = decode_in_child(tmp_path, gzipped, "protobuf", budget_mb=600)
        assert result["outcome"].startswith("413: "), result
        assert "more than 100000 spans" in result["outcome"]
        assert result["peak_mb"] < 300, result
        assert result["seconds"] < 5, result

    def test_gzip_of_20_million_empty_json_objects(self, tmp_path: Path) -> None:
        """OTLP/JSON: 64 MB of ``{},`` in a member OTLP ignores (Python would build 20
        million dicts, 1.5 GB) is refused before ``json.loads``."""
        raw = b'{"resourceSpans": [], "padding": [' + b"{}," * 20_000_000 + b"{}]}"
        gzipped = gzip.compress(raw, 9)
        del raw
        result = decode_in_child(tmp_path, gzipped, "json", budget_mb=800)
        assert result["outcome"].startswith("413: "), result
        assert "elements" in result["outcome"]
        assert result["peak_mb"] < 500, result

    def test_many_attributes(self, tmp_path: Path) -> None:
        """Protobuf: one span of 30 million empty attributes (60 MB) is refused before
        upb builds them (it would take ~1.7 GB)."""
        gzipped = gzip.compress(ld(1, ld(2, ld(2, b"\x4a\x00" * 30_000_000))), 9)
        result = decode_in_child(tmp_path, gzipped, "protobuf", budget_mb=600)
        assert result["outcome"].startswith("413: "), result
        assert "elements" in result["outcome"]
        assert result["peak_mb"] < 300, result


def json_spans(count: int) -> bytes:
    """An OTLP/JSON request of ``count`` empty spans."""
    return (b'{"resourceSpans": [{"scopeSpans": [{"spans": ['
            + b",".join([b"{}"] * count) + b"]}]}]}")


class TestSpanLimit:
    """``max_spans``: exactly the limit is accepted, one more refused, in both encodings."""

    def test_default(self) -> None:
        """The default is 100,000 spans a request (a collector sends at most 8,192)."""
        assert decode.MAX_SPANS == 100_000
        assert len(parse_protobuf(empty_spans(100_000)).resource_spans[0]
                   .scope_spans[0].spans) == 100_000
        with pytest.raises(PayloadTooLarge, match="more than 100000 spans"):
            parse_protobuf(empty_spans(100_001))

    @pytest.mark.parametrize("limit", [1, 7, 1000])
    def test_protobuf(self, limit: int) -> None:
        """Empty spans spread over several resource and scope spans count together."""
        half = limit // 2
        body = (ld(1, ld(2, b"\x12\x00" * half) + ld(2, b"")) + ld(1, b"")
                + ld(1, ld(2, b"\x12\x00" * (limit - half))))
        assert len(parse_protobuf(body, max_spans=limit).resource_spans) == 3
        with pytest.raises(PayloadTooLarge, match="spans"):
            parse_protobuf(body + ld(1, ld(2, b"\x12\x00")), max_spans=limit)

    @pytest.mark.parametrize("limit", [1, 7, 1000])
    def test_json(self, limit: int) -> None:
        """The same in OTLP/JSON."""
        assert len(parse_json(json_spans(limit), max_spans=limit)
                   .resource_spans[0].scope_spans[0].spans) == limit
        with pytest.raises(PayloadTooLarge, match="spans"):
            parse_json(json_spans(limit + 1), max_spans=limit)

    def test_json_default(self) -> None:
        """200,000 empty spans in 600 KB of JSON are refused by default."""
        with pytest.raises(PayloadTooLarge, match="more than 100000 spans"):
            parse_json(json_spans(200_000))

    def test_real_spans(self) -> None:
        """Real spans in a body large enough to need counting are counted exactly."""
        request = make_request([task_span(f"t{i}") for i in range(300)])
        body = request.SerializeToString()
        assert len(body) // 2 > 300
        assert parse_protobuf(body, max_spans=300) == request
        with pytest.raises(PayloadTooLarge):
            parse_protobuf(body, max_spans=299)


def count_elements(message: Any) -> int:
    """Elements of a parsed message: every message (and repeated string) below it."""
    total = 0
    for field, value in message.ListFields():
        if field.message_type is not None:
            children = list(value) if field.is_repeated else [value]
            total += len(children) + sum(count_elements(child) for child in children)
        elif field.is_repeated:
            total += len(value)
    return total


ELEMENT_BODIES = {
    # name -> a request whose elements are mostly of one kind (raw protobuf)
    "resource_spans": b"\x0a\x00" * 500,
    "scope_spans": ld(1, b"\x12\x00" * 500),
    "resource_attributes": ld(1, ld(1, b"\x0a\x00" * 500)),
    "scope_attributes": ld(1, ld(2, ld(1, b"\x1a\x00" * 500))),
    "span_attributes": ld(1, ld(2, ld(2, b"\x4a\x00" * 500))),
    "events": ld(1, ld(2, ld(2, b"\x5a\x00" * 500))),
    "event_attributes": ld(1, ld(2, ld(2, ld(11, b"\x1a\x00" * 500)))),
    "links": ld(1, ld(2, ld(2, b"\x6a\x00" * 500))),
    "link_attributes": ld(1, ld(2, ld(2, ld(13, b"\x22\x00" * 500)))),
    "array_values": ld(1, ld(2, ld(2, ld(9, ld(2, ld(5, b"\x0a\x00" * 500)))))),
    "kvlist_values": ld(1, ld(2, ld(2, ld(9, ld(2, ld(6, b"\x0a\x00" * 500)))))),
    "entity_ref_keys": ld(1, ld(1, ld(3, b"\x1a\x01k" * 250 + b"\x22\x00" * 250))),
}


class TestElementLimit:
    """``max_elements``: every kind of element counts; the limit is exact."""

    def test_default(self) -> None:
        """The default is 4,000,000: bodies up to 8 MB cannot reach it (an element takes
        at least 2 bytes), so they are never walked."""
        assert decode.MAX_ELEMENTS == 4_000_000

    @pytest.mark.parametrize("name", sorted(ELEMENT_BODIES))
    def test_each_kind(self, name: str) -> None:
        """Exactly the body's element count is accepted, one less refused."""
        body = ELEMENT_BODIES[name]
        count = count_elements(ExportTraceServiceRequest.FromString(body))
        assert count >= 500
        assert parse_protobuf(body, max_elements=count) == \
            ExportTraceServiceRequest.FromString(body)
        with pytest.raises(PayloadTooLarge, match=f"more than {count - 1} elements"):
            parse_protobuf(body, max_elements=count - 1)

    def test_task_spans_exact(self) -> None:
        """A request of real task spans: the count is exact."""
        request = make_request([task_span(f"t{i}", metadata={"k": [1, {"a": 2}]})
                                for i in range(40)])
        count = count_elements(request)
        body = request.SerializeToString()
        assert parse_protobuf(body, max_elements=count) == request
        with pytest.raises(PayloadTooLarge):
            parse_protobuf(body, max_elements=count - 1)

    def test_json_values(self) -> None:
        """OTLP/JSON counts every value (objects, arrays, strings, numbers, members OTLP
        does not define) before ``json.loads``; an empty object or array counts twice."""
        body = b'{"resourceSpans": [], "x": [1, "a,{[", {"y": [true, null]}, [], {}]}'
        values = 11  # root, [] (resourceSpans), x's array, 1, "a,{[", {"y"..}, y's array,
        #              true, null, [], {}
        empties = 3  # [] (resourceSpans), [], {}
        assert parse_json(body, max_elements=values + empties) == ExportTraceServiceRequest()
        with pytest.raises(PayloadTooLarge, match="elements"):
            parse_json(body, max_elements=values + empties - 1)

    def test_json_strings_do_not_count(self) -> None:
        """Commas and brackets inside strings (escaped quotes too) are not values."""
        text = 'a,b,[c],{d}, \\" ,[ \\\\'
        body = json.dumps({"resourceSpans": [], "s": text * 1000}).encode()
        assert body.count(b",") > 3000
        assert parse_json(body, max_elements=4) == ExportTraceServiceRequest()


class TestUpperBound:
    """Where the wire holds more than upb builds, the count is an upper bound."""

    def test_repeated_singular_message(self) -> None:
        """A singular message (the span status) repeated on the wire is merged by upb
        into one, but each occurrence counts: a body cannot be cheaper counted than
        parsed."""
        body = ld(1, ld(2, ld(2, b"\x7a\x00" * 500)))
        assert count_elements(ExportTraceServiceRequest.FromString(body)) == 4
        parse_protobuf(body, max_elements=503)
        with pytest.raises(PayloadTooLarge):
            parse_protobuf(body, max_elements=502)


class TestCommonPath:
    """Valid requests decode exactly as before, whatever path counts them."""

    @pytest.mark.parametrize("spans", [1, 50, 3000])
    def test_protobuf_unchanged(self, spans: int) -> None:
        """Small, medium and walked bodies parse to the same request."""
        request = make_request([task_span(f"t{i}") for i in range(spans)])
        body = request.SerializeToString()
        assert parse_protobuf(body) == request
        assert parse_protobuf(body, max_spans=spans, max_elements=10**9) == request
        assert parse_protobuf(body, max_spans=10**9, max_elements=count_elements(request)) \
            == request

    def test_walk_is_not_on_the_common_path(self) -> None:
        """A 5 MB collector batch (8,192 task spans) is decoded without the wire walk:
        about as fast as upb alone (bounded loosely: the machine is shared)."""
        question = "What is the capital of France? " * 12
        request = make_request([task_span(f"t{i}", input=question) for i in range(8192)])
        body = request.SerializeToString()
        assert 4_000_000 < len(body) < 8_000_000

        def best(fn: Any) -> float:
            times = []
            for _ in range(7):
                started = time.perf_counter()
                fn(body)
                times.append(time.perf_counter() - started)
            return min(times)

        bare = best(ExportTraceServiceRequest.FromString)
        ours = best(parse_protobuf)
        assert ours < bare * 1.5 + 0.002, (ours, bare)
