"""``SQLiteStore``: the embedded store, one SQLite file (WAL), one writer, pooled readers.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` by default, so a write is on
disk (the WAL is fsynced) when ``write`` returns; an acknowledged span survives a crash
of the process *and* of the machine. ``synchronous=NORMAL`` survives a killed process
but may lose the last commits on power loss; since a collector deletes what we
acknowledge, the default pays the fsync (one per transaction; the aggregator's
``Ingestor`` groups queued requests into one batch, so it is paid once per group).

WAL checkpoints run in a background thread (``PASSIVE``, its own connection, without the
GIL); under sustained writes the writer does a ``RESTART`` past ``max_wal_bytes``
between two transactions, so that the WAL starts over instead of growing without bound.

At open the file is created or upgraded (``migrations``); ``read_only=True`` opens an
existing file for reading only (the CLI's ``--db``), upgrading it first if an older
version made it.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from phospho_otel.errors import StoreClosed, StoreError
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import WriteResult
from phospho_otel.store.sqlite import migrations
from phospho_otel.store.sqlite.insights import SQLiteInsights
from phospho_otel.store.sqlite.traces import SQLiteTraces
from phospho_otel.store.sqlite.views import SQLiteViews
from phospho_otel.store.sqlite.writer import SQLiteWriter

__all__ = [
    "CHECKPOINT_WAL_BYTES",
    "MAX_WAL_BYTES",
    "SYNCHRONOUS_LEVELS",
    "SQLiteReader",
    "SQLiteStore",
]

logger = logging.getLogger(__name__)

CHECKPOINT_WAL_BYTES = 32 * 1024 * 1024
"""The background checkpointer copies the WAL into the database once it is this large."""
MAX_WAL_BYTES = 8 * CHECKPOINT_WAL_BYTES
"""Past this size the writer checkpoints the WAL to its end (RESTART) between two
transactions, so that the WAL starts over instead of growing without bound."""
SYNCHRONOUS_LEVELS = ("FULL", "NORMAL", "EXTRA")
"""SQLite ``synchronous`` levels the store accepts (see the module docstring)."""


class SQLiteReader(SQLiteViews, SQLiteInsights, SQLiteTraces):
    """``store.api.StoreReader`` over one connection inside one read transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn


class SQLiteStore:
    """The embedded store (``store.api.Store``). ``write`` from one thread at a time (the
    writer); ``read``/``counters`` from any thread.

    Args:
        path: the SQLite file, created if missing (unless ``read_only``).
        synchronous: ``FULL`` (default: durable across power loss), ``NORMAL`` (durable
            across a killed process only; faster) or ``EXTRA``.
        read_only: open an existing file for reading only; ``write`` raises.
        background_checkpoint: copy the WAL into the database from a background thread
            instead of inside the writer's commits.
        checkpoint_wal_bytes: WAL size from which the background checkpointer runs.
        max_wal_bytes: WAL size from which the writer restarts the WAL itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        read_only: bool = False,
        background_checkpoint: bool = True,
        checkpoint_wal_bytes: int = CHECKPOINT_WAL_BYTES,
        max_wal_bytes: int = MAX_WAL_BYTES,
    ) -> None:
        if synchronous.upper() not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)},"
                             f" not {synchronous!r}")
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SQLiteStore needs a file path (readers open their own connections)")
        self.read_only = read_only
        self._synchronous = synchronous.upper()
        self._checkpoint_wal_bytes = checkpoint_wal_bytes
        self._max_wal_bytes = max_wal_bytes
        self._write_lock = threading.Lock()
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_lock = threading.Lock()  # one checkpoint at a time
        self._checkpointer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._writer: SQLiteWriter | None = None
        if read_only:
            self._open_read_only()
            return
        conn = self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        try:
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            migrations.migrate(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot open {self.path}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._writer = SQLiteWriter(conn)
        if background_checkpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={checkpoint_wal_bytes * 4}")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="phospho-store-checkpoint", daemon=True
            )
            self._checkpointer.start()

    def _open_read_only(self) -> None:
        """Check that the file is a store; upgrade it first if an older version made it."""
        if not Path(self.path).is_file():
            raise StoreError(f"no database at {self.path}")
        try:
            conn = self._new_reader()
            if migrations.pending(conn):
                upgrade = sqlite3.connect(self.path, isolation_level=None)
                try:
                    upgrade.execute("PRAGMA busy_timeout=10000")
                    migrations.migrate(upgrade)
                finally:
                    upgrade.close()
            conn.execute("SELECT 1 FROM counters LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read {self.path}: {exc}") from exc
        self._readers.put(conn)

    # -- reading -----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[SQLiteReader]:
        """A reader on one read transaction (a consistent snapshot), not shared with any
        concurrent caller, for the duration of the ``with`` block. Any thread."""
        self._check_open()
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._new_reader()
        try:
            conn.execute("BEGIN")
            yield SQLiteReader(conn)
        finally:
            if conn.in_transaction:
                conn.rollback()
            if self._closed:
                conn.close()
            else:
                self._readers.put(conn)

    def _new_reader(self) -> sqlite3.Connection:
        if self.read_only:
            target = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(target, uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA query_only=ON")
        with self._readers_lock:
            self._all_readers.append(conn)
        return conn

    def counters(self) -> dict[str, int]:
        with self.read() as reader:
            return dict(reader.conn.execute("SELECT name, value FROM counters").fetchall())

    # -- writing -----------------------------------------------------------------------

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        """Store already extracted requests in one transaction; durable when it returns.
        All or nothing: on an error nothing is written and the error is raised."""
        with self._write_lock:
            self._check_open()
            if self._writer is None:
                raise StoreError(f"{self.path} is open read-only")
            results = self._writer.write(batch)
            if self._checkpointer is not None:
                self._checkpoint_wanted.set()
                self._bound_wal()
        return results

    def _bound_wal(self) -> None:
        """Under sustained writes a passive checkpoint never reaches the end of the WAL,
        so the WAL never starts over. Past ``max_wal_bytes`` the writer, between two
        transactions, checkpoints it to its end (RESTART; most pages were already copied
        by the background checkpointer), so that the next transaction starts it over."""
        try:
            size = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if size <= self._max_wal_bytes:
            return
        assert self._conn is not None
        with self._checkpoint_lock:
            busy, _, _ = self._conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        if busy:
            logger.warning("WAL of %d bytes not restarted: readers still use it", size)

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database in the background, off the writer's path."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        wal = self.path + "-wal"
        try:
            while not self._closed:
                self._checkpoint_wanted.wait(1.0)
                self._checkpoint_wanted.clear()
                try:
                    size = os.path.getsize(wal)
                except OSError:
                    continue
                if size < self._checkpoint_wal_bytes:
                    continue
                try:
                    with self._checkpoint_lock:
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error as exc:
                    logger.warning("background WAL checkpoint failed: %s", exc)
        finally:
            conn.close()

    # -- lifecycle ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store")

    def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpoint_wanted.set()
            self._checkpointer.join(30)
        with self._write_lock:
            if self._conn is not None:
                self._conn.close()
        with self._readers_lock:
            for conn in self._all_readers:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # in use in another thread
                    pass

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r}{', read_only=True' if self.read_only else ''})"
