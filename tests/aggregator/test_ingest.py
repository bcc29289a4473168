"""Ingestor: one writer thread, a queue bounded in spans, group commit, clean close."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.aggregator.ingest import Ingestor, count_spans
from phospho_otel.errors import Overloaded, StoreClosed
from phospho_otel.store import open_store
from phospho_otel.store.api import Page, Store, TaskFilter
from tests.support.gate import GatedWriter
from tests.support.oracle import check_store
from tests.support.otlp import make_request, task_span


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "i.db"))
    yield s
    s.close()


@pytest.fixture
def gate(store: Store) -> Iterator[GatedWriter]:
    """The store behind a gate: close it to hold the writer back in its write."""
    g = GatedWriter(store)
    yield g
    g.open()


def wait_pending(ingestor: Ingestor, spans: int) -> None:
    deadline = time.monotonic() + 10
    while ingestor.pending_spans < spans:
        assert time.monotonic() < deadline, "request never queued"
        time.sleep(0.005)


def tasks(store: Store) -> int:
    with store.read() as reader:
        total = reader.list_tasks(TaskFilter(), Page("start_time", limit=1)).total
    assert total is not None
    return total


class TestIngestor:
    """Queueing, back-pressure and shutdown against a real store."""

    def test_ingest_async(self, store: Store) -> None:
        """ingest() resolves with the write result once durable (small and large requests)."""
        ingestor = Ingestor(store)
        small = make_request([task_span("a")])
        large = make_request([task_span(f"l{i}") for i in range(200)])

        async def run() -> tuple[int, int]:
            a, b = await asyncio.gather(ingestor.ingest(small), ingestor.ingest(large))
            return a.tasks_new, b.tasks_new

        assert asyncio.run(run()) == (1, 200)
        assert tasks(store) == 201
        ingestor.close()

    def test_overloaded_then_recovers(self, store: Store, gate: GatedWriter) -> None:
        """Past max_pending_spans new requests are refused with a retry delay, not queued."""
        ingestor = Ingestor(gate, max_pending_spans=10)
        gate.close()
        first = ingestor.submit(make_request([task_span(f"a{i}") for i in range(8)]))
        wait_pending(ingestor, 8)
        with pytest.raises(Overloaded) as info:
            ingestor.submit(make_request([task_span(f"b{i}") for i in range(3)]))
        assert info.value.retry_after_s >= 1
        gate.open()
        assert first.result(30).tasks_new == 8
        assert ingestor.ingest_blocking(make_request([task_span("b")]), 30).tasks_new == 1
        assert tasks(store) == 9  # the refused request was not queued
        ingestor.close()

    def test_oversized_request_accepted_when_idle(self, store: Store) -> None:
        """A request larger than the queue is accepted when nothing else is pending."""
        ingestor = Ingestor(store, max_pending_spans=5)
        request = make_request([task_span(f"o{i}") for i in range(20)])
        assert count_spans(request) == 20
        assert ingestor.ingest_blocking(request, 30).tasks_new == 20
        ingestor.close()

    def test_queued_requests_share_a_transaction(self, store: Store,
                                                 gate: GatedWriter) -> None:
        """Requests queued while the writer waits are all written, in order, once."""
        ingestor = Ingestor(gate)
        gate.close()
        requests = [make_request([task_span(f"q{i}", session_id="s")]) for i in range(5)]
        futures = [ingestor.submit(request) for request in requests]
        wait_pending(ingestor, 5)
        gate.wait_until_blocked()
        gate.open()
        assert [f.result(30).tasks_new for f in futures] == [1, 1, 1, 1, 1]
        with store.read() as reader:
            session = reader.get_session("s")
        assert session is not None and session.task_count == 5
        # what the writer took before the gate, then everything queued meanwhile: one
        # write for all of those
        assert sum(gate.batches) == 5 and len(gate.batches) <= 2, gate.batches
        check_store(store, requests)
        ingestor.close()

    def test_timeout_then_retry_counts_once(self, store: Store, gate: GatedWriter) -> None:
        """A blocking ingest that times out may still land; its retry is a duplicate."""
        ingestor = Ingestor(gate)
        gate.close()
        request = make_request([task_span("t", session_id="s")])
        with pytest.raises(TimeoutError):
            ingestor.ingest_blocking(request, 0.05)
        gate.open()
        retry = ingestor.ingest_blocking(request, 30)
        assert retry.spans_duplicate + retry.spans_stored == 1
        assert tasks(store) == 1
        ingestor.close()

    def test_close_drains_and_refuses(self, store: Store) -> None:
        """close() writes what is queued, then new requests raise StoreClosed."""
        ingestor = Ingestor(store)
        future = ingestor.submit(make_request([task_span("last")]))
        ingestor.close()
        assert future.result(0).tasks_new == 1
        with pytest.raises(StoreClosed):
            ingestor.submit(make_request([task_span("late")]))
        with pytest.raises(StoreClosed):
            asyncio.run(ingestor.ingest(make_request([task_span("late")])))
        assert tasks(store) == 1

    def test_bad_arguments(self, store: Store) -> None:
        """Non-positive limits raise ValueError."""
        with pytest.raises(ValueError):
            Ingestor(store, max_pending_spans=0)
        with pytest.raises(ValueError):
            Ingestor(store, max_group_spans=0)
