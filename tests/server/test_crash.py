"""SIGKILL at any moment, then restart: every acknowledged task is there, none twice.

Runs the real service, ``python -m phospho_otel serve``, as a child process, and reads
what it stored through the store API (``tests/support/oracle``)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.oracle import check_store, read_state
from tests.support.service import requests_for, send_grpc, send_http, start_server, task_ids


def stored_span_count(store: Store, requests: list[ExportTraceServiceRequest]) -> int:
    """Spans of these requests' traces in the store, each once."""
    trace_ids = {span.trace_id for request in requests for rs in request.resource_spans
                 for ss in rs.scope_spans for span in ss.spans}
    with store.read() as reader:
        traces = reader.get_traces(trace_ids)
    keys = [(t.trace_id, s.span.span_id) for t in traces for s in t.spans]
    assert len(keys) == len(set(keys)), "a span stored twice"
    return len(keys)


class TestSigkill:
    """A real server process killed with SIGKILL mid-stream."""

    def test_acknowledged_survive_and_retries_count_once(self, tmp_path: Path) -> None:
        """Tasks acknowledged before the kill are stored; resending everything after the
        restart (a collector's retries) leaves each task counted exactly once."""
        db = tmp_path / "crash.db"
        proc, http_port, grpc_port = start_server(db)
        batches = {0: requests_for(0, 60), 1: requests_for(1, 60)}
        acked: dict[int, list[int]] = {0: [], 1: []}
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")

        def run(sender: int) -> None:
            for i, request in enumerate(batches[sender]):
                ok = (send_http(http_port, request) if sender == 0
                      else send_grpc(channel, request)).ok
                if not ok:
                    return
                acked[sender].append(i)

        threads = [threading.Thread(target=run, args=(s,)) for s in (0, 1)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 30
        while len(acked[0]) + len(acked[1]) < 15:
            assert time.monotonic() < deadline, "server acknowledged too little"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(30)
        channel.close()
        assert len(acked[0]) + len(acked[1]) < 120, "kill came too late to mean anything"

        store = open_store(str(db))
        try:
            stored = set(read_state(store).tasks)
            kept = []  # the requests the store holds: each one whole or not at all
            for sender, requests in batches.items():
                for i, request in enumerate(requests):
                    ids = task_ids(sender, i)
                    if i in acked[sender]:
                        assert ids <= stored, f"acknowledged request {sender}/{i} lost"
                    assert ids <= stored or not ids & stored, f"request {sender}/{i} in part"
                    if ids <= stored:
                        kept.append(request)
            check_store(store, kept)
        finally:
            store.close()

        proc, http_port, grpc_port = start_server(db)
        try:
            channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
            for request in batches[0]:
                assert send_http(http_port, request).ok
            for request in batches[1]:
                assert send_grpc(channel, request).ok
            channel.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)
        everything = batches[0] + batches[1]
        store = open_store(str(db))
        try:
            state = read_state(store)
            assert len(state.tasks) == 2 * 60 * 40
            assert sum(s.task_count for s in state.sessions.values()) == 4800
            assert sum(u.task_count for u in state.users.values()) == 4800
            assert sum(u.success_count for u in state.users.values()) == 480
            assert stored_span_count(store, everything) == 4800 + 480
            assert store.counters()["spans_stored"] == 4800 + 480
            check_store(store, everything)
        finally:
            store.close()
