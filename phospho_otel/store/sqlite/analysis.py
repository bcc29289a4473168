"""The SQLite backend's share of the insights: the analyzer's work queue and its results
(``store.api.AnalysisReader`` and ``write_analysis``).

Work: new tasks are found by ``tasks.rowid`` past ``meta.analysis_tasks_after`` (a rowid
table written by one writer grows in commit order, so nothing is skipped); the writer
queues the rest in ``analysis_queue`` in the same transaction as the change (a task
replaced or given feedback, a session end or session feedback). ``write_analysis`` moves
the mark and deletes the queue entries it completes in the same transaction as the
results, so after a crash the analyzer resumes exactly where its last commit left it:
nothing done twice, nothing skipped.

Results: ``task_analysis`` (one row per task; its events also in ``task_events`` for the
event filter), ``session_analysis``, and per user ``user_analysis`` / ``user_classes`` /
``user_events``; ``user_days`` (tasks per user per UTC day, for retention and the
user-class windows) and ``position_stats`` (labels by place in the session) are kept by
deltas from the old and new analysis of each task, so the figures over a million tasks
are read from a few thousand rows.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from phospho_otel.model.analysis import (
    DetectedEvent,
    Evaluation,
    Sentiment,
    SessionAnalysis,
    TaskAnalysis,
    UserAnalysis,
    UserClass,
)
from phospho_otel.model.records import SessionEventRecord
from phospho_otel.store.api import AnalysisUpdate, PendingAnalysis, SessionFilter, UserFacts
from phospho_otel.store.sqlite.views import session_where

__all__ = ["MAX_POSITION", "NS_PER_DAY", "SQLiteAnalysis", "write_analysis"]

NS_PER_DAY = 86_400 * 1_000_000_000
MAX_POSITION = 20
"""``position_stats`` counts every position from this one on together."""
_BAD_ENDINGS = ("abandoned_after_failure", "abandoned_after_error", "frustrated")
_REPHRASE_SOURCE = "heuristic:rephrase"

_TASK_COLUMNS = ("task_id, session_id, user_id, start_ns, position, eval_label, eval_score,"
                 " eval_source, eval_reason, events, sentiment_score, sentiment_label,"
                 " language, analyzed_ns, judge_pending")
_SESSION_COLUMNS = ("session_id, user_id, state, ended_ns, end_reason, end_evidence,"
                    " active_duration_ns, eval_label, eval_score, eval_source, eval_reason,"
                    " event_counts, analyzed_ns")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _ids(values: Iterable[str]) -> str:
    return _dumps(list(values))


def _task_analysis(row: Sequence[Any]) -> TaskAnalysis:
    (task_id, session_id, user_id, start_ns, position, label, score, source, reason, events,
     s_score, s_label, language, analyzed_ns, judge_pending) = row
    return TaskAnalysis(
        task_id, session_id, user_id, start_ns, position,
        Evaluation(label, score, source, reason),
        tuple(DetectedEvent(*e) for e in json.loads(events)),
        None if s_label is None else Sentiment(s_score, s_label),
        language, analyzed_ns, bool(judge_pending))


def _session_analysis(row: Sequence[Any]) -> SessionAnalysis:
    (session_id, user_id, state, ended_ns, end_reason, evidence, active_ns, label, score,
     source, reason, event_counts, analyzed_ns) = row
    return SessionAnalysis(
        session_id, user_id, state, ended_ns, end_reason, tuple(json.loads(evidence)),
        active_ns, None if label is None else Evaluation(label, score, source, reason),
        json.loads(event_counts), analyzed_ns)


class SQLiteAnalysis:
    """``store.api.AnalysisReader`` over ``self.conn`` (set by ``SQLiteReader``)."""

    conn: sqlite3.Connection

    def pending_analysis(self, limit: int) -> PendingAnalysis:
        conn = self.conn
        row = conn.execute("SELECT value FROM meta WHERE key = 'analysis_tasks_after'").fetchone()
        after = int(row[0]) if row else 0
        new = conn.execute("SELECT rowid, task_id, session_id FROM tasks WHERE rowid > ?"
                           " ORDER BY rowid LIMIT ?", (after, limit)).fetchall()
        queued = conn.execute(
            "SELECT q.seq, q.kind, q.key, t.session_id FROM analysis_queue q"
            " LEFT JOIN tasks t ON q.kind = 't' AND t.task_id = q.key ORDER BY q.seq LIMIT ?",
            (limit,)).fetchall()
        tasks = {task_id: session_id for _, task_id, session_id in new}
        session_ids: dict[str, None] = {}
        for _, kind, key, session_id in queued:
            if kind == "t":
                tasks[key] = session_id
            else:
                session_ids[key] = None
        return PendingAnalysis(list(tasks.items()), list(session_ids),
                               (new[-1][0] if new else after, queued[-1][0] if queued else 0))

    def task_analyses(self, task_ids: Iterable[str]) -> dict[str, TaskAnalysis]:
        return {row[0]: _task_analysis(row) for row in self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM task_analysis"
            " WHERE task_id IN (SELECT value FROM json_each(?))", (_ids(task_ids),))}

    def session_analyses(self, session_ids: Iterable[str]) -> dict[str, SessionAnalysis]:
        return {row[0]: _session_analysis(row) for row in self.conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM session_analysis"
            " WHERE session_id IN (SELECT value FROM json_each(?))", (_ids(session_ids),))}

    def user_analyses(self, user_ids: Iterable[str]) -> dict[str, UserAnalysis]:
        ids = _ids(user_ids)
        events: dict[str, dict[str, int]] = {}
        for user_id, name, count in self.conn.execute(
                "SELECT user_id, name, count FROM user_events"
                " WHERE user_id IN (SELECT value FROM json_each(?)) AND count > 0"
                " ORDER BY user_id, name", (ids,)):
            events.setdefault(user_id, {})[name] = count
        return {
            user_id: UserAnalysis(
                user_id, tuple(UserClass(label, tuple(reasons))
                               for label, reasons in json.loads(classes)),
                events.get(user_id, {}), success, failure, analyzed_ns)
            for user_id, classes, success, failure, analyzed_ns in self.conn.execute(
                "SELECT user_id, classes, success_count, failure_count, analyzed_ns"
                " FROM user_analysis WHERE user_id IN (SELECT value FROM json_each(?))",
                (ids,))
        }

    def session_events(self, session_id: str) -> list[SessionEventRecord]:
        return [SessionEventRecord._make(r) for r in self.conn.execute(
            f"SELECT {', '.join(SessionEventRecord._fields)} FROM session_events"
            " WHERE session_id = ? ORDER BY time_ns, trace_id, span_id", (session_id,))]

    def sessions_idle_since(self, before_ns: int, limit: int) -> list[str]:
        return [s for (s,) in self.conn.execute(
            "SELECT session_id FROM session_analysis WHERE state = 'active'"
            " AND last_activity_ns < ? ORDER BY last_activity_ns LIMIT ?", (before_ns, limit))]

    def judge_pending(self, limit: int) -> list[str]:
        return [t for (t,) in self.conn.execute(
            "SELECT task_id FROM task_analysis WHERE judge_pending = 1"
            " ORDER BY analyzed_ns LIMIT ?", (limit,))]

    def user_facts(self, window_from_ns: int) -> list[UserFacts]:
        conn = self.conn
        events: dict[str, dict[str, int]] = {}
        for user_id, name, count in conn.execute(
                "SELECT user_id, name, count FROM user_events WHERE count > 0"):
            events.setdefault(user_id, {})[name] = count
        bad = ", ".join(f"'{r}'" for r in _BAD_ENDINGS)
        rows = conn.execute(
            "SELECT u.user_id, u.first_seen_ns, u.last_seen_ns, u.task_count, u.session_count,"
            " coalesce(d.tasks, 0), coalesce(s.n, 0), coalesce(d.days, 0),"
            " coalesce(a.success_count + a.failure_count, 0), coalesce(a.failure_count, 0),"
            " coalesce(e.ended, 0), coalesce(e.bad, 0), coalesce(a.rephrase_count, 0)"
            " FROM users u"
            " LEFT JOIN (SELECT user_id, sum(tasks) AS tasks, count(*) AS days FROM user_days"
            "  WHERE day >= ? GROUP BY user_id) d ON d.user_id = u.user_id"
            " LEFT JOIN (SELECT user_id, count(*) AS n FROM sessions WHERE start_ns >= ?"
            "  AND user_id IS NOT NULL GROUP BY user_id) s ON s.user_id = u.user_id"
            " LEFT JOIN user_analysis a ON a.user_id = u.user_id"
            " LEFT JOIN (SELECT user_id, sum(state = 'ended') AS ended,"
            f"  sum(end_reason IN ({bad})) AS bad FROM session_analysis"
            "  WHERE user_id IS NOT NULL GROUP BY user_id) e ON e.user_id = u.user_id",
            (window_from_ns // NS_PER_DAY, window_from_ns),
        ).fetchall()
        return [UserFacts._make((*row, events.get(row[0], {}))) for row in rows]

    def latest_activity_ns(self) -> int | None:
        row = self.conn.execute("SELECT max(last_seen_ns) FROM users").fetchone()
        if row[0] is not None:
            return int(row[0])
        row = self.conn.execute("SELECT max(start_ns) FROM tasks").fetchone()
        return None if row[0] is None else int(row[0])

    def user_days(self) -> list[tuple[str, int]]:
        return self.conn.execute("SELECT user_id, day FROM user_days WHERE tasks > 0"
                                 " ORDER BY day").fetchall()

    def event_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT name, count(*) FROM task_events GROUP BY name"))

    def _session_scope(self, where: SessionFilter) -> tuple[str, list[Any]]:
        """A condition on ``session_analysis.session_id``: the sessions of the filter."""
        conditions, params = session_where(where)
        if not conditions:
            return "", []
        return (" AND session_id IN (SELECT session_id FROM sessions WHERE "
                + " AND ".join(conditions) + ")"), params

    def end_reasons(self, where: SessionFilter,
                    examples: int) -> list[tuple[str, int, list[str]]]:
        scope, params = self._session_scope(where)
        out = []
        for reason, count in self.conn.execute(
                "SELECT end_reason, count(*) FROM session_analysis"
                f" WHERE end_reason IS NOT NULL{scope} GROUP BY end_reason", params).fetchall():
            ids = [s for (s,) in self.conn.execute(
                "SELECT session_id FROM session_analysis WHERE end_reason = ?"
                f"{scope} ORDER BY ended_ns DESC, session_id LIMIT ?",
                [reason, *params, examples])]
            out.append((reason, int(count), ids))
        out.sort(key=lambda r: (-r[1], r[0]))
        return out

    def success_by_position(self, max_position: int) -> list[tuple[int, int, int, int]]:
        rows: dict[int, list[int]] = {}
        for position, success, failure, unknown in self.conn.execute(
                "SELECT position, success, failure, unknown FROM position_stats"):
            entry = rows.setdefault(min(position, max_position), [0, 0, 0])
            entry[0] += success
            entry[1] += failure
            entry[2] += unknown
        return [(p, *rows[p]) for p in sorted(rows) if any(rows[p])]  # type: ignore[misc]

    def active_durations(self, where: SessionFilter) -> list[int]:
        scope, params = self._session_scope(where)
        return [d for (d,) in self.conn.execute(
            "SELECT active_duration_ns FROM session_analysis WHERE state = 'ended'"
            f"{scope} ORDER BY active_duration_ns", params)]

    def class_counts(self) -> dict[str, int]:
        return dict(self.conn.execute("SELECT label, count(*) FROM user_classes GROUP BY label"))


# ----------------------------------------------------------------------------- writing


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
_PUT_TASK = (f"INSERT OR REPLACE INTO task_analysis ({_TASK_COLUMNS})"
             f" VALUES ({', '.join('?' * 15)})")
_PUT_SESSION = (f"INSERT INTO session_analysis ({_SESSION_COLUMNS}, last_activity_ns)"
                f" VALUES ({', '.join('?' * 14)}) ON CONFLICT(session_id) DO UPDATE SET "
                + ", ".join(f"{c.strip()} = excluded.{c.strip()}"
                            for c in (*_SESSION_COLUMNS.split(",")[1:], "last_activity_ns")))


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
        self.rephrase = source == _REPHRASE_SOURCE
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
                   (_ids(ids),))}
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
                e.source, e.reason, _dumps([list(ev) for ev in t.events]),
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
            _dumps(list(s.end_evidence)),
            s.active_duration_ns, None if ev is None else ev.label,
            None if ev is None else ev.score, None if ev is None else ev.source,
            None if ev is None else ev.reason,
            _dumps(dict(s.event_counts)), s.analyzed_ns, last_activity))
    if update.users is not None:
        conn.execute("DELETE FROM user_classes")
        conn.execute("UPDATE user_analysis SET classes = '[]' WHERE classes != '[]'")
        for u in update.users:
            classes = _dumps([[c.label, list(c.reasons)] for c in u.classes])
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
