"""Ingestor: one writer thread, a queue bounded in spans, group commit, clean close."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from ingest_helpers import make_request, task_span

from phospho_otel.receiver.ingest import Ingestor, Overloaded, count_spans
from phospho_otel.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "i.db")
    yield s
    s.close()


def wait_pending(ingestor: Ingestor, spans: int) -> None:
    deadline = time.monotonic() + 10
    while ingestor.pending_spans < spans:
        assert time.monotonic() < deadline, "request never queued"
        time.sleep(0.005)


def tasks(store: SQLiteStore) -> int:
    with store.reader() as conn:
        return int(conn.execute("SELECT count(*) FROM tasks").fetchone()[0])


class TestIngestor:
    """Queueing, back-pressure and shutdown against a real store."""

    def test_ingest_async(self, store: SQLiteStore) -> None:
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

    def test_overloaded_then_recovers(self, store: SQLiteStore) -> None:
        """Past max_pending_spans new requests are refused with a retry delay, not queued."""
        ingestor = Ingestor(store, max_pending_spans=10)
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        first = ingestor.submit(make_request([task_span(f"a{i}") for i in range(8)]))
        wait_pending(ingestor, 8)
        with pytest.raises(Overloaded) as info:
            ingestor.submit(make_request([task_span(f"b{i}") for i in range(3)]))
        assert info.value.retry_after_s >= 1
        blocker.execute("COMMIT")
        blocker.close()
        assert first.result(30).tasks_new == 8
        assert ingestor.ingest_blocking(make_request([task_span("b")]), 30).tasks_new == 1
        ingestor.close()

    def test_oversized_request_accepted_when_idle(self, store: SQLiteStore) -> None:
        """A request larger than the queue is accepted when nothing else is pending."""
        ingestor = Ingestor(store, max_pending_spans=5)
        request = make_request([task_span(f"o{i}") for i in range(20)])
        assert count_spans(request) == 20
        assert ingestor.ingest_blocking(request, 30).tasks_new == 20
        ingestor.close()

    def test_queued_requests_share_a_transaction(self, store: SQLiteStore) -> None:
        """Requests queued while the writer waits are all written, in order, once."""
        ingestor = Ingestor(store)
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        futures = [ingestor.submit(make_request([task_span(f"q{i}", session_id="s")]))
                   for i in range(5)]
        wait_pending(ingestor, 5)
        blocker.execute("COMMIT")
        blocker.close()
        assert [f.result(30).tasks_new for f in futures] == [1, 1, 1, 1, 1]
        with store.reader() as conn:
            assert conn.execute("SELECT task_count FROM sessions").fetchone()[0] == 5
        ingestor.close()

    def test_timeout_then_retry_counts_once(self, store: SQLiteStore) -> None:
        """A blocking ingest that times out may still land; its retry is a duplicate."""
        ingestor = Ingestor(store)
        blocker = sqlite3.connect(store.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        request = make_request([task_span("t", session_id="s")])
        with pytest.raises(TimeoutError):
            ingestor.ingest_blocking(request, 0.05)
        blocker.execute("COMMIT")
        blocker.close()
        retry = ingestor.ingest_blocking(request, 30)
        assert retry.spans_duplicate + retry.spans_stored == 1
        assert tasks(store) == 1
        ingestor.close()

    def test_close_drains_and_refuses(self, store: SQLiteStore) -> None:
        """close() writes what is queued, then new requests raise RuntimeError."""
        ingestor = Ingestor(store)
        future = ingestor.submit(make_request([task_span("last")]))
        ingestor.close()
        assert future.result(0).tasks_new == 1
        with pytest.raises(RuntimeError):
            ingestor.submit(make_request([task_span("late")]))

    def test_bad_arguments(self, store: SQLiteStore) -> None:
        """Non-positive limits raise ValueError."""
        with pytest.raises(ValueError):
            Ingestor(store, max_pending_spans=0)
        with pytest.raises(ValueError):
            Ingestor(store, max_group_spans=0)
