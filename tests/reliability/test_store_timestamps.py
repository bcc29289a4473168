"""Times past SQLite's int64 (OTLP times are ``fixed64``): the span carrying one is
rejected at extraction (counted, named in the partial-success message), and every other
span of its request is stored (issue 9, defect 1). A store error that a retry cannot fix
is never answered as retryable: ``StoreError`` (500 / INTERNAL), not ``Unavailable``."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel as phospho
from phospho_otel.aggregator.extract import extract
from phospho_otel.errors import StoreError, Unavailable
from phospho_otel.model.records import Extraction, SpanRecord
from phospho_otel.store.api import Page, TaskFilter
from phospho_otel.store.sqlite import SQLiteStore
from tests.support.otlp import BASE_NS, SEC, feedback_span, make_request, make_span, task_span
from tests.support.servers import running_receiver

TOO_LATE = 2**63  # one past SQLite's largest integer
MAX_TIME_NS = 2**63 - 1


def _request(bad_start: int = TOO_LATE, bad_end: int | None = None,
             valid: int = 200) -> ExportTraceServiceRequest:
    """One span with a time past int64 ("broken-clock"), then ``valid`` task spans."""
    spans = [make_span({}, name="broken-clock", start_ns=bad_start,
                       end_ns=bad_end if bad_end is not None else bad_start)]
    spans += [task_span(f"task-{i}", session_id=f"s{i % 7}", start_ns=BASE_NS + i * SEC)
              for i in range(valid)]
    return make_request(spans)


def otlp_json(request: ExportTraceServiceRequest) -> str:
    """OTLP/JSON of a request: protobuf's JSON mapping with hex ids, as OTLP says."""
    doc = MessageToDict(request)
    for rs in doc.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return json.dumps(doc)


def _task_count(store: SQLiteStore) -> int:
    with store.read() as reader:
        total = reader.list_tasks(TaskFilter(), Page("start_time")).total
    assert total is not None
    return total


class TestExtraction:
    """``extract`` rejects a span whose start or end does not fit a signed 64-bit integer."""

    @pytest.mark.parametrize(("start", "end"), [
        (TOO_LATE, TOO_LATE), (BASE_NS, TOO_LATE), (TOO_LATE, BASE_NS), (2**64 - 1, 2**64 - 1),
    ])
    def test_rejected_and_named(self, start: int, end: int) -> None:
        x = extract(_request(start, end, valid=3))
        assert x.rejected_spans == 1
        assert x.span_count == 4
        assert sum(len(rows) for _, rows in x.groups) == 3
        assert len(x.tasks) == 3
        assert any("broken-clock" in p and "2262" in p for p in x.problems), x.problems
        assert x.counters.get("spans_rejected_time") == 1

    def test_largest_time_is_kept(self) -> None:
        """2^63 - 1 ns (2262-04-11) is still a time we store."""
        x = extract(_request(MAX_TIME_NS, MAX_TIME_NS, valid=1))
        assert x.rejected_spans == 0

    def test_feedback_time(self) -> None:
        """Feedback's time is its span's end: past int64 it is rejected too."""
        x = extract(make_request([feedback_span("t", "success", time_ns=TOO_LATE)]))
        assert x.rejected_spans == 1 and x.feedback == []


class TestStoreErrorsArePermanent:
    """A record the store cannot hold (a hand-built one, past extraction's checks) raises
    ``StoreError`` (not retryable), keeps nothing, and the store goes on working."""

    def test_overflowing_record(self, tmp_path: Path) -> None:
        store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL")
        try:
            good = extract(_request(valid=2))
            origin, rows = good.groups[0]
            bad_row = SpanRecord(*rows[0])._replace(span_id=b"\x01" * 8, start_ns=TOO_LATE)
            bad = Extraction([(origin, [bad_row])], [], [], 1, 0, {}, [])
            with pytest.raises(StoreError) as caught:
                store.write([good, bad])
            assert not isinstance(caught.value, Unavailable)
            assert caught.value.status == 500 and caught.value.grpc_code == "INTERNAL"
            assert _task_count(store) == 0  # all or nothing
            (result,) = store.write([good])
            assert result.tasks_new == 2
        finally:
            store.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[object]:
    with running_receiver(tmp_path / "r.db") as r:
        yield r


class TestThroughTheReceivers:
    """One span at 2^63 ns among 200 valid ones: 200 stored, partial success naming it."""

    def test_http_protobuf(self, receiver: object) -> None:
        body = _request().SerializeToString()
        r = httpx.post(receiver.http_url, content=body,  # type: ignore[attr-defined]
                       headers={"Content-Type": "application/x-protobuf"}, timeout=30)
        assert r.status_code == 200, r.text
        reply = ExportTraceServiceResponse.FromString(r.content)
        assert reply.partial_success.rejected_spans == 1
        assert "broken-clock" in reply.partial_success.error_message
        assert _task_count(receiver.store) == 200  # type: ignore[attr-defined]

    def test_http_json(self, receiver: object) -> None:
        r = httpx.post(receiver.http_url, content=otlp_json(_request()),  # type: ignore[attr-defined]
                       headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 200, r.text
        partial = r.json()["partialSuccess"]
        assert partial["rejectedSpans"] == "1"
        assert "broken-clock" in partial["errorMessage"]
        assert _task_count(receiver.store) == 200  # type: ignore[attr-defined]

    def test_grpc(self, receiver: object) -> None:
        with grpc.insecure_channel(receiver.grpc_target) as channel:  # type: ignore[attr-defined]
            reply = TraceServiceStub(channel).Export(  # type: ignore[no-untyped-call]
                _request(), timeout=30)
        assert reply.partial_success.rejected_spans == 1
        assert "broken-clock" in reply.partial_success.error_message
        assert _task_count(receiver.store) == 200  # type: ignore[attr-defined]


@pytest.mark.usefixtures("clean_sdk")
class TestThroughTheSDK:
    """A span from any tracer with a broken clock does not hold the app's tasks back."""

    def test_broken_clock(self, receiver: object) -> None:
        provider = TracerProvider(resource=Resource.create({"service.name": "clock"}))
        phospho.init(endpoint=f"http://127.0.0.1:{receiver.http_port}",  # type: ignore[attr-defined]
                     protocol="http/protobuf", tracer_provider=provider, schedule_delay_s=0.02)
        other = provider.get_tracer("some.library")
        span = other.start_span("broken-clock", start_time=TOO_LATE)
        span.end(end_time=TOO_LATE + 1)
        for i in range(200):
            phospho.log(f"question {i}", "answer", session_id="s")
        assert phospho.flush(20)
        deadline = time.monotonic() + 10
        while _task_count(receiver.store) < 200 and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)
        assert _task_count(receiver.store) == 200  # type: ignore[attr-defined]
        stats = phospho.stats()
        assert stats.exported >= 200 and stats.retries == 0, stats
