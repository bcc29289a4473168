"""The SQLite backend's write path: one transaction per batch of extracted requests.

How a request is written (``SQLiteWriter.write``), keeping the contracts of
``store.api`` and the merge rules of ``model.rollup``:

1. Every span goes to ``spans`` with ``INSERT OR IGNORE``: a span seen before (same
   ``(trace_id, span_id)``) is a duplicate and goes no further.
2. Feedback spans among the new spans go to ``feedback``.
3. Task spans among the new spans: several spans may carry the same task id (a task
   logged twice). The task row holds **the version with the latest end time** (ties: the
   larger span id), whatever the arrival order; a task id counts once. A new task id is
   inserted and its rollup merged into its session and user (one multi-row upsert per
   table, generated from the rules). A newer version of a known task replaces the row's
   span-derived columns (its flag stays) and the rollups of the sessions and users it
   left or joined are recomputed from ``tasks`` (SQL generated from the same rules); an
   older version changes nothing (counter ``tasks_superseded``).
4. A task's flag is its latest feedback by ``(time, trace_id, span_id)``, whether the
   feedback came before the task (it is applied when the task arrives) or after. Flag
   changes move the session's and user's success/failure counts, and the session's
   ``last_flag`` when the task is its last.
5. ``users.session_count`` moves by ``model.rollup.owner_deltas`` when sessions are new
   or change owner.
6. Counters are added to the ``counters`` table.
7. Span annotations go to ``span_annotations`` with ``INSERT OR IGNORE``. A derived
   extraction (``Extraction.derived``) has no spans: its tasks and feedback are all
   taken, and its tasks replace stored versions of an equal ``(end_ns, span_id)``.

Speed: the one writer thread is the bottleneck of ingest, so it does as little as it
can, in as few statements as it can (each statement hands the GIL over and must win it
back, up to the switch interval when other threads are busy):

* rows go in with multi-row ``INSERT``s (``_BulkInsert``); id lookups take all ids in
  one statement (``json_each``) instead of chunks of ``IN (?, ...)``;
* the rollup of a request (``Extraction.rollup``) is computed by the aggregator in the
  receiving thread; the writer merges it as is (it recomputes it only when some task was
  not new or had feedback);
* duplicates are found without a savepoint: new ``spans`` rows are those past the
  largest rowid before the insert (a savepoint would copy every index page the insert
  touches into a sub-journal).

What remains is mostly SQLite's own work: about 14 B-tree updates per task span, and at
commit one WAL frame per page dirtied.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

from phospho_otel.errors import StoreError
from phospho_otel.model.records import (
    Extraction,
    FeedbackRecord,
    Origin,
    SessionEventRecord,
    SpanAnnotationRecord,
    SpanRecord,
    TaskFeedback,
    TaskRecord,
)
from phospho_otel.model.rollup import (
    COUNT,
    ERROR,
    FAILURE,
    NONE,
    SESSION_RULES,
    SUCCESS,
    USER_RULES,
    Merge,
    Rollup,
    Rule,
    owner_deltas,
    rollup,
)
from phospho_otel.store.api import WriteResult
from phospho_otel.store.sqlite.schema import FEEDBACK_COLUMNS
from phospho_otel.store.writing import only_new, write_result

__all__ = ["SQLiteWriter"]

_BULK_MAX_ROWS = 8192
"""Rows per multi-row statement at most: a collector's whole batch (rotel sends 8192
spans) in one statement per table. Fewer when the columns would pass SQLite's limit on
parameters (Python's bundled SQLite allows 250000; 1638 rows of 20 columns under
SQLite's default of 32766)."""


def _variable_limit(conn: sqlite3.Connection) -> int:
    """The most parameters one statement may take (``getlimit`` is Python 3.11+; before,
    SQLite's default: 32766 since SQLite 3.32, 999 before)."""
    getlimit = getattr(conn, "getlimit", None)
    if getlimit is not None:
        return int(getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[attr-defined, unused-ignore]
    return 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


class _BulkInsert:
    """``INSERT ... VALUES (...), (...), ... [tail]`` over many rows per statement.

    One statement per up to ``_BULK_MAX_ROWS`` rows instead of one per row
    (``executemany``): the sqlite3 module releases the GIL around each statement step and
    the writer must win it back, which, with other threads busy in Python (receivers,
    extraction), costs up to the interpreter's switch interval per step. Per batch this
    is a handful of waits, not one per row.
    """

    def __init__(self, table: str, columns: Sequence[str], tail: str = "", *,
                 verb: str = "INSERT") -> None:
        self.head = f"{verb} INTO {table} ({', '.join(columns)})"
        self.columns = len(columns)
        self.tail = tail
        self.row = "(" + ",".join("?" * self.columns) + ")"
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
        limit = _variable_limit(conn)
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


# ------------------------------------------------------------- SQL from the merge rules


def _upsert_set(rules: Sequence[Rule]) -> str:
    """The ``DO UPDATE SET`` clause that merges ``excluded`` into a stored rollup row."""
    first = [r.column for r in rules if r.merge is Merge.FIRST]
    last = [r.column for r in rules if r.merge is Merge.LAST]

    def key(group: list[str], op: str) -> str:
        by_source = {r.source: r.column for r in rules if r.column in group}
        start, task_id = by_source["start_ns"], by_source["task_id"]
        return (f"{start} IS NULL OR (excluded.{start}, excluded.{task_id})"
                f" {op} ({start}, {task_id})")

    clauses = []
    for r in rules:
        c = r.column
        if r.merge is Merge.SUM:
            clauses.append(f"{c} = {c} + excluded.{c}")
        elif r.merge is Merge.MIN:
            clauses.append(f"{c} = coalesce(min({c}, excluded.{c}), {c}, excluded.{c})")
        elif r.merge is Merge.MAX:
            clauses.append(f"{c} = coalesce(max({c}, excluded.{c}), {c}, excluded.{c})")
        else:
            wins = key(first, "<") if r.merge is Merge.FIRST else key(last, ">")
            clauses.append(f"{c} = CASE WHEN {wins} THEN excluded.{c} ELSE {c} END")
    return ",\n    ".join(clauses)


_SQL_SOURCE = {
    COUNT: "1",
    SUCCESS: "(flag = 'success')",
    FAILURE: "(flag = 'failure')",
    ERROR: "(status = 'error')",
}


def _recompute_sql(rules: Sequence[Rule], key: str) -> tuple[str, str | None, str | None]:
    """The queries that rebuild one rollup row from ``tasks WHERE <key> = ?``: the
    aggregates (SUM, MIN, MAX columns), the FIRST columns and the LAST columns, each
    selecting its columns in rule order (None when the group is empty)."""
    aggregates = []
    for r in rules:
        if r.merge is Merge.SUM:
            if r.source == NONE:
                aggregates.append("0")
            else:
                aggregates.append(f"coalesce(sum({_SQL_SOURCE.get(r.source, r.source)}), 0)")
        elif r.merge in (Merge.MIN, Merge.MAX):
            aggregates.append(f"{r.merge.value}({r.source})")
    first = [r.source for r in rules if r.merge is Merge.FIRST]
    last = [r.source for r in rules if r.merge is Merge.LAST]
    where = f"FROM tasks WHERE {key} = ?"
    return (
        f"SELECT count(*), {', '.join(aggregates)} {where}",
        f"SELECT {', '.join(first)} {where} ORDER BY start_ns, task_id LIMIT 1"
        if first else None,
        f"SELECT {', '.join(last)} {where} ORDER BY start_ns DESC, task_id DESC LIMIT 1"
        if last else None,
    )


def _assemble(rules: Sequence[Rule], aggregates: Sequence[Any], first: Sequence[Any] | None,
              last: Sequence[Any] | None) -> list[Any]:
    """One rollup row (rule order) from the three recompute queries' answers."""
    values = iter(aggregates)
    firsts = iter(first or ())
    lasts = iter(last or ())
    row = []
    for r in rules:
        if r.merge is Merge.FIRST:
            row.append(next(firsts))
        elif r.merge is Merge.LAST:
            row.append(next(lasts))
        else:
            row.append(next(values))
    return row


_SESSION_COLUMNS = tuple(r.column for r in SESSION_RULES)
_USER_COLUMNS = tuple(r.column for r in USER_RULES)

_INSERT_SPAN = _BulkInsert("spans", ("origin_id", *SpanRecord._fields), verb="INSERT OR IGNORE")
_INSERT_FEEDBACK = _BulkInsert("feedback", FeedbackRecord._fields, verb="INSERT OR IGNORE")
_INSERT_SESSION_EVENT = _BulkInsert("session_events", SessionEventRecord._fields,
                                    verb="INSERT OR IGNORE")
_INSERT_ANNOTATION = _BulkInsert("span_annotations", SpanAnnotationRecord._fields,
                                 verb="INSERT OR IGNORE")
_QUEUE = _BulkInsert("analysis_queue", ("kind", "key"))
_INSERT_TASK = _BulkInsert("tasks", (*TaskRecord._fields, *FEEDBACK_COLUMNS))
_REPLACE_TASK = (
    f"UPDATE tasks SET {', '.join(f'{c}=?' for c in TaskRecord._fields[1:])} WHERE task_id=?"
)
_MERGE_SESSION = _BulkInsert(
    "sessions", ("session_id", *_SESSION_COLUMNS),
    f"ON CONFLICT(session_id) DO UPDATE SET\n    {_upsert_set(SESSION_RULES)}",
)
_MERGE_USER = _BulkInsert(
    "users", ("user_id", *_USER_COLUMNS),
    f"ON CONFLICT(user_id) DO UPDATE SET\n    {_upsert_set(USER_RULES)}",
)
_PUT_SESSION = (f"INSERT OR REPLACE INTO sessions (session_id, {', '.join(_SESSION_COLUMNS)})"
                f" VALUES ({', '.join('?' * (len(_SESSION_COLUMNS) + 1))})")
_PUT_USER = (f"INSERT OR REPLACE INTO users (user_id, {', '.join(_USER_COLUMNS)})"
             f" VALUES ({', '.join('?' * (len(_USER_COLUMNS) + 1))})")
_RECOMPUTE_SESSION = _recompute_sql(SESSION_RULES, "session_id")
_RECOMPUTE_USER = _recompute_sql(USER_RULES, "user_id")
_SESSION_COUNT = USER_RULES.index(next(r for r in USER_RULES if r.column == "session_count"))
_FLAG_DELTA_SESSION = (
    "UPDATE sessions SET success_count = success_count + ?, failure_count = failure_count + ?, "
    "last_flag = CASE WHEN last_task_id = ? THEN ? ELSE last_flag END WHERE session_id = ?"
)
_FLAG_DELTA_USER = (
    "UPDATE users SET success_count = success_count + ?, failure_count = failure_count + ? "
    "WHERE user_id = ?"
)
_ADD_COUNTERS = _BulkInsert(
    "counters", ("name", "value"), "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value"
)

_NO_FEEDBACK: tuple[None, None, None, None] = (None, None, None, None)


def _in_json(column: str) -> str:
    """``<column> IN <the strings of a JSON array>``, for any number of ids in one
    statement (one parameter: ``_json_ids``). Fewer statements mean fewer GIL hand-offs
    for the writer (each costs up to the switch interval when other threads are busy)."""
    return f"{column} IN (SELECT value FROM json_each(?))"


_json_ids = json.JSONEncoder(separators=(",", ":")).encode


class _Updates:
    """Sessions and users to rebuild at the end of a write, and how many tasks moved."""

    __slots__ = ("changed", "replaced", "sessions", "users")

    def __init__(self) -> None:
        self.changed: list[tuple[str, str]] = []
        """Analysis queue entries: ("t", task id) of a changed task, ("s", session id)."""
        self.replaced = 0
        self.sessions: set[str] = set()
        self.users: set[str] = set()


class SQLiteWriter:
    """Writes batches on one connection (the store's writer connection, in autocommit
    mode). One thread at a time: the store holds its write lock around ``write``."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._origin_ids: dict[bytes, int] = {}

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        """Write the batch in one transaction; all or nothing (on an error it raises and
        nothing is kept). Durable at return per the connection's ``synchronous``."""
        conn = self.conn
        if conn.in_transaction:  # a rollback that failed before (SQLite may keep it open)
            conn.execute("ROLLBACK")
        conn.execute("BEGIN IMMEDIATE")
        try:
            counters: dict[str, int] = {}
            results = [self._write_one(x, counters) for x in batch]
            _ADD_COUNTERS.run(conn, [(k, v) for k, v in counters.items() if v])
            conn.execute("COMMIT")
        except BaseException:
            self._origin_ids.clear()
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the error being raised says more; the next write retries it
            raise
        return results

    def _origin_id(self, origin: Origin) -> int:
        origin_id = self._origin_ids.get(origin.hash)
        if origin_id is not None:
            return origin_id
        conn = self.conn
        conn.execute(
            f"INSERT OR IGNORE INTO origins ({', '.join(Origin._fields)}) VALUES (?,?,?,?,?,?)",
            origin,
        )
        origin_id = int(conn.execute(
            "SELECT id FROM origins WHERE hash = ?", (origin.hash,)
        ).fetchone()[0])
        if len(self._origin_ids) > 10_000:
            self._origin_ids.clear()
        self._origin_ids[origin.hash] = origin_id
        return origin_id

    def _insert_spans(self, x: Extraction) -> tuple[int, set[tuple[bytes, bytes]] | None]:
        """Insert the spans; returns (new span count, keys of the new spans, or None when
        every span was new)."""
        rows: list[tuple[Any, ...]] = []
        for origin, group in x.groups:
            origin_id = (self._origin_id(origin),)
            rows.extend(origin_id + row for row in group)
        if not rows:
            return 0, None
        conn = self.conn
        # ``spans`` is a rowid table that only grows: the rows this insert adds are
        # exactly those after the largest rowid before it (no savepoint to roll back:
        # one would copy every index page it touches into a sub-journal).
        before = conn.execute("SELECT max(rowid) FROM spans").fetchone()[0] or 0
        inserted = _INSERT_SPAN.run(conn, rows)
        if inserted == len(rows):
            return inserted, None
        # Some spans were already there (a retry), or repeated within the request.
        new_keys: set[tuple[bytes, bytes]] = set(
            conn.execute("SELECT trace_id, span_id FROM spans WHERE rowid > ?", (before,))
        )
        if len(new_keys) != inserted:
            raise StoreError("spans: new rows are not the last rowids; nothing written")
        return inserted, new_keys

    def _write_one(self, x: Extraction, counters: dict[str, int]) -> WriteResult:
        for name, value in x.counters.items():
            counters[name] = counters.get(name, 0) + value
        stored, new_keys = self._insert_spans(x)
        tasks = x.tasks
        feedback = x.feedback
        session_events = list(x.session_events)
        if new_keys is not None:
            tasks = only_new(tasks, new_keys)
            feedback = only_new(feedback, new_keys)
            session_events = only_new(session_events, new_keys)
        if feedback:
            _INSERT_FEEDBACK.run(self.conn, feedback)
        updates = _Updates()
        inserted_ids = self._apply_tasks(
            tasks, updates, counters, x.rollup if new_keys is None else None,
            revise=x.derived,
        )
        if feedback:
            self._apply_feedback({f.task_id for f in feedback} - inserted_ids, updates)
        if session_events:
            _INSERT_SESSION_EVENT.run(self.conn, session_events)
            updates.changed.extend(("s", e.session_id) for e in session_events)
        if x.annotations:
            _INSERT_ANNOTATION.run(self.conn, x.annotations)
        if updates.changed:  # for the analyzer (new tasks it finds by rowid)
            _QUEUE.run(self.conn, updates.changed)
        self._recompute(updates)
        return write_result(x, counters, stored=stored, tasks_new=len(inserted_ids),
                            tasks_updated=updates.replaced, feedback_new=len(feedback))

    # -- tasks -------------------------------------------------------------------------

    def _apply_tasks(self, tasks: list[TaskRecord], updates: _Updates,
                     counters: dict[str, int], precomputed: Rollup | None, *,
                     revise: bool = False) -> set[str]:
        """Insert new task ids, replace older versions (``revise``: and equal ones);
        returns the inserted task ids. ``precomputed`` is the rollup of ``tasks`` if all
        are new and have no feedback."""
        if not tasks:
            return set()
        conn = self.conn
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
            f"SELECT task_id, span_id, end_ns, session_id, user_id FROM tasks "
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
            superseded += 1
            if (task.end_ns, task.span_id) < (old_end, old_span) or (
                    not revise and (task.end_ns, task.span_id) == (old_end, old_span)):
                continue
            updates.replaced += 1
            updates.changed.append(("t", task_id))
            conn.execute(_REPLACE_TASK, (*task[1:], task_id))
            updates.sessions.update(s for s in (old_session, task.session_id) if s)
            updates.users.update(u for u in (old_user, task.user_id) if u)
        if superseded:
            counters["tasks_superseded"] = counters.get("tasks_superseded", 0) + superseded
        if not new_tasks:
            return set()
        feedback = self._latest_feedback([t.task_id for t in new_tasks])
        _INSERT_TASK.run(conn, [task + feedback.get(task.task_id, _NO_FEEDBACK)
                                for task in new_tasks])
        if precomputed is None or feedback or len(new_tasks) != len(tasks):
            precomputed = rollup(new_tasks, {k: v.flag for k, v in feedback.items()})
        self._merge_rollups(precomputed)
        return {t.task_id for t in new_tasks}

    def _latest_feedback(self, task_ids: Sequence[str]) -> dict[str, TaskFeedback]:
        """The latest feedback of each of these tasks that has any."""
        latest: dict[str, TaskFeedback] = {}
        for task_id, *feedback in self.conn.execute(
            "SELECT task_id, flag, time_ns, notes, source FROM feedback "
            f"WHERE {_in_json('task_id')} ORDER BY task_id, time_ns, trace_id, span_id",
            (_json_ids(task_ids),),
        ):
            latest[task_id] = TaskFeedback._make(feedback)
        return latest

    def _merge_rollups(self, batch: Rollup) -> None:
        """Merge the rollup of brand-new tasks into ``sessions`` and ``users``, with one
        multi-row upsert per table. ``batch`` is not modified (a retried write merges it
        again)."""
        conn = self.conn
        sessions, users = batch
        deltas: dict[str, int] = {}
        if sessions:
            # One row (a JSON array) rather than one per session: each row fetched hands
            # the GIL over and must win it back.
            stored_owners: dict[str, str | None] = dict(json.loads(conn.execute(
                "SELECT json_group_array(json_array(session_id, user_id)) FROM sessions"
                f" WHERE {_in_json('session_id')}",
                (_json_ids(list(sessions)),),
            ).fetchone()[0]))
            deltas = owner_deltas(stored_owners, sessions)
            # In key order: each upsert's primary-key seek lands next to the last one.
            _MERGE_SESSION.run(conn, [(k, *sessions[k]) for k in sorted(sessions)])
        rows = []
        for user_id, values in users.items():
            row = [user_id, *values]
            row[1 + _SESSION_COUNT] += deltas.pop(user_id, 0)
            rows.append(row)
        for user_id, delta in deltas.items():  # sessions moved to or from users with no task here
            row = [user_id, *(None if r.merge in (Merge.MIN, Merge.MAX) else 0
                              for r in USER_RULES)]
            row[1 + _SESSION_COUNT] = delta
            rows.append(row)
        if rows:
            rows.sort()  # in key order, as the sessions
            _MERGE_USER.run(conn, rows)

    # -- feedback on known tasks ---------------------------------------------------------

    def _apply_feedback(self, task_ids: Iterable[str], updates: _Updates) -> None:
        """Re-derive the flag of existing tasks that got new feedback; move the counts."""
        ids = list(task_ids)
        if not ids:
            return
        conn = self.conn
        current: dict[str, tuple[str | None, str | None, str | None]] = {}
        for task_id, flag, session_id, user_id in conn.execute(
            f"SELECT task_id, flag, session_id, user_id FROM tasks WHERE {_in_json('task_id')}",
            (_json_ids(ids),),
        ):
            current[task_id] = (flag, session_id, user_id)
        if not current:
            return  # feedback before its task: applied when the task arrives
        latest = self._latest_feedback(list(current))
        for task_id, (old_flag, session_id, user_id) in current.items():
            flag, time_ns, notes, source = latest[task_id]
            updates.changed.append(("t", task_id))
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
                conn.execute(_FLAG_DELTA_SESSION, (success, failure, task_id, flag, session_id))
            if user_id is not None:
                conn.execute(_FLAG_DELTA_USER, (success, failure, user_id))

    # -- recomputation after a task moved ------------------------------------------------

    def _rebuild(self, rules: Sequence[Rule], queries: tuple[str, str | None, str | None],
                 key: str) -> tuple[int, list[Any]]:
        """(task count, the rollup row rebuilt from ``tasks``) of one session or user."""
        conn = self.conn
        count, *aggregates = conn.execute(queries[0], (key,)).fetchone()
        if not count:
            return 0, []
        first = conn.execute(queries[1], (key,)).fetchone() if queries[1] else None
        last = conn.execute(queries[2], (key,)).fetchone() if queries[2] else None
        return count, _assemble(rules, aggregates, first, last)

    def _recompute(self, updates: _Updates) -> None:
        """Rebuild the rollups of sessions and users a replaced task left or joined."""
        conn = self.conn
        users = set(updates.users)
        for session_id in sorted(updates.sessions):
            row = conn.execute(
                "SELECT user_id FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is not None and row[0] is not None:
                users.add(row[0])
            count, values = self._rebuild(SESSION_RULES, _RECOMPUTE_SESSION, session_id)
            if not count:
                conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
                conn.execute("DELETE FROM session_analysis WHERE session_id = ?", (session_id,))
                continue
            if values[0] is not None:
                users.add(values[0])
            conn.execute(_PUT_SESSION, (session_id, *values))
        for user_id in sorted(users):
            count, values = self._rebuild(USER_RULES, _RECOMPUTE_USER, user_id)
            sessions = conn.execute(
                "SELECT count(*) FROM sessions WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            if not count and not sessions:
                conn.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
                continue
            if not count:
                values = [None if r.merge in (Merge.MIN, Merge.MAX) else 0 for r in USER_RULES]
            values[_SESSION_COUNT] = sessions
            conn.execute(_PUT_USER, (user_id, *values))




