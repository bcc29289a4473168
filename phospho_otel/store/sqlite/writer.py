"""The embedded store: one SQLite file (WAL), one writer thread, pooled readers.

Durability: ``journal_mode=WAL`` with ``synchronous=FULL`` by default, so a write is on
disk (the WAL is fsynced) when ``write`` returns; an acknowledged span survives a crash
of the process *and* of the machine. ``synchronous=NORMAL`` survives a killed process
but may lose the last commits on power loss; since a collector deletes what we
acknowledge, the default pays the fsync (one per transaction; the ``Ingestor`` groups
queued requests into one transaction, so it is paid once per group).

How a request is written (one transaction), following the merge rules of ``schema``:

1. Every span goes to ``spans`` with ``INSERT OR IGNORE``: a span seen before (same
   ``(trace_id, span_id)``) is a duplicate and goes no further.
2. Feedback spans among the new spans go to ``feedback``.
3. Task spans among the new spans: several spans may carry the same task id (a task
   logged twice). The task row holds **the version with the latest end time** (ties: the
   larger span id), whatever the arrival order; a task id counts once. A new task id is
   inserted and merged into its session and user rollups (counts add, min/max,
   first/last by ``(start_ns, task_id)``). A newer version of a known task replaces the
   row's span-derived columns (its flag stays) and the rollups of the sessions and users
   it left or joined are recomputed from ``tasks``; an older version changes nothing
   (counter ``tasks_superseded``).
4. A task's flag is its latest feedback by ``(time, trace_id, span_id)``, whether the
   feedback came before the task (it is applied when the task arrives) or after. Flag
   changes move the session's and user's success/failure counts, and the session's
   ``last_flag`` when the task is its last (a new last task brings its own flag; a
   recomputed session reads it from ``tasks``).
5. A session's ``user_id`` is the smallest user id among its tasks' (tasks without a user
   do not count), so that it does not depend on arrival order; ``users.session_count``
   counts the sessions whose ``user_id`` is that user. A task without a session belongs
   to no session but counts for its user (``task_count``, first/last seen, flags).
6. Counters are added to the ``counters`` table.

Speed: the one writer thread is the bottleneck of ingest, so it does as little as it
can, in as few statements as it can (each statement hands the GIL over and must win it
back, up to the switch interval when other threads are busy):

* rows go in with multi-row ``INSERT``s (``_BulkInsert``); id lookups take all ids in
  one statement (``json_each``) instead of chunks of ``IN (?, ...)``;
* the per-session and per-user rollup of a request (``aggregator.rollup``) is computed
  by ``extract`` in the receiving thread; the writer merges it with one multi-row upsert
  per table (it recomputes it only when some task was not new or had feedback);
* duplicates are found without a savepoint: new ``spans`` rows are those past the
  largest rowid before the insert (a savepoint would copy every index page the insert
  touches into a sub-journal);
* WAL checkpoints run in a background thread (``PASSIVE``; the writer does a
  ``RESTART`` past ``MAX_WAL_BYTES`` so that the WAL starts over under sustained load).

The CPU-bound extraction is left to the caller (``write_extracted``), see
``receiver.ingest``. What remains is mostly SQLite's own work: about 14 B-tree updates per
task span, and at commit one WAL frame per page dirtied (the random-key indexes dirty
most of their pages in every transaction of thousands of spans).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import chain
from typing import Any, TypeVar

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import (
    Extraction,
    FeedbackRecord,
    Origin,
    TaskRecord,
    extract,
)
from phospho_otel.aggregator.rollup import Rollup, rollup
from phospho_otel.store import schema
from phospho_otel.store.base import WriteResult

__all__ = ["CHECKPOINT_WAL_BYTES", "MAX_WAL_BYTES", "SQLiteStore"]

logger = logging.getLogger(__name__)

_BULK_MAX_ROWS = 8192
"""Rows per multi-row statement at most: a collector's whole batch (rotel sends 8192
spans) in one statement per table. Fewer when the columns would pass SQLite's limit on
parameters (Python's bundled SQLite allows 250000; 1638 rows of 20 columns under
SQLite's default of 32766)."""


class _BulkInsert:
    """``INSERT ... VALUES (...), (...), ... [tail]`` over many rows per statement.

    One statement per up to ``_BULK_MAX_ROWS`` rows instead of one per row (``executemany``): the
    sqlite3 module releases the GIL around each statement step and the writer must win
    it back, which, with other threads busy in Python (receivers, extraction), costs up
    to the interpreter's switch interval per step. Per batch this is a handful of waits,
    not one per row.
    """

    def __init__(self, head: str, columns: int, tail: str = "") -> None:
        self.head = head
        self.columns = columns
        self.tail = tail
        self.row = "(" + ",".join("?" * columns) + ")"
        self.single = f"{head} VALUES {self.row} {tail}"
        self._sql: dict[int, str] = {}

    def _statement(self, size: int) -> str:
        sql = self._sql.get(size)
        if sql is None:
            sql = self._sql[size] = f"{self.head} VALUES {','.join([self.row] * size)} {self.tail}"
        return sql

    def sizes(self, conn: sqlite3.Connection) -> list[int]:
        """Rows per statement: the most the parameter limit allows, then powers of two
        below it. A batch is cut greedily into these sizes: a few statements per batch
        (one per power of two for the remainder), and few distinct statements (they stay
        in the statement cache)."""
        limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        largest = max(1, min(_BULK_MAX_ROWS, limit // self.columns))
        sizes = [largest]
        power = 1 << (largest.bit_length() - 1)
        if power == largest:
            power >>= 1
        while power:
            sizes.append(power)
            power >>= 1
        return sizes

    def run(self, conn: sqlite3.Connection, rows: Sequence[Sequence[Any]]) -> int:
        """Insert the rows; returns the number of rows changed."""
        changed = 0
        start, total = 0, len(rows)
        for size in self.sizes(conn):
            while total - start >= size:
                params = list(chain.from_iterable(rows[start : start + size]))
                changed += conn.execute(self._statement(size), params).rowcount
                start += size
        return changed


_INSERT_SPAN = _BulkInsert(
    "INSERT OR IGNORE INTO spans (origin_id, trace_id, span_id, parent_span_id, "
    "service_name, name, kind, start_ns, end_ns, status_code, session_id, user_id, span)",
    13,
)
_INSERT_FEEDBACK = _BulkInsert(
    "INSERT OR IGNORE INTO feedback (trace_id, span_id, task_id, flag, notes, source, time_ns)",
    7,
)
_TASK_COLUMNS = (
    "task_id, trace_id, span_id, session_id, user_id, name, service_name, convention, "
    "input, output, raw_input, raw_output, metadata, start_ns, end_ns, status"
)
_INSERT_TASK = _BulkInsert(
    f"INSERT INTO tasks ({_TASK_COLUMNS}, flag, flag_time_ns, notes, flag_source)", 20
)
_REPLACE_TASK = (
    "UPDATE tasks SET trace_id=?, span_id=?, session_id=?, user_id=?, name=?, "
    "service_name=?, convention=?, input=?, output=?, raw_input=?, raw_output=?, "
    "metadata=?, start_ns=?, end_ns=?, status=? WHERE task_id=?"
)
_MERGE_SESSION_HEAD = """
INSERT INTO sessions (session_id, user_id, task_count, start_ns, end_ns,
    first_task_id, first_start_ns, first_input,
    last_task_id, last_start_ns, last_input, last_output, last_status,
    success_count, failure_count, error_count, last_flag)"""
def _take_if(condition: str, columns: tuple[str, ...]) -> str:
    """``col = CASE WHEN condition THEN excluded.col ELSE col END`` for each column
    (the key column, which the condition reads, must come last)."""
    return ",\n".join(
        f"    {c} = CASE WHEN {condition} THEN excluded.{c} ELSE {c} END" for c in columns
    )


# first/last task of a session: smallest / largest (start_ns, task_id) wins.
_FIRST_WINS = ("first_start_ns IS NULL OR (excluded.first_start_ns, excluded.first_task_id)"
               " < (first_start_ns, first_task_id)")
_LAST_WINS = ("last_start_ns IS NULL OR (excluded.last_start_ns, excluded.last_task_id)"
              " > (last_start_ns, last_task_id)")
_MERGE_SESSION_TAIL = f"""
ON CONFLICT(session_id) DO UPDATE SET
    user_id = coalesce(min(user_id, excluded.user_id), user_id, excluded.user_id),
    task_count = task_count + excluded.task_count,
    start_ns = coalesce(min(start_ns, excluded.start_ns), start_ns, excluded.start_ns),
    end_ns = coalesce(max(end_ns, excluded.end_ns), end_ns, excluded.end_ns),
{_take_if(_FIRST_WINS, ("first_task_id", "first_input", "first_start_ns"))},
{_take_if(_LAST_WINS, ("last_task_id", "last_input", "last_output", "last_status",
                       "last_flag", "last_start_ns"))},
    success_count = success_count + excluded.success_count,
    failure_count = failure_count + excluded.failure_count,
    error_count = error_count + excluded.error_count
"""
_MERGE_SESSION = _BulkInsert(_MERGE_SESSION_HEAD, 17, _MERGE_SESSION_TAIL)
_MERGE_USER_HEAD = """
INSERT INTO users (user_id, task_count, session_count, first_seen_ns, last_seen_ns,
    success_count, failure_count, error_count)"""
_MERGE_USER_TAIL = """
ON CONFLICT(user_id) DO UPDATE SET
    task_count = task_count + excluded.task_count,
    session_count = session_count + excluded.session_count,
    first_seen_ns = coalesce(min(first_seen_ns, excluded.first_seen_ns),
                             first_seen_ns, excluded.first_seen_ns),
    last_seen_ns = coalesce(max(last_seen_ns, excluded.last_seen_ns),
                            last_seen_ns, excluded.last_seen_ns),
    success_count = success_count + excluded.success_count,
    failure_count = failure_count + excluded.failure_count,
    error_count = error_count + excluded.error_count
"""
_MERGE_USER = _BulkInsert(_MERGE_USER_HEAD, 8, _MERGE_USER_TAIL)
_FLAG_DELTA_SESSION = (
    "UPDATE sessions SET success_count = success_count + ?, failure_count = failure_count + ?, "
    "last_flag = CASE WHEN last_task_id = ? THEN ? ELSE last_flag END WHERE session_id = ?"
)
_FLAG_DELTA_USER = (
    "UPDATE users SET success_count = success_count + ?, failure_count = failure_count + ? "
    "WHERE user_id = ?"
)
CHECKPOINT_WAL_BYTES = 32 * 1024 * 1024
"""The background checkpointer copies the WAL into the database once it is this large."""
MAX_WAL_BYTES = 8 * CHECKPOINT_WAL_BYTES
"""Past this size the writer checkpoints the WAL to its end (RESTART) between two
transactions, so that the WAL starts over instead of growing without bound."""

_ADD_COUNTERS = _BulkInsert(
    "INSERT INTO counters (name, value)",
    2,
    "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
)

_Feedback = tuple[str, int, str | None, str]
"""(flag, time_ns, notes, source) of a task's latest feedback."""
_NO_FEEDBACK: tuple[None, None, None, None] = (None, None, None, None)


def _in_json(column: str) -> str:
    """``<column> IN <the strings of a JSON array>``, for any number of ids in one
    statement (one parameter: ``_json_ids``). Fewer statements mean fewer GIL hand-offs
    for the writer (each costs up to the switch interval when other threads are busy)."""
    return f"{column} IN (SELECT value FROM json_each(?))"


_json_ids = json.JSONEncoder(separators=(",", ":")).encode


class SQLiteStore:
    """The embedded store. ``write``/``write_many``/``write_extracted`` from one thread
    only (the writer); ``reader``/``counters`` from any thread.

    Args:
        path: the SQLite file, created if missing.
        synchronous: ``FULL`` (default: durable across power loss) or ``NORMAL``
            (durable across a killed process only; faster).
        background_checkpoint: copy the WAL into the database from a background thread
            (its own connection; SQLite runs it without the GIL) instead of inside the
            writer's commits.
        checkpoint_wal_bytes: WAL size from which the background checkpointer runs.
        max_wal_bytes: WAL size from which the writer restarts the WAL itself.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "FULL",
        background_checkpoint: bool = True,
        checkpoint_wal_bytes: int = CHECKPOINT_WAL_BYTES,
        max_wal_bytes: int = MAX_WAL_BYTES,
    ) -> None:
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA"):
            raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, not {synchronous!r}")
        self.path = os.fspath(path)
        if self.path == ":memory:" or self.path.startswith("file:"):
            raise ValueError("SQLiteStore needs a file path (readers open their own connections)")
        self._synchronous = synchronous.upper()
        self._checkpoint_wal_bytes = checkpoint_wal_bytes
        self._max_wal_bytes = max_wal_bytes
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, cached_statements=256
        )
        conn = self._conn
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise RuntimeError(f"cannot put {self.path} in WAL mode (got {mode})")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA cache_size=-65536")
        conn.execute("PRAGMA temp_store=MEMORY")
        _add_last_flag(conn)
        conn.executescript(schema.DDL)
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(schema.SCHEMA_VERSION),),
        )
        self._write_lock = threading.Lock()
        self._origin_ids: dict[bytes, int] = {}
        self._readers: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._all_readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_lock = threading.Lock()  # one checkpoint at a time
        self._checkpointer: threading.Thread | None = None
        if background_checkpoint:
            conn.execute("PRAGMA wal_autocheckpoint=0")
            conn.execute(f"PRAGMA journal_size_limit={checkpoint_wal_bytes * 4}")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="phospho-store-checkpoint", daemon=True
            )
            self._checkpointer.start()

    # -- reading -----------------------------------------------------------------------

    @contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A read-only connection (``row_factory=sqlite3.Row``), not shared with any
        concurrent caller, for the duration of the ``with`` block. Any thread."""
        if self._closed:
            raise RuntimeError("store is closed")
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = self._new_reader()
        try:
            yield conn
        finally:
            if conn.in_transaction:
                conn.rollback()
            if self._closed:
                conn.close()
            else:
                self._readers.put(conn)

    def _new_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=10000")
        conn.execute("PRAGMA query_only=ON")
        conn.row_factory = sqlite3.Row
        with self._readers_lock:
            self._all_readers.append(conn)
        return conn

    def counters(self) -> dict[str, int]:
        """The ``counters`` table as a dict (e.g. ``spans_received``, ``spans_duplicate``,
        ``tasks_skipped_invalid``)."""
        with self.reader() as conn:
            return {name: value for name, value in conn.execute("SELECT name, value FROM counters")}

    def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpoint_wanted.set()
            self._checkpointer.join(30)
        with self._write_lock:
            self._conn.close()
        with self._readers_lock:
            for conn in self._all_readers:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:  # in use in another thread
                    pass

    # -- writing -----------------------------------------------------------------------

    def write(self, request: ExportTraceServiceRequest) -> WriteResult:
        """Store one export request in one transaction; durable when it returns."""
        return self.write_extracted([extract(request)])[0]

    def write_many(self, requests: Sequence[ExportTraceServiceRequest]) -> list[WriteResult]:
        """Store several export requests in one transaction (group commit)."""
        return self.write_extracted([extract(request) for request in requests])

    def write_extracted(self, extractions: Sequence[Extraction]) -> list[WriteResult]:
        """Store already extracted requests (``aggregator.extract``) in one transaction;
        durable when it returns. All or nothing: on an error nothing is written and the
        error is raised."""
        with self._write_lock:
            if self._closed:
                raise RuntimeError("store is closed")
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                counters: dict[str, int] = {}
                results = [self._write_one(conn, x, counters) for x in extractions]
                _ADD_COUNTERS.run(conn, [(k, v) for k, v in counters.items() if v])
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._origin_ids.clear()
                raise
            if self._checkpointer is not None:
                self._checkpoint_wanted.set()
                self._bound_wal(conn)
        return results

    def _bound_wal(self, conn: sqlite3.Connection) -> None:
        """Under sustained writes a passive checkpoint never reaches the end of the WAL,
        so the WAL never starts over. Past ``MAX_WAL_BYTES`` the writer, between two
        transactions, checkpoints it to its end (RESTART; most pages were already copied
        by the background checkpointer), so that the next transaction starts it over."""
        try:
            size = os.path.getsize(self.path + "-wal")
        except OSError:
            return
        if size <= self._max_wal_bytes:
            return
        with self._checkpoint_lock:
            busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
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

    def _origin_id(self, conn: sqlite3.Connection, origin: Origin) -> int:
        origin_id = self._origin_ids.get(origin.hash)
        if origin_id is not None:
            return origin_id
        conn.execute(
            "INSERT OR IGNORE INTO origins (hash, service_name, resource, resource_schema_url,"
            " scope, scope_schema_url) VALUES (?,?,?,?,?,?)",
            origin,
        )
        origin_id = conn.execute(
            "SELECT id FROM origins WHERE hash = ?", (origin.hash,)
        ).fetchone()[0]
        if len(self._origin_ids) > 10_000:
            self._origin_ids.clear()
        self._origin_ids[origin.hash] = origin_id
        return origin_id

    def _insert_spans(
        self, conn: sqlite3.Connection, x: Extraction
    ) -> tuple[int, set[tuple[bytes, bytes]] | None]:
        """Insert the spans; returns (new span count, keys of the new spans, or None when
        every span was new)."""
        rows: list[tuple[Any, ...]] = []
        for origin, group in x.groups:
            origin_id = (self._origin_id(conn, origin),)
            rows.extend(origin_id + row for row in group)
        if not rows:
            return 0, None
        # ``spans`` is a rowid table that only grows: the rows this insert adds are
        # exactly those after the largest rowid before it (no savepoint to roll back:
        # one would copy every index page it touches into a sub-journal).
        before = conn.execute("SELECT max(rowid) FROM spans").fetchone()[0] or 0
        inserted = _INSERT_SPAN.run(conn, rows)
        if inserted == len(rows):
            return inserted, None
        # Some spans were already there (a retry), or repeated within the request.
        new_keys: set[tuple[bytes, bytes]] = set(
            conn.execute(
                "SELECT trace_id, span_id FROM spans WHERE rowid > ?", (before,)
            ).fetchall()
        )
        if len(new_keys) != inserted:
            raise RuntimeError("spans: new rows are not the last rowids; nothing written")
        return inserted, new_keys

    def _write_one(
        self, conn: sqlite3.Connection, x: Extraction, counters: dict[str, int]
    ) -> WriteResult:
        for name, value in x.counters.items():
            counters[name] = counters.get(name, 0) + value
        stored, new_keys = self._insert_spans(conn, x)
        valid = x.span_count - x.rejected_spans
        duplicates = valid - stored
        tasks = x.tasks
        feedback = x.feedback
        if new_keys is not None:
            tasks = _only_new(tasks, new_keys)
            feedback = _only_new(feedback, new_keys)
        if feedback:
            _INSERT_FEEDBACK.run(conn, feedback)
        updates = _Updates()
        inserted_ids = self._apply_tasks(
            conn, tasks, updates, counters, x.rollup if new_keys is None else None
        )
        if feedback:
            self._apply_feedback(
                conn, {f.task_id for f in feedback} - inserted_ids, updates
            )
        self._recompute(conn, updates)
        skipped = x.counters.get("tasks_skipped_invalid", 0) + x.counters.get(
            "feedback_skipped_invalid", 0
        )
        counters["requests"] = counters.get("requests", 0) + 1
        for name, value in (
            ("spans_received", x.span_count),
            ("spans_stored", stored),
            ("spans_duplicate", duplicates),
            ("spans_rejected", x.rejected_spans),
            ("tasks_new", len(inserted_ids)),
            ("tasks_updated", updates.replaced),
            ("feedback_stored", len(feedback)),
        ):
            counters[name] = counters.get(name, 0) + value
        message = ""
        if x.problems:
            message = "; ".join(x.problems)
            more = x.rejected_spans + skipped - len(x.problems)
            if more > 0:
                message += f"; and {more} more"
        return WriteResult(
            spans_received=x.span_count,
            spans_stored=stored,
            spans_duplicate=duplicates,
            rejected_spans=x.rejected_spans,
            tasks_new=len(inserted_ids),
            tasks_updated=updates.replaced,
            feedback_new=len(feedback),
            skipped_invalid=skipped,
            error_message=message,
        )

    # -- tasks -------------------------------------------------------------------------

    def _apply_tasks(
        self,
        conn: sqlite3.Connection,
        tasks: list[TaskRecord],
        updates: _Updates,
        counters: dict[str, int],
        precomputed: Rollup | None = None,
    ) -> set[str]:
        """Insert new task ids, replace older versions; returns the inserted task ids.
        ``precomputed`` is the rollup of ``tasks`` if all are new and have no feedback."""
        if not tasks:
            return set()
        latest: dict[str, TaskRecord] = {}
        superseded = 0
        for task in tasks:
            seen = latest.get(task.task_id)
            if seen is None:
                latest[task.task_id] = task
            else:
                superseded += 1
                if (task.end_ns, task.span_id) > (seen.end_ns, seen.span_id):
                    latest[task.task_id] = task
        existing: dict[str, tuple[bytes, int, str | None, str | None]] = {}
        for task_id, span_id, end_ns, session_id, user_id in conn.execute(
            "SELECT task_id, span_id, end_ns, session_id, user_id FROM tasks "
            f"WHERE {_in_json('task_id')}",
            (_json_ids(list(latest)),),
        ):
            existing[task_id] = (span_id, end_ns, session_id, user_id)
        new_tasks: list[TaskRecord] = []
        for task_id, task in latest.items():
            old = existing.get(task_id)
            if old is None:
                new_tasks.append(task)
                continue
            old_span, old_end, old_session, old_user = old
            if (task.end_ns, task.span_id) <= (old_end, old_span):
                superseded += 1
                continue
            superseded += 1
            updates.replaced += 1
            conn.execute(_REPLACE_TASK, (*task[1:], task_id))
            updates.sessions.update(s for s in (old_session, task.session_id) if s)
            updates.users.update(u for u in (old_user, task.user_id) if u)
        if superseded:
            counters["tasks_superseded"] = counters.get("tasks_superseded", 0) + superseded
        if not new_tasks:
            return set()
        flags = self._latest_feedback(conn, [t.task_id for t in new_tasks])
        _INSERT_TASK.run(conn, _task_rows(new_tasks, flags))
        if precomputed is None or flags or len(new_tasks) != len(tasks):
            precomputed = rollup(new_tasks, flags)
        self._merge_rollups(conn, precomputed)
        return {t.task_id for t in new_tasks}

    def _latest_feedback(
        self, conn: sqlite3.Connection, task_ids: Sequence[str]
    ) -> dict[str, _Feedback]:
        """The latest feedback of each of these tasks that has any."""
        latest: dict[str, _Feedback] = {}
        for task_id, flag, time_ns, notes, source in conn.execute(
            "SELECT task_id, flag, time_ns, notes, source FROM feedback "
            f"WHERE {_in_json('task_id')} ORDER BY task_id, time_ns, trace_id, span_id",
            (_json_ids(task_ids),),
        ):
            latest[task_id] = (flag, time_ns, notes, source)
        return latest

    def _merge_rollups(self, conn: sqlite3.Connection, batch: Rollup) -> None:
        """Merge the rollup of brand-new tasks into ``sessions`` and ``users``, with one
        multi-row upsert per table. ``batch`` is not modified (a retried write merges it
        again)."""
        sessions, users = batch
        # sessions gained (or lost, when a session moves to a smaller user id) per user
        session_delta: dict[str, int] = {}
        if sessions:
            old_users: dict[str, str | None] = dict(
                conn.execute(
                    f"SELECT session_id, user_id FROM sessions WHERE {_in_json('session_id')}",
                    (_json_ids(list(sessions)),),
                ).fetchall()
            )
            for session_id, old_user in old_users.items():
                new_user = sessions[session_id][0]
                if old_user is not None and (new_user is None or old_user < new_user):
                    new_user = old_user
                if new_user != old_user:
                    if old_user is not None:
                        session_delta[old_user] = session_delta.get(old_user, 0) - 1
                    session_delta[new_user] = session_delta.get(new_user, 0) + 1
            for session_id, agg in sessions.items():
                user_id = agg[0]
                if user_id is not None and session_id not in old_users:
                    session_delta[user_id] = session_delta.get(user_id, 0) + 1
            _MERGE_SESSION.run(conn, [(k, *v) for k, v in sessions.items()])
        rows = [
            (k, count, n + session_delta.pop(k, 0), *rest)
            for k, (count, n, *rest) in users.items()
        ]
        rows.extend((k, 0, n, None, None, 0, 0, 0) for k, n in session_delta.items())
        if rows:
            _MERGE_USER.run(conn, rows)

    # -- feedback on known tasks ---------------------------------------------------------

    def _apply_feedback(
        self, conn: sqlite3.Connection, task_ids: Iterable[str], updates: _Updates
    ) -> None:
        """Re-derive the flag of existing tasks that got new feedback; move the counts."""
        ids = list(task_ids)
        if not ids:
            return
        current: dict[str, tuple[str | None, str | None, str | None]] = {}
        for task_id, flag, session_id, user_id in conn.execute(
            "SELECT task_id, flag, session_id, user_id FROM tasks "
            f"WHERE {_in_json('task_id')}",
            (_json_ids(ids),),
        ):
            current[task_id] = (flag, session_id, user_id)
        if not current:
            return  # feedback before its task: applied when the task arrives
        latest = self._latest_feedback(conn, list(current))
        for task_id, (old_flag, session_id, user_id) in current.items():
            flag, time_ns, notes, source = latest[task_id]
            conn.execute(
                "UPDATE tasks SET flag=?, flag_time_ns=?, notes=?, flag_source=? "
                "WHERE task_id=?",
                (flag, time_ns, notes, source, task_id),
            )
            if flag == old_flag:
                continue
            success = (flag == "success") - (old_flag == "success")
            failure = (flag == "failure") - (old_flag == "failure")
            if session_id is not None:
                conn.execute(
                    _FLAG_DELTA_SESSION, (success, failure, task_id, flag, session_id)
                )
            if user_id is not None:
                conn.execute(_FLAG_DELTA_USER, (success, failure, user_id))

    # -- recomputation after a task moved ------------------------------------------------

    def _recompute(self, conn: sqlite3.Connection, updates: _Updates) -> None:
        """Rebuild the rollups of sessions and users a replaced task left or joined."""
        users = set(updates.users)
        for session_id in sorted(updates.sessions):
            row = conn.execute(
                "SELECT user_id FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                users.add(row[0])
            count, start, end, success, failure, error, user_id = conn.execute(
                "SELECT count(*), min(start_ns), max(end_ns), "
                "coalesce(sum(flag = 'success'), 0), coalesce(sum(flag = 'failure'), 0), "
                "coalesce(sum(status = 'error'), 0), min(user_id) "
                "FROM tasks WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if not count:
                conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
                continue
            if user_id is not None:
                users.add(user_id)
            first = conn.execute(
                "SELECT task_id, start_ns, input FROM tasks WHERE session_id = ? "
                "ORDER BY start_ns, task_id LIMIT 1",
                (session_id,),
            ).fetchone()
            last = conn.execute(
                "SELECT task_id, start_ns, input, output, status, flag FROM tasks "
                "WHERE session_id = ? ORDER BY start_ns DESC, task_id DESC LIMIT 1",
                (session_id,),
            ).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO sessions (session_id, user_id, task_count, start_ns,"
                " end_ns, first_task_id, first_start_ns, first_input, last_task_id,"
                " last_start_ns, last_input, last_output, last_status, last_flag,"
                " success_count, failure_count, error_count)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (session_id, user_id, count, start, end, *first, *last, success, failure, error),
            )
        for user_id in sorted(users):
            count, first, last, success, failure, error = conn.execute(
                "SELECT count(*), min(start_ns), max(end_ns), "
                "coalesce(sum(flag = 'success'), 0), coalesce(sum(flag = 'failure'), 0), "
                "coalesce(sum(status = 'error'), 0) FROM tasks WHERE user_id = ?",
                (user_id,),
            ).fetchone()
            sessions = conn.execute(
                "SELECT count(*) FROM sessions WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            if not count and not sessions:
                conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
                continue
            conn.execute(
                "INSERT OR REPLACE INTO users (user_id, task_count, session_count,"
                " first_seen_ns, last_seen_ns, success_count, failure_count, error_count)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (user_id, count, sessions, first, last, success, failure, error),
            )


def _add_last_flag(conn: sqlite3.Connection) -> None:
    """Give a file made before ``sessions.last_flag`` that column, filled from ``tasks``
    (before the DDL: its ``sessions_by_ending`` index needs the column)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
    if not columns or "last_flag" in columns:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        if "last_flag" not in columns:  # not added meanwhile by another process
            conn.execute("ALTER TABLE sessions ADD COLUMN last_flag TEXT")
            conn.execute(
                "UPDATE sessions SET last_flag ="
                " (SELECT flag FROM tasks WHERE task_id = sessions.last_task_id)"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    logger.info("sessions.last_flag added and filled from tasks")


_R = TypeVar("_R", TaskRecord, FeedbackRecord)


def _only_new(records: list[_R], new_keys: set[tuple[bytes, bytes]]) -> list[_R]:
    """The records of newly inserted spans, each span once (a request may repeat one)."""
    left = set(new_keys)
    out = []
    for record in records:
        key = (record.trace_id, record.span_id)
        if key in left:
            left.discard(key)
            out.append(record)
    return out


def _task_rows(
    tasks: Iterable[TaskRecord], flags: dict[str, _Feedback]
) -> list[tuple[Any, ...]]:
    """``tasks`` rows: the records with their latest feedback (or none) appended."""
    if flags:
        return [task + flags.get(task[0], _NO_FEEDBACK) for task in tasks]
    return [task + _NO_FEEDBACK for task in tasks]


class _Updates:
    """Sessions and users to rebuild at the end of a write, and how many tasks moved."""

    __slots__ = ("replaced", "sessions", "users")

    def __init__(self) -> None:
        self.replaced = 0
        self.sessions: set[str] = set()
        self.users: set[str] = set()

