"""A reader holding an old snapshot (a database browser, an ``sqlite3`` shell left in a
transaction) must not make writes wait once the WAL passes ``max_wal_bytes`` (issue 9,
defect 8): the writer's WAL restart does not block, and one warning says what the reader
does (the WAL cannot be reset, it keeps growing)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.store.sqlite import SQLiteStore
from phospho_otel.store.sqlite.backend import WAL_RETRY_S
from tests.support.otlp import BASE_NS, make_request, task_span

_LOGGER = "phospho_otel.store.sqlite.backend"


def _batch(i: int) -> list[object]:
    spans = [task_span(f"t{i}-{j}", session_id=f"s{i}", input="x" * 2000,
                       start_ns=BASE_NS + j) for j in range(20)]
    return [extract(make_request(spans))]


class TestSnapshotHeldElsewhere:
    """Writes past ``max_wal_bytes`` with a second connection in a read transaction."""

    def test_writes_do_not_wait(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        path = tmp_path / "s.db"
        store = SQLiteStore(path, synchronous="NORMAL", checkpoint_wal_bytes=64 * 1024,
                            max_wal_bytes=128 * 1024)
        browser = sqlite3.connect(path, isolation_level=None)
        try:
            store.write(_batch(0))  # type: ignore[arg-type]
            browser.execute("BEGIN")
            browser.execute("SELECT count(*) FROM spans").fetchone()  # holds its snapshot
            caplog.set_level(logging.INFO, logger=_LOGGER)
            slowest = 0.0
            for i in range(1, 25):
                started = time.monotonic()
                store.write(_batch(i))  # type: ignore[arg-type]
                slowest = max(slowest, time.monotonic() - started)
                if i == 12:
                    time.sleep(WAL_RETRY_S + 0.1)  # an episode lasting over a second
            assert slowest < 1.0, f"a write waited {slowest:.1f} s for the reader"
            assert os.path.getsize(f"{path}-wal") > 128 * 1024
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == 1, [r.getMessage() for r in warnings]
            text = warnings[0].getMessage()
            assert "snapshot" in text and "WAL" in text and "MiB" in text
            browser.execute("ROLLBACK")  # the reader goes away: the WAL starts over
            time.sleep(WAL_RETRY_S + 0.1)  # (restarts are tried at most this often)
            caplog.clear()
            for i in range(25, 30):
                store.write(_batch(i))  # type: ignore[arg-type]
            assert any("reset" in r.getMessage() for r in caplog.records)
            assert os.path.getsize(f"{path}-wal") <= 4 * 64 * 1024 + 256 * 1024
        finally:
            browser.close()
            store.close()

    def test_own_readers_do_not_warn(self, tmp_path: Path,
                                     caplog: pytest.LogCaptureFixture) -> None:
        """Our own short reads that meet a restart do not count as a reader holding the
        WAL: no warning."""
        store = SQLiteStore(tmp_path / "s.db", synchronous="NORMAL",
                            checkpoint_wal_bytes=64 * 1024, max_wal_bytes=128 * 1024)
        caplog.set_level(logging.WARNING, logger=_LOGGER)
        try:
            with store.read() as reader:
                for i in range(6):
                    store.write(_batch(i))  # type: ignore[arg-type]
                    reader.data_version()
            for i in range(6, 10):
                store.write(_batch(i))  # type: ignore[arg-type]
        finally:
            store.close()
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
