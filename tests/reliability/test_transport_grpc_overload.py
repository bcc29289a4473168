"""gRPC under more concurrent Exports than it admits: every refusal is ``UNAVAILABLE`` with
a ``RetryInfo`` (which the OTel Collector retries), never grpcio's ``RESOURCE_EXHAUSTED``
without one (which it drops), and it comes at once (issue 9, defect 5)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from google.rpc.error_details_pb2 import RetryInfo

from phospho_otel.receiver.grpc import RETRY_INFO_KEY
from tests.support.oracle import read_state
from tests.support.otlp import make_request, task_span
from tests.support.servers import running_receiver

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
CALLS = 160
CHANNELS = 8


class TestManyConcurrentExports:
    """160 Exports at once against a writer held back at its gate."""

    def test_refusals_are_unavailable_with_retry_info(self, tmp_path: Path) -> None:
        """Those admitted wait for the writer and are stored once it goes on; every other
        one is UNAVAILABLE + RetryInfo within 2 s; retried, all are stored."""
        with running_receiver(tmp_path / "g.db") as receiver:
            receiver.gate.close()
            channels = [grpc.insecure_channel(receiver.grpc_target) for _ in range(CHANNELS)]
            calls: list[grpc.UnaryUnaryMultiCallable[bytes, bytes]] = [
                c.unary_unary(EXPORT) for c in channels]
            requests = [make_request([task_span(f"c{i}")]).SerializeToString()
                        for i in range(CALLS)]
            outcomes: dict[int, tuple[str, float, bytes | None]] = {}
            start = threading.Barrier(CALLS)

            def call(i: int) -> None:
                start.wait()
                started = time.monotonic()
                try:
                    calls[i % CHANNELS](requests[i], timeout=30)
                except grpc.RpcError as exc:
                    trailers = {m.key: m.value for m in exc.trailing_metadata() or ()}
                    outcomes[i] = (exc.code().name, time.monotonic() - started,
                                   trailers.get(RETRY_INFO_KEY))
                else:
                    outcomes[i] = ("OK", time.monotonic() - started, None)

            with ThreadPoolExecutor(CALLS) as pool:
                futures = [pool.submit(call, i) for i in range(CALLS)]
                deadline = time.monotonic() + 20
                while sum(1 for o in outcomes.values() if o[0] != "OK") < CALLS // 4:
                    assert time.monotonic() < deadline, sorted(outcomes.values())[:5]
                    time.sleep(0.01)
                time.sleep(0.5)
                receiver.gate.open()
                for f in futures:
                    f.result()
            refused = {i: o for i, o in outcomes.items() if o[0] != "OK"}
            assert refused, "nothing was refused"
            for i, (code, elapsed, retry_info) in refused.items():
                assert code == "UNAVAILABLE", (i, code)
                assert retry_info is not None, i
                assert RetryInfo.FromString(retry_info).retry_delay.seconds >= 1
                assert elapsed < 2.0, (i, elapsed)
            for i in refused:  # the collector's retry, once the writer is back
                calls[i % CHANNELS](requests[i], timeout=30)
            for c in channels:
                c.close()
            assert len(read_state(receiver.store).tasks) == CALLS
