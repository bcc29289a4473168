"""The SQLite backend's share of the insights: the analyzer's work queue and its results
(``store.api.AnalysisReader``; they are written by ``analysis_writer.write_analysis``).

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

Usage (``USAGE_COLUMNS``: tokens, cost and model, NULL when not reported) is kept with
each task and session analysis; ``user_facts`` sums the figures per user over
``task_analysis`` (a covering partial index holds the tasks that report any), and
``user_analysis`` keeps those sums as of the last time the classes were decided (a user's
model is not computed: NULL).
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
    Usage,
    UserAnalysis,
    UserClass,
)
from phospho_otel.model.records import SessionEventRecord
from phospho_otel.store.api import PendingAnalysis, SessionFilter, UserFacts
from phospho_otel.store.sqlite.views import NS_PER_DAY, session_where, utc_day_sql

__all__ = [
    "FIGURE_COLUMNS",
    "MAX_POSITION",
    "NS_PER_DAY",
    "REPHRASE_SOURCE",
    "SESSION_COLUMNS",
    "TASK_COLUMNS",
    "USAGE_COLUMNS",
    "SQLiteAnalysis",
    "dumps",
    "ids_json",
    "usage_row",
]

TRACE_IDS_PER_QUERY = 500
"""Trace ids per query of ``traces_mentioning`` (under SQLite's parameter limit)."""
MAX_POSITION = 20
"""``position_stats`` counts every position from this one on together."""
_BAD_ENDINGS = ("abandoned_after_failure", "abandoned_after_error", "frustrated")
REPHRASE_SOURCE = "heuristic:rephrase"

USAGE_COLUMNS = "input_tokens, output_tokens, cost, model"
"""A ``model.analysis.Usage``'s columns (NULL when not reported), on each analysis table."""
FIGURE_COLUMNS = ("input_tokens", "output_tokens", "cost")
"""The usage columns that sum over tasks."""
TASK_COLUMNS = ("task_id, session_id, user_id, start_ns, position, eval_label, eval_score,"
                " eval_source, eval_reason, events, sentiment_score, sentiment_label,"
                f" language, analyzed_ns, judge_pending, {USAGE_COLUMNS}")
SESSION_COLUMNS = ("session_id, user_id, state, ended_ns, end_reason, end_evidence,"
                   " active_duration_ns, eval_label, eval_score, eval_source, eval_reason,"
                   f" event_counts, analyzed_ns, {USAGE_COLUMNS}")
_REPORTS_USAGE = " OR ".join(f"{c} IS NOT NULL" for c in FIGURE_COLUMNS)
"""The condition of the partial index ``task_analysis_usage`` (schema.py), word for word."""
dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def ids_json(values: Iterable[str]) -> str:
    return dumps(list(values))


def usage_row(usage: Usage | None) -> tuple[int | None, int | None, float | None, str | None]:
    """The ``USAGE_COLUMNS`` values of ``usage`` (NULLs for None)."""
    if usage is None:
        return (None, None, None, None)
    return (usage.input_tokens, usage.output_tokens, usage.cost, usage.model)


def _usage(tokens_in: int | None, tokens_out: int | None, cost: float | None,
           model: str | None = None) -> Usage | None:
    usage = Usage(tokens_in, tokens_out, cost, model)
    return usage if usage.known else None


def _task_analysis(row: Sequence[Any]) -> TaskAnalysis:
    (task_id, session_id, user_id, start_ns, position, label, score, source, reason, events,
     s_score, s_label, language, analyzed_ns, judge_pending, *usage) = row
    return TaskAnalysis(
        task_id, session_id, user_id, start_ns, position,
        Evaluation(label, score, source, reason),
        tuple(DetectedEvent(*e) for e in json.loads(events)),
        None if s_label is None else Sentiment(s_score, s_label),
        language, analyzed_ns, bool(judge_pending), _usage(*usage))


def _session_analysis(row: Sequence[Any]) -> SessionAnalysis:
    (session_id, user_id, state, ended_ns, end_reason, evidence, active_ns, label, score,
     source, reason, event_counts, analyzed_ns, *usage) = row
    return SessionAnalysis(
        session_id, user_id, state, ended_ns, end_reason, tuple(json.loads(evidence)),
        active_ns, None if label is None else Evaluation(label, score, source, reason),
        json.loads(event_counts), analyzed_ns, _usage(*usage))


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
            f"SELECT {TASK_COLUMNS} FROM task_analysis"
            " WHERE task_id IN (SELECT value FROM json_each(?))", (ids_json(task_ids),))}

    def session_analyses(self, session_ids: Iterable[str]) -> dict[str, SessionAnalysis]:
        return {row[0]: _session_analysis(row) for row in self.conn.execute(
            f"SELECT {SESSION_COLUMNS} FROM session_analysis"
            " WHERE session_id IN (SELECT value FROM json_each(?))", (ids_json(session_ids),))}

    def user_analyses(self, user_ids: Iterable[str]) -> dict[str, UserAnalysis]:
        ids = ids_json(user_ids)
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
                events.get(user_id, {}), success, failure, analyzed_ns, _usage(*usage))
            for user_id, classes, success, failure, analyzed_ns, *usage in self.conn.execute(
                "SELECT user_id, classes, success_count, failure_count, analyzed_ns,"
                f" {USAGE_COLUMNS} FROM user_analysis"
                " WHERE user_id IN (SELECT value FROM json_each(?))", (ids,))
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
            " coalesce(e.ended, 0), coalesce(e.bad, 0), coalesce(a.rephrase_count, 0),"
            " g.input_tokens, g.output_tokens, g.cost"
            " FROM users u"
            " LEFT JOIN (SELECT user_id, sum(tasks) AS tasks, count(*) AS days FROM user_days"
            "  WHERE day >= ? GROUP BY user_id) d ON d.user_id = u.user_id"
            " LEFT JOIN (SELECT user_id, count(*) AS n FROM sessions WHERE start_ns >= ?"
            "  AND user_id IS NOT NULL GROUP BY user_id) s ON s.user_id = u.user_id"
            " LEFT JOIN user_analysis a ON a.user_id = u.user_id"
            " LEFT JOIN (SELECT user_id, sum(state = 'ended') AS ended,"
            f"  sum(end_reason IN ({bad})) AS bad FROM session_analysis"
            "  WHERE user_id IS NOT NULL GROUP BY user_id) e ON e.user_id = u.user_id"
            # over the covering partial index task_analysis_usage
            f" LEFT JOIN (SELECT user_id, {', '.join(f'sum({c}) AS {c}' for c in FIGURE_COLUMNS)}"
            f"  FROM task_analysis WHERE ({_REPORTS_USAGE}) AND user_id IS NOT NULL"
            "  GROUP BY user_id) g ON g.user_id = u.user_id",
            (window_from_ns // NS_PER_DAY, window_from_ns),
        ).fetchall()
        return [UserFacts._make((*row[:13], events.get(row[0], {}), _usage(*row[13:])))
                for row in rows]

    def latest_activity_ns(self) -> int | None:
        row = self.conn.execute("SELECT max(last_seen_ns) FROM users").fetchone()
        if row[0] is not None:
            return int(row[0])
        row = self.conn.execute("SELECT max(start_ns) FROM tasks").fetchone()
        return None if row[0] is None else int(row[0])

    def user_days(self) -> list[tuple[str, int]]:
        return self.conn.execute("SELECT user_id, day FROM user_days WHERE tasks > 0"
                                 " ORDER BY day").fetchall()

    def traces_mentioning(self, trace_ids: Iterable[bytes],
                          keys: Iterable[str]) -> set[bytes]:
        needles = [k.encode() for k in dict.fromkeys(keys)]
        ids = list(dict.fromkeys(trace_ids))
        if not needles or not ids:
            return set()
        found: set[bytes] = set()
        any_key = " OR ".join("instr(span, ?) > 0" for _ in needles)  # bytes in bytes
        for i in range(0, len(ids), TRACE_IDS_PER_QUERY):
            chunk = ids[i:i + TRACE_IDS_PER_QUERY]
            found.update(bytes(t) for (t,) in self.conn.execute(
                f"SELECT DISTINCT trace_id FROM spans WHERE trace_id IN"
                f" ({', '.join('?' * len(chunk))}) AND ({any_key})", [*chunk, *needles]))
        return found

    def event_days(self) -> list[tuple[str, int, int]]:
        return self.conn.execute(
            f"SELECT name, {utc_day_sql('start_ns')} AS day,"
            " count(*) FROM task_events GROUP BY name, day ORDER BY name, day").fetchall()

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
