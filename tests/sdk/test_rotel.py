"""SDK -> real rotel collector -> capture receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import phospho_otel as phospho
from phospho_otel.semconv import SEMCONV_VERSION
from tools.rotel import RotelCollector

from .otlp_sink import OtlpSink


@pytest.fixture
def provider() -> TracerProvider:
    return TracerProvider(resource=Resource.create({"service.name": "through-rotel"}))


@pytest.fixture
def rotel_grpc(sink: OtlpSink) -> Iterator[RotelCollector]:
    """rotel exporting over gRPC with its default 8192-span batch (the sink accepts
    64 MiB messages, over grpcio's default 4 MiB)."""
    with RotelCollector(sink.grpc_endpoint, exporter_protocol="grpc", batch_max_size=8192,
                        batch_timeout="50ms") as collector:
        yield collector


class TestThroughRotel:
    """Every attribute survives the collector; nothing is lost."""

    @pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
    def test_tasks_sessions_feedback(self, protocol: str, sink: OtlpSink,
                                     rotel_grpc: RotelCollector,
                                     provider: TracerProvider) -> None:
        """2,000 tasks in sessions, a plain span and feedback arrive, attributes exact."""
        endpoint = rotel_grpc.grpc_endpoint if protocol == "grpc" else rotel_grpc.http_endpoint
        phospho.init(endpoint=endpoint, protocol=protocol, tracer_provider=provider,
                     schedule_delay_s=0.02)
        ids = []
        for s in range(20):
            with phospho.session(user_id=f"user{s % 3}", metadata={"s": s}) as sess:
                for i in range(100):
                    ids.append(phospho.log(f"q{s}-{i}", f"a{i}", metadata={"i": i}).task_id)
                with provider.get_tracer("plain").start_as_current_span("plain"):
                    pass
        phospho.user_feedback(ids[0], "failure", notes="bad", source="owner")
        assert phospho.flush(10)
        spans = sink.wait_for(2021, timeout=20)
        assert len(spans) == 2021
        tasks = [s for s in spans if s.attributes.get("phospho.span.type") == "task"]
        assert sorted(s.attributes["phospho.task.id"] for s in tasks) == sorted(ids)
        last = next(s for s in tasks if s.attributes["input.value"] == "q19-99")
        assert last.attributes == {
            "phospho.span.type": "task",
            "phospho.semconv.version": SEMCONV_VERSION,
            "phospho.task.id": ids[-1],
            "input.value": "q19-99",
            "input.mime_type": "text/plain",
            "output.value": "a99",
            "output.mime_type": "text/plain",
            "session.id": sess.session_id,
            "user.id": "user1",
            "phospho.metadata.s": 19,
            "phospho.metadata.i": 99,
        }
        assert last.resource["service.name"] == "through-rotel"
        plain = [s for s in spans if s.name == "plain"]
        assert len(plain) == 20 and all("session.id" in s.attributes for s in plain)
        (feedback,) = [s for s in spans if s.attributes.get("phospho.span.type") == "feedback"]
        assert feedback.attributes["phospho.feedback.source"] == "owner"
        assert len(feedback.span.links) == 1

    def test_collector_restart_loses_nothing(self, sink: OtlpSink, provider: TracerProvider
                                             ) -> None:
        """rotel stopped (SIGTERM) and started again on the same ports mid-stream: the SDK
        retries, every task arrives exactly once."""
        collector = RotelCollector(sink.http_endpoint, exporter_protocol="http",
                                   batch_timeout="20ms").start()
        try:
            phospho.init(endpoint=collector.http_endpoint, tracer_provider=provider,
                         schedule_delay_s=0.02)
            ids = [phospho.log(f"a{i}").task_id for i in range(300)]
            assert phospho.flush(10)
            collector.stop()
            ids += [phospho.log(f"b{i}").task_id for i in range(300)]
            deadline = time.monotonic() + 10
            while phospho.stats().retries == 0:  # the SDK notices the outage
                assert time.monotonic() < deadline
                time.sleep(0.01)
            collector = RotelCollector(sink.http_endpoint, exporter_protocol="http",
                                       batch_timeout="20ms", grpc_port=collector.grpc_port,
                                       http_port=collector.http_port).start()
            assert phospho.flush(20)
            spans = sink.wait_for(600, timeout=20)
            got = [s.attributes["phospho.task.id"] for s in spans]
            assert sorted(got) == sorted(ids)
            assert phospho.stats().dropped == 0
        finally:
            collector.stop()
