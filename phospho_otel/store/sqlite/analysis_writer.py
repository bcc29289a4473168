"""The SQLite backend's write path for the analyzer's results (``write_analysis``): the
results and the work they complete in one transaction; the per-user, per-day and
per-position counts moved by the difference between each task's old and new analysis
(``store/sqlite/analysis.py`` says what each table holds); each analysis's usage in its
row's ``USAGE_COLUMNS``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from phospho_otel.store.api import AnalysisUpdate
from phospho_otel.store.sqlite.analysis import (
    MAX_POSITION,
    NS_PER_DAY,
    REPHRASE_SOURCE,
    SESSION_COLUMNS,
    TASK_COLUMNS,
    USAGE_COLUMNS,
    dumps,
    ids_json,
    usage_row,
)

__all__ = ["write_analysis"]


def _add(table: str, key: str, columns: Sequence[str]) -> str:
    sets = ", ".join(f"{c} = {c} + excluded.{c}" for c in columns)
    return (f"INSERT INTO {table} ({key}, {', '.join(columns)})"
            f" VALUES ({', '.join('?' * (len(key.split(',')) + len(columns)))})"
            f" ON CONFLICT({key}) DO UPDATE SET {sets}")


_ADD_USER = _add("user_analysis", "user_id", ("success_count", "failure_count",
                                               "rephrase_count"))
_ADD_USER_EVENT = _add("user_events", "user_id, name", ("count",))
_ADD_USER_DAY = _add("user_days", "user_id, day", ("tasks",))
_ADD_POSITION = _add("position_stats", "position", ("success", "failure", "unknown"))
_PUT_TASK = (f"INSERT OR REPLACE INTO task_analysis ({TASK_COLUMNS})"
             f" VALUES ({', '.join('?' * len(TASK_COLUMNS.split(',')))})")
_PUT_SESSION = (f"INSERT INTO session_analysis ({SESSION_COLUMNS}, last_activity_ns)"
                f" VALUES ({', '.join('?' * (len(SESSION_COLUMNS.split(',')) + 1))})"
                " ON CONFLICT(session_id) DO UPDATE SET "
                + ", ".join(f"{c.strip()} = excluded.{c.strip()}"
                            for c in (*SESSION_COLUMNS.split(",")[1:], "last_activity_ns")))
_USER_SETS = ", ".join(f"{c} = excluded.{c}"
                       for c in ("classes", "analyzed_ns", *USAGE_COLUMNS.split(", ")))
_PUT_USER = (f"INSERT INTO user_analysis (user_id, classes, analyzed_ns, {USAGE_COLUMNS})"
             f" VALUES (?, ?, ?, {', '.join('?' * len(USAGE_COLUMNS.split(', ')))})"
             f" ON CONFLICT(user_id) DO UPDATE SET {_USER_SETS}")


class _Deltas:
    """The counts a batch of task analyses moves, summed per key (one statement per
    table at the end, not one per task)."""

    __slots__ = ("days", "events", "positions", "users")

    def __init__(self) -> None:
        self.users: dict[str, list[int]] = {}      # user -> [success, failure, rephrase]
        self.days: dict[tuple[str, int], int] = {}  # (user, day) -> tasks
        self.events: dict[tuple[str, str], int] = {}  # (user, event) -> tasks
        self.positions: dict[int, list[int]] = {}  # position -> [success, failure, unknown]

    def add(self, user_id: str | None, start_ns: int, position: int | None, label: str,
            source: str, events: Iterable[str], sign: int) -> None:
        """Count one task analysis in (``sign`` 1) or out (-1)."""
        if user_id is not None:
            u = self.users.setdefault(user_id, [0, 0, 0])
            u[0] += sign * (label == "success")
            u[1] += sign * (label == "failure")
            u[2] += sign * (source == REPHRASE_SOURCE)
            day = (user_id, start_ns // NS_PER_DAY)
            self.days[day] = self.days.get(day, 0) + sign
            for name in events:
                key = (user_id, name)
                self.events[key] = self.events.get(key, 0) + sign
        if position is not None:
            p = self.positions.setdefault(min(position, MAX_POSITION), [0, 0, 0])
            p[0 if label == "success" else 1 if label == "failure" else 2] += sign

    def write(self, conn: sqlite3.Connection) -> None:
        conn.executemany(_ADD_USER, [(k, *v) for k, v in self.users.items() if any(v)])
        conn.executemany(_ADD_USER_DAY, [(*k, v) for k, v in self.days.items() if v])
        conn.executemany(_ADD_USER_EVENT, [(*k, v) for k, v in self.events.items() if v])
        conn.executemany(_ADD_POSITION, [(k, *v) for k, v in self.positions.items() if any(v)])


def write_analysis(conn: sqlite3.Connection, update: AnalysisUpdate, now_ns: int) -> None:
    """Write ``update`` in one transaction on the writer connection (autocommit mode);
    all or nothing."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.execute("BEGIN IMMEDIATE")
    try:
        _write(conn, update, now_ns)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise


