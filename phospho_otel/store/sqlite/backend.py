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
That restart never waits for a reader outside this store (a database browser, an
``sqlite3`` shell left in a transaction): it gives up at once, keeps what a passive
checkpoint can do, tries again at most once a second, and says once per episode (a
warning) that the WAL cannot be reset while that reader holds its snapshot.

Locks held by other processes: a write waits at most ``write_timeout_s`` for the file's
write lock, then raises ``errors.StoreUnavailable`` (retryable); opening waits at most
``open_timeout_s`` and then raises a one-line ``StoreError`` ("... is locked by another
process ..."). Within this process nothing contends for the write lock (one writer; the
background checkpoint is passive), so the short wait costs normal writes nothing.

At open the file is checked before anything is changed (``files.inspect``: not a
directory, a SQLite database, not damaged, not another application's), then created or
upgraded (``migrations``); ``read_only=True`` opens an existing file for reading only
(the CLI's ``--db``), upgrading it first if an older version made it. Every failure to
open is a one-line ``StoreError`` saying what is wrong and what to do; a failed read or
write raises ``StoreUnavailable`` or ``StoreError`` (``files.failure``: retryable or not).
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from phospho_otel.errors import StoreClosed, StoreError
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import AnalysisUpdate, WriteResult
from phospho_otel.store.sqlite import files, migrations
from phospho_otel.store.sqlite.analysis import SQLiteAnalysis
from phospho_otel.store.sqlite.analysis_writer import write_analysis
from phospho_otel.store.sqlite.insights import SQLiteInsights
from phospho_otel.store.sqlite.traces import SQLiteTraces
from phospho_otel.store.sqlite.views import SQLiteViews
from phospho_otel.store.sqlite.writer import SQLiteWriter

__all__ = [
    "CHECKPOINT_WAL_BYTES",
    "MAX_WAL_BYTES",
    "OPEN_TIMEOUT_S",
    "SYNCHRONOUS_LEVELS",
    "WRITE_TIMEOUT_S",
    "FairLock",
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
OPEN_TIMEOUT_S = 5.0
"""Opening waits this long at most for a lock another process holds on the file."""
WRITE_TIMEOUT_S = 0.25
"""A write waits this long at most for the write lock another process holds, then raises
``StoreUnavailable``. Nothing in this process contends for it (measured: no busy write
over thousands of group writes with the background checkpointer and readers running at
a zero wait), so this is only the time allowed to another process's short transaction."""
READ_TIMEOUT_MS = 10_000
"""Readers' busy timeout (a WAL reader waits only for a recovery or a checkpoint's reset)."""
WAL_RETRY_S = 1.0
"""While a reader outside the store holds the WAL, the writer tries to restart it at
most this often."""


class FairLock:
    """A lock taken in the order it was asked for (``threading.Lock`` is not: a thread
    that releases it and asks again at once, like the ingest writer under sustained load,
    usually gets it back before a thread already waiting). The analyzer's writes wait for
    at most the ingest batch in progress, not for the end of the load."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._next = 0  # the next ticket to hand out
        self._serving = 0  # the ticket that holds the lock

    def __enter__(self) -> None:
        with self._cond:
            ticket = self._next
            self._next += 1
            while ticket != self._serving:
                self._cond.wait()

    def __exit__(self, *exc: object) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class SQLiteReader(SQLiteViews, SQLiteInsights, SQLiteAnalysis, SQLiteTraces):
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
        open_timeout_s: longest wait at open for another process's lock.
        write_timeout_s: longest wait of a write for another process's lock.

    Raises ``StoreError`` (one line: what is wrong, what to do) when the file cannot be
    opened as a store; nothing is changed in a file it refuses.
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
        open_timeout_s: float = OPEN_TIMEOUT_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
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
        self._write_lock = FairLock()  # the ingest writer and the analyzer, in turn
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_lock = threading.Lock()  # one checkpoint at a time
        self._checkpointer: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._writer: SQLiteWriter | None = None
        self._open_timeout_s = open_timeout_s
        self._write_timeout_ms = max(0, round(write_timeout_s * 1000))
        self._reads = 0  # read() blocks open now (``_bound_wal`` tells them from others)
        self._reads_lock = threading.Lock()
        self._wal_held_since: float | None = None  # a restart found the WAL held
        self._wal_warned = False
        self._next_restart = 0.0
        if read_only:
            self._open_read_only()
            return
        existed = os.path.lexists(self.path)
        files.inspect(self.path, read_only=False, timeout_s=open_timeout_s)
        conn = None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                   cached_statements=256, timeout=open_timeout_s)
            conn.execute(f"PRAGMA busy_timeout={round(open_timeout_s * 1000)}")
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise StoreError(f"cannot put {self.path} in WAL mode (got {mode})")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA cache_size=-65536")
            conn.execute("PRAGMA temp_store=MEMORY")
            migrations.migrate(conn)
            conn.execute(f"PRAGMA busy_timeout={self._write_timeout_ms}")
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if not existed:  # a file we created and could not make a store: take it back
                for suffix in ("", "-wal", "-shm", "-journal"):
                    try:
                        os.unlink(self.path + suffix)
                    except OSError:
                        pass
            if isinstance(exc, sqlite3.Error):
                raise files.open_failure(exc, self.path) from exc
            raise
        self._conn = conn
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
        kind = files.inspect(self.path, read_only=True, timeout_s=self._open_timeout_s)
        if kind is files.FileKind.NEW:
            raise StoreError(f"{self.path} holds no store yet (an empty database): give the"
                             " path of a store a server has written")
        try:
            conn = self._new_reader()
            if migrations.pending(conn):
                upgrade = sqlite3.connect(self.path, isolation_level=None,
                                          timeout=self._open_timeout_s)
                try:
                    upgrade.execute(
                        f"PRAGMA busy_timeout={round(self._open_timeout_s * 1000)}")
                    migrations.migrate(upgrade)
                finally:
                    upgrade.close()
            conn.execute("SELECT 1 FROM counters LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise files.open_failure(exc, self.path) from exc
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
            try:
                conn = self._new_reader()
            except sqlite3.Error as exc:
                raise files.failure(exc, self.path) from exc
        with self._reads_lock:
            self._reads += 1
        try:
            conn.execute("BEGIN")
            yield SQLiteReader(conn)
        except sqlite3.Error as exc:
            raise files.failure(exc, self.path) from exc
        finally:
            with self._reads_lock:
                self._reads -= 1
            try:
                if conn.in_transaction:
                    conn.rollback()
            except sqlite3.Error:
                conn.close()
            else:
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
        conn.execute(f"PRAGMA busy_timeout={READ_TIMEOUT_MS}")
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
        All or nothing: on an error nothing is written and ``StoreUnavailable`` (a lock
        held by another process, a full disk: retry) or ``StoreError`` (a retry cannot
        help) is raised."""
        with self._write_lock:
            self._check_open()
            if self._writer is None:
                raise StoreError(f"{self.path} is open read-only")
            try:
                results = self._writer.write(batch)
            except (sqlite3.Error, OverflowError) as exc:
                raise files.failure(exc, self.path) from exc
            if self._checkpointer is not None:
                self._checkpoint_wanted.set()
                self._bound_wal()
        return results

    def write_analysis(self, update: AnalysisUpdate) -> None:
        """Store the analyzer's results (``store.api.AnalysisStore``): one durable
        transaction on the writer connection, between two ingest writes."""
        with self._write_lock:
            self._check_open()
            if self._conn is None:
                raise StoreError(f"{self.path} is open read-only")
            try:
                write_analysis(self._conn, update, time.time_ns())
            except (sqlite3.Error, OverflowError) as exc:
                raise files.failure(exc, self.path) from exc

    def _bound_wal(self) -> None:
        """Under sustained writes a passive checkpoint never reaches the end of the WAL,
        so the WAL never starts over. Past ``max_wal_bytes`` the writer, between two
        transactions, checkpoints it to its end (RESTART; most pages were already copied
        by the background checkpointer), so that the next transaction starts it over.

        The restart does not wait for a reader holding an older snapshot: with none of
        this store's reads open it gives up at once (doing what a passive checkpoint
        can), with some it waits for them briefly (they are short). While the WAL stays
        held it is tried at most every ``WAL_RETRY_S``, and when a reader outside the
        store has held it past that, one warning says so. Never raises: the batch is
        already durable."""
        try:
            size = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if size <= self._max_wal_bytes:
            return
        now = time.monotonic()
        if now < self._next_restart:
            return
        conn = self._conn
        assert conn is not None
        ours = self._reads > 0
        try:
            with self._checkpoint_lock:
                conn.execute(f"PRAGMA busy_timeout={100 if ours else 0}")
                try:
                    busy = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()[0]
                finally:
                    conn.execute(f"PRAGMA busy_timeout={self._write_timeout_ms}")
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)
            self._next_restart = now + WAL_RETRY_S
            return
        if not busy:
            if self._wal_warned:
                logger.info("WAL of %s reset: the reader that held it has finished",
                            self.path)
            self._wal_held_since = None
            self._wal_warned = False
            self._next_restart = 0.0
            return
        if self._wal_held_since is None:
            self._wal_held_since = now
        self._next_restart = now + WAL_RETRY_S
        held_s = now - self._wal_held_since
        if not ours and not self._reads and not self._wal_warned and held_s >= WAL_RETRY_S:
            self._wal_warned = True
            logger.warning(
                "WAL of %s is %.0f MiB and cannot be reset: a connection outside this"
                " server (a database browser, an sqlite3 shell left in a transaction?) has"
                " held a read snapshot for %.0f s or more. Until it ends its transaction"
                " the WAL grows with every write and its pages cannot all be copied back"
                " into the database; writes go on.",
                self.path, size / 2**20, held_s)

    def _checkpoint_loop(self) -> None:
        """Copy the WAL back into the database in the background, off the writer's path."""
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=0")  # PASSIVE never waits anyway
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
