"""The span processor: size limit, bounded queue, drop counting and warnings, retries,
outages, never blocking the app."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

import pytest
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel as phospho
from phospho_otel.sdk.exporter import HttpTransport
from phospho_otel.sdk.processor import PhosphoSpanProcessor

from .otlp_sink import OtlpSink


class TestSizeLimit:
    """Attribute values over the limit are cut and marked with phospho.truncated."""

    def test_ten_megabyte_input_is_truncated(self, sink: OtlpSink,
                                             start_sdk: Callable[..., TracerProvider]) -> None:
        """A 10 MB input arrives cut to the limit (UTF-8 safe), marked; others intact."""
        start_sdk(max_attribute_bytes=1000)
        big = "é" * 5_000_000  # 10 MB of UTF-8
        logged = phospho.log(big, output="short", metadata={"blob": "x" * 1001, "n": 1})
        (span,) = sink.wait_for(1, timeout=20)
        attrs = span.attributes
        assert attrs["input.value"] == "é" * 500
        assert len(attrs["phospho.metadata.blob"]) == 1000
        assert set(attrs["phospho.truncated"]) == {"input.value", "phospho.metadata.blob"}
        assert attrs["output.value"] == "short" and attrs["phospho.metadata.n"] == 1
        assert attrs["phospho.task.id"] == logged.task_id
        assert phospho.stats().truncated == 1

    def test_arrays_and_third_party_spans(self, sink: OtlpSink,
                                          start_sdk: Callable[..., TracerProvider]) -> None:
        """Strings inside arrays are cut too, on any tracer's spans."""
        provider = start_sdk(max_attribute_bytes=10)
        with provider.get_tracer("x").start_as_current_span("s") as s:
            s.set_attribute("arr", ["short", "y" * 50])
            s.set_attribute("ok", "0123456789")
        (span,) = sink.wait_for(1)
        assert span.attributes["arr"] == ("short", "y" * 10)
        assert span.attributes["ok"] == "0123456789"
        assert span.attributes["phospho.truncated"] == ("arr",)


class TestQueue:
    """Bounded queue: never blocks, counts drops, one warning per episode."""

    def test_collector_down_drops_counted_once_per_episode(
        self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """With the receiver down, log() returns at once; beyond the queue's capacity
        spans are dropped and counted; one warning with the count; the queued ones
        arrive once the receiver is back."""
        sink.stop()
        start_sdk(max_queue_size=100, max_export_batch_size=10)
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        phospho.log("first")
        deadline = time.monotonic() + 10
        while phospho.stats().retries == 0:  # the export thread holds it, retrying
            assert time.monotonic() < deadline
            time.sleep(0.005)
        started = time.perf_counter()
        for i in range(300):
            phospho.log(f"q{i}")
        elapsed = time.perf_counter() - started
        assert elapsed < 1.0  # ~300 spans: milliseconds, even with nothing listening
        stats = phospho.stats()
        assert (stats.queued, stats.dropped) == (101, 200)
        sink.start()
        assert phospho.flush(15)
        stats = phospho.stats()
        assert (stats.exported, stats.dropped, stats.failed) == (101, 200, 0)
        assert sink.span_count() == 101
        drops = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(drops) == 1
        assert "dropped 200 spans" in drops[0].getMessage()

    def test_outage_loses_nothing_within_capacity(
        self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider]
    ) -> None:
        """Receiver goes away mid-run and comes back: every span arrives exactly once."""
        start_sdk(protocol="grpc")
        first = [phospho.log(f"a{i}").task_id for i in range(50)]
        sink.wait_for(50)
        sink.stop()
        during = [phospho.log(f"b{i}").task_id for i in range(200)]
        time.sleep(0.3)  # let the exporter hit the closed port and start retrying
        sink.start()
        assert phospho.flush(20)
        ids = [s.attributes["phospho.task.id"] for s in sink.spans()]
        assert sorted(ids) == sorted(first + during)
        stats = phospho.stats()
        assert (stats.exported, stats.dropped, stats.failed) == (250, 0, 0)
        assert stats.retries >= 1

    @pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
    def test_retryable_errors_are_retried(
        self, protocol: str, sink: OtlpSink, start_sdk: Callable[..., TracerProvider]
    ) -> None:
        """503 / UNAVAILABLE replies are retried until accepted."""
        start_sdk(protocol)
        sink.fail_next(3)
        phospho.log("retry me")
        assert phospho.flush(10)
        assert sink.span_count() == 1 and sink.failed_requests == 3
        assert phospho.stats().retries == 3 and phospho.stats().exported == 1

    def test_partial_success_and_permanent_failure(
        self, sink: OtlpSink, provider: TracerProvider
    ) -> None:
        """Rejected spans of a partial success and a non-retryable 404 count as failed."""
        sink.partial_reject = 1
        phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider)
        phospho.log("a")
        phospho.log("b")
        assert phospho.flush(5)
        assert (phospho.stats().exported, phospho.stats().failed) == (1, 1)
        phospho.shutdown()
        phospho.init(endpoint=sink.http_endpoint + "/wrong/v1/traces",
                     tracer_provider=provider)
        phospho.log("c")
        assert phospho.flush(5)
        assert (phospho.stats().exported, phospho.stats().failed) == (0, 1)

    def test_shutdown_with_collector_down_counts_leftovers(self, provider: TracerProvider
                                                           ) -> None:
        """shutdown() gives up after its timeout and counts what it could not send."""
        from tools.rotel import free_port

        phospho.init(endpoint=f"http://127.0.0.1:{free_port()}", tracer_provider=provider,
                     schedule_delay_s=0.01)
        for i in range(20):
            phospho.log(f"x{i}")
        started = time.monotonic()
        assert not phospho.flush(0.2)
        phospho.shutdown(timeout_s=0.3)
        assert time.monotonic() - started < 5
        stats = phospho.stats()  # the final counters, after shutdown
        assert stats.exported == 0 and stats.dropped + stats.failed == 20

    def test_receiver_restart_reconnects_quietly(
        self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider]
    ) -> None:
        """A kept-alive connection the receiver closed is replaced at once, not retried
        with backoff."""
        start_sdk()
        phospho.log("before")
        assert phospho.flush(5)
        sink.stop()
        sink.start()
        phospho.log("after")
        assert phospho.flush(5)
        assert sink.span_count() == 2 and phospho.stats().retries == 0

    def test_forked_child_exports_its_own_spans(
        self, sink: OtlpSink, start_sdk: Callable[..., TracerProvider]
    ) -> None:
        """After fork() the child gets a new export thread and connection."""
        start_sdk()
        phospho.log("parent")
        assert phospho.flush(5)
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                phospho.log("child")
                code = 0 if phospho.flush(5) else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        phospho.log("parent again")
        assert phospho.flush(5)
        values = sorted(s.attributes["input.value"] for s in sink.wait_for(3))
        assert values == ["child", "parent", "parent again"]

    def test_processor_arguments(self) -> None:
        """Bad processor arguments raise ValueError."""
        transport = HttpTransport("http://127.0.0.1:9/v1/traces", {})
        with pytest.raises(ValueError, match="max_queue_size"):
            PhosphoSpanProcessor(transport, max_queue_size=0)
        with pytest.raises(ValueError, match="must not exceed"):
            PhosphoSpanProcessor(transport, max_queue_size=10, max_export_batch_size=20)