def _write(conn: sqlite3.Connection, update: AnalysisUpdate, now_ns: int) -> None:
    if update.tasks:
        deltas = _Deltas()
        gone: list[tuple[str, int, str]] = []
        for task_id, user_id, start_ns, position, label, source, events in conn.execute(
                "SELECT task_id, user_id, start_ns, position, eval_label, eval_source, events"
                " FROM task_analysis WHERE task_id IN (SELECT value FROM json_each(?))",
                (ids_json(t.task_id for t in update.tasks),)):
            names = {e[0] for e in json.loads(events)}
            deltas.add(user_id, start_ns, position, label, source, names, -1)
            gone += [(name, start_ns, task_id) for name in names]
        rows = []
        events_rows = []
        for t in update.tasks:
            e, mood = t.evaluation, t.sentiment
            names = {ev.name for ev in t.events}
            deltas.add(t.user_id, t.start_ns, t.position, e.label, e.source, names, 1)
            rows.append((
                t.task_id, t.session_id, t.user_id, t.start_ns, t.position, e.label, e.score,
                e.source, e.reason, dumps([list(ev) for ev in t.events]),
                None if mood is None else mood.score, None if mood is None else mood.label,
                t.language, t.analyzed_ns, int(t.judge_pending), *usage_row(t.usage)))
            events_rows += [(name, t.start_ns, t.task_id) for name in names]
        conn.executemany("DELETE FROM task_events WHERE name = ? AND start_ns = ? AND task_id = ?",
                         gone)
        conn.executemany(_PUT_TASK, rows)
        conn.executemany("INSERT OR IGNORE INTO task_events (name, start_ns, task_id)"
                         " VALUES (?,?,?)", events_rows)
        deltas.write(conn)
    for s in update.sessions:
        ev = s.evaluation
        # a session the writer has removed since (its last task moved away) keeps no
        # analysis: session_analysis only holds sessions that exist
        last_activity = conn.execute(
            "SELECT max(end_ns, coalesce((SELECT max(time_ns) FROM session_events"
            " WHERE session_id = ?1), 0)) FROM sessions WHERE session_id = ?1",
            (s.session_id,)).fetchone()
        if last_activity is None:
            continue
        conn.execute(_PUT_SESSION, (
            s.session_id, s.user_id, s.state, s.ended_ns, s.end_reason,
            dumps(list(s.end_evidence)),
            s.active_duration_ns, None if ev is None else ev.label,
            None if ev is None else ev.score, None if ev is None else ev.source,
            None if ev is None else ev.reason,
            dumps(dict(s.event_counts)), s.analyzed_ns, *usage_row(s.usage),
            last_activity[0]))
    if update.users is not None:
        conn.execute("DELETE FROM user_classes")
        conn.execute("UPDATE user_analysis SET classes = '[]' WHERE classes != '[]'")
        for u in update.users:
            classes = dumps([[c.label, list(c.reasons)] for c in u.classes])
            conn.execute(_PUT_USER, (u.user_id, classes, now_ns, *usage_row(u.usage)))
            if u.classes:
                conn.executemany("INSERT OR IGNORE INTO user_classes (label, user_id)"
                                 " VALUES (?, ?)", [(c.label, u.user_id) for c in u.classes])
    if update.token is not None:
        tasks_after, queue_upto = update.token
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('analysis_tasks_after', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = max(CAST(value AS INTEGER),"
            " CAST(excluded.value AS INTEGER))", (str(tasks_after),))
        if queue_upto:
            conn.execute("DELETE FROM analysis_queue WHERE seq <= ?", (queue_upto,))
