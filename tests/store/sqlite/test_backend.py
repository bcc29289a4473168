"""SQLiteStore itself: its file across reopening, its arguments, its WAL, its reader
connections, its read-only mode, its failed writes. (The contracts every backend keeps
are tested in ``tests/store_conformance``.)"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.errors import StoreError, StoreUnavailable
from phospho_otel.store import open_store
from phospho_otel.store.api import Page, Store, TaskFilter
from phospho_otel.store.sqlite import SQLiteStore
from phospho_otel.store.sqlite.backend import CHECKPOINT_WAL_BYTES
from tests.support.oracle import check_store, write
from tests.support.otlp import BASE_NS, SEC, make_request, task_span


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


def task_total(store: Store) -> int:
    with store.read() as reader:
        total = reader.list_tasks(TaskFilter(), Page("start_time", limit=1)).total
    assert total is not None
    return total


def dump(path: str | os.PathLike[str]) -> dict[str, list[tuple[object, ...]]]:
    """The file's data tables, sorted, for comparing two stores."""
    out = {}
    with closing(sqlite3.connect(path)) as conn:
        for table, order in (
            ("tasks", "task_id"),
            ("sessions", "session_id"),
            ("users", "user_id"),
            ("feedback", "trace_id, span_id"),
            ("counters", "name"),
        ):
            out[table] = conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        out["spans"] = conn.execute(
            "SELECT trace_id, span_id, session_id, user_id, span FROM spans "
            "ORDER BY trace_id, span_id"
        ).fetchall()
    return out


class TestFile:
    """The file, its arguments, and how it is opened."""

    def test_is_a_store(self, store: SQLiteStore) -> None:
        """SQLiteStore is a store.api Store, and open_store opens one for a path or a
        sqlite:/// URL."""
        assert isinstance(store, Store)
        for url in (store.path, f"sqlite:///{store.path}"):
            other = open_store(url, read_only=True)
            try:
                assert isinstance(other, SQLiteStore)
                assert Path(other.path).resolve() == Path(store.path).resolve()
            finally:
                other.close()

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        """Data written and acknowledged is there after reopening the file."""
        requests = [make_request([task_span("t1", session_id="s")])]
        store = SQLiteStore(tmp_path / "x.db")
        write(store, *requests)
        store.close()
        store = SQLiteStore(tmp_path / "x.db")
        try:
            with store.read() as reader:
                session = reader.get_session("s")
            assert session is not None and session.task_count == 1
            check_store(store, requests)
        finally:
            store.close()

    def test_bad_arguments(self, tmp_path: Path) -> None:
        """An unknown synchronous level or an in-memory database is refused."""
        with pytest.raises(ValueError):
            SQLiteStore(tmp_path / "x.db", synchronous="OFF")
        with pytest.raises(ValueError):
            SQLiteStore(":memory:")

    def test_read_only(self, tmp_path: Path) -> None:
        """read_only opens an existing file for reading: it reads what the writer wrote,
        refuses to write, and refuses a file that does not exist."""
        path = tmp_path / "ro.db"
        requests = [make_request([task_span("t1", session_id="s", user_id="u")])]
        store = SQLiteStore(path)
        write(store, *requests)
        store.close()
        reader = SQLiteStore(path, read_only=True)
        try:
            check_store(reader, requests)
            with pytest.raises(StoreError, match="read-only"):
                write(reader, make_request([task_span("t2")]))
            assert task_total(reader) == 1
        finally:
            reader.close()
        with pytest.raises(StoreError):
            SQLiteStore(tmp_path / "missing.db", read_only=True)
        assert not (tmp_path / "missing.db").exists()


class TestWAL:
    """The write-ahead log is copied back in the background and stays bounded."""

    def test_wal_checkpointed_in_background(self, tmp_path: Path) -> None:
        """Past CHECKPOINT_WAL_BYTES the background checkpointer copies the WAL into the
        database, and writes go on meanwhile."""
        store = SQLiteStore(tmp_path / "w.db")
        spans = [task_span(f"w{i}", session_id=f"s{i % 10}", input="x" * 2000)
                 for i in range(4000)]
        requests = [make_request(spans[i : i + 500]) for i in range(0, 4000, 500)]
        write(store, *requests)
        assert os.path.getsize(store.path + "-wal") >= CHECKPOINT_WAL_BYTES // 2
        deadline = time.monotonic() + 20
        while os.path.getsize(store.path) < 8 * 1024 * 1024:  # pages reached the database
            assert time.monotonic() < deadline, "no background checkpoint"
            time.sleep(0.05)
        requests.append(make_request([task_span("after")]))
        write(store, requests[-1])
        assert task_total(store) == 4001
        check_store(store, requests)
        store.close()

    def test_wal_bounded_under_sustained_writes(self, tmp_path: Path) -> None:
        """Back-to-back writes (no pause for a passive checkpoint to finish) still keep
        the WAL near max_wal_bytes: the writer restarts it."""
        store = SQLiteStore(tmp_path / "b.db", checkpoint_wal_bytes=128 * 1024,
                            max_wal_bytes=1024 * 1024)
        biggest = 0
        for batch in range(30):
            write(store, make_request([
                task_span(f"b{batch}-{i}", session_id=f"s{i % 20}", input="y" * 1000)
                for i in range(300)
            ]))
            biggest = max(biggest, os.path.getsize(store.path + "-wal"))
        assert biggest < 4 * 1024 * 1024  # without the restart: over 8 MB
        assert task_total(store) == 9000
        store.close()


class TestReaders:
    """Each read gets its own read-only connection."""

    def test_readers_are_not_shared(self, store: SQLiteStore) -> None:
        """Concurrent readers get distinct connections; reads work from other threads."""
        with store.read() as a, store.read() as b:
            assert a.conn is not b.conn
        seen: list[int] = []

        def read() -> None:
            with store.read() as reader:
                seen.append(reader.conn.execute("SELECT count(*) FROM spans").fetchone()[0])

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [0, 0, 0, 0]

    def test_readers_are_read_only(self, store: SQLiteStore) -> None:
        """A reader connection cannot write."""
        with store.read() as reader, pytest.raises(sqlite3.OperationalError):
            reader.conn.execute("DELETE FROM spans")


class TestFailedWrite:
    """A failed transaction leaves nothing behind in the file, and writing the same
    extraction again counts it once (the backend-neutral half is in
    ``tests/store_conformance/test_writes.py``)."""

    def test_integrity_error_rolls_back_everything(self, tmp_path: Path) -> None:
        """A batch whose second request breaks a constraint raises ``StoreError`` (a
        retry cannot help); the file then holds what a fresh store holds after the
        retry."""
        good = extract(make_request([
            task_span("a", session_id="s", user_id="u"),
            task_span("b", session_id="s", user_id="u", start_ns=BASE_NS + SEC),
            task_span("c", session_id="s2", user_id="u"),
        ]))
        broken = extract(make_request([task_span("d", session_id="s3")]))
        # name=None is deliberately invalid: it makes the write fail
        bad_task = broken.tasks[0]._replace(name=None)  # type: ignore[arg-type]
        broken = broken._replace(tasks=[bad_task])
        store = SQLiteStore(tmp_path / "retried.db")
        fresh = SQLiteStore(tmp_path / "fresh.db")
        try:
            with pytest.raises(StoreError, match="NOT NULL constraint failed") as caught:
                store.write([good, broken])
            assert not isinstance(caught.value, StoreUnavailable)
            assert dump(store.path)["tasks"] == []
            store.write([good])
            fresh.write([good])
            assert dump(store.path) == dump(fresh.path)
        finally:
            store.close()
            fresh.close()
