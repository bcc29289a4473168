"""SDK shutdown: spans ended after ``shutdown()`` are counted as dropped with one
warning naming the cause (defect 11.2); ``shutdown(timeout_s)`` and the exit-time flush
return within their timeout even when the collector accepts the connection and never
answers, or never accepts it (defect 11.4). Real TCP servers on 127.0.0.1."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel as phospho
from tests.sdk.hanging import FullBacklog, SilentServer
from tests.sdk.otlp_sink import OtlpSink

PROTOCOLS = ["http/protobuf", "grpc"]
ROOT = str(Path(__file__).resolve().parents[2])
MARGIN_S = 1.0  # what shutdown(1.0) may take beyond its timeout on a loaded CI machine


pytestmark = pytest.mark.usefixtures("clean_sdk")


def _export_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "phospho-otel-export"}


def _late_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name.startswith("phospho_otel") and "after shutdown" in r.getMessage()]


class TestLogAfterShutdown:
    """Spans that end after ``shutdown()`` (atexit hooks, daemon threads logging at
    exit) are not lost silently: counted in ``stats().dropped``, one warning per
    process naming the cause."""

    def test_log_task_and_feedback_after_shutdown_are_counted(
        self, caplog: pytest.LogCaptureFixture,
    ) -> None:
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=TracerProvider(),
                         schedule_delay_s=0.02)
            phospho.log("before")
            phospho.shutdown(5)
            assert phospho.stats().exported == 1
            logged = phospho.log("after 1")
            phospho.log("after 2")
            with phospho.task(input="after 3"):
                pass
            phospho.user_feedback(logged.task_id, "success")
            stats = phospho.stats()
            assert (stats.exported, stats.dropped) == (1, 4)
            assert sink.span_count() == 1
        warnings = _late_warnings(caplog)
        assert len(warnings) == 1
        assert "shutdown()" in warnings[0].getMessage()

    def test_other_tracers_and_daemon_threads_after_shutdown(
        self, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Spans of any tracer on the provider, from a daemon thread, after shutdown."""
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        provider = TracerProvider()
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider)
            phospho.shutdown(5)

            def late() -> None:
                provider.get_tracer("other").start_span("late").end()
                phospho.log("late from a thread")

            thread = threading.Thread(target=late, daemon=True)
            thread.start()
            thread.join(5)
            assert phospho.stats().dropped == 2
        assert len(_late_warnings(caplog)) == 1

    def test_init_again_after_shutdown_counts_nothing_late(
        self, caplog: pytest.LogCaptureFixture,
    ) -> None:
        """After shutdown() then init() on the same provider, nothing is counted late
        and no warning: the spans are the new pipeline's."""
        caplog.set_level(logging.WARNING, logger="phospho_otel")
        provider = TracerProvider()
        with OtlpSink() as sink:
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                         schedule_delay_s=0.02)
            phospho.shutdown(5)
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=provider,
                         schedule_delay_s=0.02)
            phospho.log("again")
            assert phospho.flush(5)
            assert (phospho.stats().exported, phospho.stats().dropped) == (1, 0)
        assert _late_warnings(caplog) == []

    def test_atexit_hook_logging_after_the_sdk_shut_down(self) -> None:
        """An atexit hook registered before ``init()`` runs after the SDK's own exit
        hook: its task is counted and named in one warning on stderr."""
        script = textwrap.dedent("""
            import atexit, logging
            from opentelemetry.sdk.trace import TracerProvider
            import phospho_otel as phospho
            from tests.sdk.otlp_sink import OtlpSink
            logging.basicConfig(level=logging.WARNING)
            sink = OtlpSink().start()
            def late():
                phospho.log("from an atexit hook")
                phospho.log("and another")
                print("dropped", phospho.stats().dropped, "exported",
                      phospho.stats().exported, flush=True)
            atexit.register(late)  # runs after phospho's hook (registered later)
            phospho.init(endpoint=sink.http_endpoint, tracer_provider=TracerProvider())
            phospho.log("during")
        """)
        result = subprocess.run([sys.executable, "-c", script], capture_output=True,
                                text=True, timeout=60, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": ROOT})
        assert result.returncode == 0, result.stderr
        assert "dropped 2 exported 1" in result.stdout
        assert result.stderr.count("after shutdown") == 1, result.stderr


class TestShutdownAgainstHangingCollector:
    """``shutdown(1.0)`` returns in < 2 s whatever the collector does; what was not
    sent is counted."""

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_collector_accepts_and_never_answers(self, protocol: str) -> None:
        """HTTP: the request is never answered; gRPC: the HTTP/2 connection is up and
        the call is never answered. The request is aborted (the export thread ends),
        its spans counted as dropped."""
        before = _export_threads()
        with SilentServer(http2=protocol == "grpc") as server:
            phospho.init(endpoint=server.endpoint, protocol=protocol,
                         tracer_provider=TracerProvider(), schedule_delay_s=0.01)
            for i in range(10):
                phospho.log(f"task {i}")
            deadline = time.monotonic() + 5
            while phospho.stats().queued and not server.connections:  # a request in flight
                assert time.monotonic() < deadline
                time.sleep(0.01)
            time.sleep(0.2)
            started = time.monotonic()
            phospho.shutdown(1.0)
            took = time.monotonic() - started
            assert took < 1.0 + MARGIN_S, f"shutdown(1.0) took {took:.1f}s"
            stats = phospho.stats()
            assert (stats.exported, stats.dropped, stats.failed, stats.queued) == (0, 10, 0, 0)
            assert _export_threads() <= before  # the in-flight request was aborted

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_collector_never_accepts(self, protocol: str) -> None:
        """The connection attempt itself hangs (SYN never answered)."""
        before = _export_threads()
        with FullBacklog() as server:
            phospho.init(endpoint=server.endpoint, protocol=protocol,
                         tracer_provider=TracerProvider(), schedule_delay_s=0.01)
            phospho.log("task")
            time.sleep(0.3)  # the export thread is connecting
            started = time.monotonic()
            phospho.shutdown(1.0)
            took = time.monotonic() - started
            assert took < 1.0 + MARGIN_S, f"shutdown(1.0) took {took:.1f}s"
            assert (phospho.stats().dropped, phospho.stats().failed) == (1, 0)
            assert _export_threads() <= before

    def test_flush_then_shutdown_zero(self) -> None:
        """``shutdown(0)`` does not wait for a hanging request at all."""
        with SilentServer() as server:
            phospho.init(endpoint=server.endpoint, tracer_provider=TracerProvider(),
                         schedule_delay_s=0.01)
            phospho.log("task")
            time.sleep(0.3)
            started = time.monotonic()
            phospho.shutdown(0)
            assert time.monotonic() - started < MARGIN_S

    @pytest.mark.parametrize("protocol", PROTOCOLS)
    def test_process_exits_promptly(self, protocol: str) -> None:
        """The exit-time flush (atexit) gives up after ``timeout_s`` and aborts the
        request in flight: the process ends within ``timeout_s`` + a margin of its
        last line, instead of waiting for the request timeout twice (20.6 s)."""
        with SilentServer(http2=protocol == "grpc") as server:
            script = textwrap.dedent(f"""
                import time
                import phospho_otel as phospho
                phospho.init(endpoint={server.endpoint!r}, protocol={protocol!r},
                             timeout_s=1.0, schedule_delay_s=0.01)
                for i in range(10):
                    phospho.log(f"task {{i}}")
                time.sleep(0.3)  # a request is in flight
                print("exiting", flush=True)
            """)
            process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            try:
                assert process.stdout is not None
                line = process.stdout.readline()
                exiting = time.monotonic()
                assert line.strip() == "exiting", process.stderr.read() if process.stderr else ""
                process.wait(30)
                took = time.monotonic() - exiting
            finally:
                process.kill()
                process.wait()
            assert process.returncode == 0
            assert took < 1.0 + MARGIN_S + 0.5, f"exit took {took:.1f}s"
            assert server.connections >= 1
