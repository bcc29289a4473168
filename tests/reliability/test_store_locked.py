"""Another process holding the store's write lock (issue 9, defect 10): writes fail fast
with a retryable ``Unavailable`` (HTTP 503 + ``Retry-After``) instead of waiting out a long
busy timeout, and opening the locked file fails within a bounded wait with one line
saying it is locked by another process."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.errors import StoreError, Unavailable
from phospho_otel.store.sqlite import SQLiteStore
from tests.support.otlp import BASE_NS, make_request, task_span
from tests.support.servers import running_receiver

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA busy_timeout=10000")
conn.execute("BEGIN IMMEDIATE")
conn.execute("CREATE TABLE IF NOT EXISTS holder (x)")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


@contextmanager
def write_lock_held(path: Path) -> Iterator[None]:
    """Another process holds ``path``'s write lock (a write transaction) meanwhile."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        yield
    finally:
        assert proc.stdin is not None
        proc.stdin.write("\n")
        proc.stdin.flush()
        proc.wait(10)


def _request(key: str, n: int = 3) -> object:
    return make_request([task_span(f"{key}-{i}", session_id=key, start_ns=BASE_NS + i)
                         for i in range(n)])


class TestWritesFailFast:
    """A write meeting another process's lock raises ``Unavailable`` promptly."""

    def test_write(self, tmp_path: Path) -> None:
        store = SQLiteStore(tmp_path / "s.db")
        try:
            store.write([extract(_request("before"))])  # type: ignore[arg-type]
            with write_lock_held(tmp_path / "s.db"):
                started = time.monotonic()
                with pytest.raises(Unavailable) as caught:
                    store.write([extract(_request("during"))])  # type: ignore[arg-type]
                assert time.monotonic() - started < 2.0
                assert "locked by another process" in caught.value.message
                assert caught.value.retry_after_s <= 2
            (result,) = store.write([extract(_request("after"))])  # type: ignore[arg-type]
            assert result.tasks_new == 3
        finally:
            store.close()

    def test_http_answers_503_promptly(self, tmp_path: Path) -> None:
        """6 concurrent requests meeting the lock: every one a prompt 503 + Retry-After;
        once the lock is gone, the retries are stored."""
        path = tmp_path / "r.db"
        with running_receiver(path) as receiver:
            bodies = [_request(f"k{i}").SerializeToString()  # type: ignore[attr-defined]
                      for i in range(6)]

            def post(body: bytes) -> tuple[int, str | None, float]:
                started = time.monotonic()
                r = httpx.post(receiver.http_url, content=body, timeout=30,
                               headers={"Content-Type": "application/x-protobuf"})
                return r.status_code, r.headers.get("retry-after"), time.monotonic() - started

            with write_lock_held(path), ThreadPoolExecutor(6) as pool:
                answers = list(pool.map(post, bodies))
            for status, retry_after, elapsed in answers:
                assert status == 503 and retry_after is not None, answers
                assert elapsed < 5.0, answers
            with ThreadPoolExecutor(6) as pool:
                assert [a[0] for a in pool.map(post, bodies)] == [200] * 6


class TestOpenLocked:
    """Opening a file another process holds locked: one line, after a bounded wait."""

    def test_open(self, tmp_path: Path) -> None:
        path = tmp_path / "s.db"
        SQLiteStore(path).close()
        with write_lock_held(path):
            started = time.monotonic()
            with pytest.raises(StoreError) as caught:
                SQLiteStore(path, open_timeout_s=0.5)
            assert time.monotonic() - started < 3.0
        message = str(caught.value)
        assert "locked by another process" in message and "\n" not in message
