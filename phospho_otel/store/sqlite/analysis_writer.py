"""The SQLite backend's write path for the analyzer's results (``write_analysis``): the
results and the work they complete in one transaction; the per-user, per-day and
per-position counts moved by the difference between each task's old and new analysis
(``store/sqlite/analysis.py`` says what each table holds)."""

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
    dumps,
    ids_json,
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
             f" VALUES ({', '.join('?' * 15)})")
_PUT_SESSION = (f"INSERT INTO session_analysis ({SESSION_COLUMNS}, last_activity_ns)"
                f" VALUES ({', '.join('?' * 14)}) ON CONFLICT(session_id) DO UPDATE SET "
                + ", ".join(f"{c.strip()} = excluded.{c.strip()}"
                            for c in (*SESSION_COLUMNS.split(",")[1:], "last_activity_ns")))


class _Facts:
    """What one task analysis adds to the per-user, per-day and per-position counts."""

    __slots__ = ("day", "events", "label", "position", "rephrase", "start_ns", "user_id")

    def __init__(self, user_id: str | None, start_ns: int, position: int | None,
                 label: str, source: str, events: Iterable[str]) -> None:
        self.user_id = user_id
        self.start_ns = start_ns
        self.day = start_ns // NS_PER_DAY
        self.position = position
        self.label = label
        self.rephrase = source == REPHRASE_SOURCE
        self.events = set(events)


def _apply(conn: sqlite3.Connection, facts: _Facts, sign: int) -> None:
    if facts.user_id is not None:
        conn.execute(_ADD_USER, (facts.user_id, sign * (facts.label == "success"),
                                 sign * (facts.label == "failure"), sign * facts.rephrase))
        conn.execute(_ADD_USER_DAY, (facts.user_id, facts.day, sign))
        for name in facts.events:
            conn.execute(_ADD_USER_EVENT, (facts.user_id, name, sign))
    if facts.position is not None:
        label = facts.label if facts.label in ("success", "failure") else "unknown"
        conn.execute(_ADD_POSITION, (min(facts.position, MAX_POSITION),
                                     sign * (label == "success"), sign * (label == "failure"),
                                     sign * (label == "unknown")))


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
        ids = [t.task_id for t in update.tasks]
        old = {task_id: _Facts(user_id, start_ns, position, label, source,
                               (e[0] for e in json.loads(events)))
               for task_id, user_id, start_ns, position, label, source, events in conn.execute(
                   "SELECT task_id, user_id, start_ns, position, eval_label, eval_source, events"
                   " FROM task_analysis WHERE task_id IN (SELECT value FROM json_each(?))",
                   (ids_json(ids),))}
        conn.executemany("DELETE FROM task_events WHERE name = ? AND start_ns = ? AND task_id = ?",
                         [(name, f.start_ns, task_id) for task_id, f in old.items()
                          for name in f.events])
        for t in update.tasks:
            before = old.get(t.task_id)
            if before is not None:
                _apply(conn, before, -1)
            _apply(conn, _Facts(t.user_id, t.start_ns, t.position, t.evaluation.label,
                                t.evaluation.source, (e.name for e in t.events)), 1)
            e = t.evaluation
            conn.execute(_PUT_TASK, (
                t.task_id, t.session_id, t.user_id, t.start_ns, t.position, e.label, e.score,
                e.source, e.reason, dumps([list(ev) for ev in t.events]),
                None if t.sentiment is None else t.sentiment.score,
                None if t.sentiment is None else t.sentiment.label,
                t.language, t.analyzed_ns, int(t.judge_pending)))
            names = {ev.name for ev in t.events}
            if names:
                conn.executemany(
                    "INSERT OR IGNORE INTO task_events (name, start_ns, task_id) VALUES (?,?,?)",
                    [(name, t.start_ns, t.task_id) for name in sorted(names)])
    for s in update.sessions:
        ev = s.evaluation
        last_activity = conn.execute(
            "SELECT max(coalesce((SELECT end_ns FROM sessions WHERE session_id = ?1), 0),"
            " coalesce((SELECT max(time_ns) FROM session_events WHERE session_id = ?1), 0))",
            (s.session_id,)).fetchone()[0]
        conn.execute(_PUT_SESSION, (
            s.session_id, s.user_id, s.state, s.ended_ns, s.end_reason,
            dumps(list(s.end_evidence)),
            s.active_duration_ns, None if ev is None else ev.label,
            None if ev is None else ev.score, None if ev is None else ev.source,
            None if ev is None else ev.reason,
            dumps(dict(s.event_counts)), s.analyzed_ns, last_activity))
    if update.users is not None:
        conn.execute("DELETE FROM user_classes")
        conn.execute("UPDATE user_analysis SET classes = '[]' WHERE classes != '[]'")
        for u in update.users:
            classes = dumps([[c.label, list(c.reasons)] for c in u.classes])
            conn.execute(
                "INSERT INTO user_analysis (user_id, classes, analyzed_ns) VALUES (?, ?, ?)"
                " ON CONFLICT(user_id) DO UPDATE SET classes = excluded.classes,"
                " analyzed_ns = excluded.analyzed_ns", (u.user_id, classes, now_ns))
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
