"""The ClickHouse backend's share of the insights: the analyzer's work queue and its
results (``store.api.AnalysisReader``; written by ``analysis_writer``, tables in
``analysis_schema``).

Work: the committed ingest batches (``commits``) holding tasks, feedback or session
events that no committed ``analysis_commits`` row lists as done, oldest batch first.
``pending_analysis`` takes whole batches, up to about ``limit`` items, and hands out a
token standing for them (``analysis_writer.PendingTokens``); ``write_analysis`` lists
them in its commit row. So the queue is the store's (any replica's analyzer may take
it; after a restart the work not committed is pending again: nothing is skipped, and
nothing committed is analysed again), and the results of analyzers working at once
merge at read.

Results: every figure is aggregated at read from each task's, session's and user's
latest result (``analysis_sql.latest_sql``), with the rules of the SQLite backend
(``store/sqlite/analysis.py``), which keeps the same figures by deltas.
"""

from __future__ import annotations

import json
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
from phospho_otel.store.clickhouse.analysis_schema import (
    ANALYSIS_COLUMNS,
    USAGE_COLUMNS,
    USAGE_FIGURES,
)
from phospho_otel.store.clickhouse.analysis_sql import REPHRASE_SOURCE, latest_sql
from phospho_otel.store.clickhouse.analysis_writer import PendingTokens, Work
from phospho_otel.store.clickhouse.rollups import tasks_sql
from phospho_otel.store.clickhouse.session_events import session_events_sql
from phospho_otel.store.clickhouse.views import NS_PER_DAY, ClickHouseViews, clause, utc_day_sql
from phospho_otel.store.clickhouse.writer import LOOKUP_CHUNK

__all__ = ["MAX_ITEMS_PER_LIMIT", "MAX_POSITION", "ClickHouseAnalysis"]

MAX_POSITION = 20
"""Positions from this one on are counted together (as ``position_stats`` on SQLite)."""
_BAD_ENDINGS = ("abandoned_after_failure", "abandoned_after_error", "frustrated")
_USAGE = len(USAGE_COLUMNS)
MAX_ITEMS_PER_LIMIT = 10
"""``pending_analysis(limit)`` reads at most about this many times ``limit`` items."""
_WORK = (("t", "tasks", "task_id"), ("f", "feedback", "task_id"),
         ("s", "session_events", "session_id"))
"""(kind, table, key column) of the rows that make work for the analyzer."""


def _columns(table: str) -> list[str]:
    return [name for name, _ in ANALYSIS_COLUMNS[table]]


_TASK = _columns("task_analysis")
_SESSION = _columns("session_analysis")
_USER = _columns("user_analysis")


def _usage(values: Sequence[Any]) -> Usage | None:
    usage = Usage(*values)
    return usage if usage.known else None


def _task_analysis(row: Sequence[Any]) -> TaskAnalysis:
    (task_id, session_id, user_id, start_ns, position, label, score, source, reason, events,
     _names, s_score, s_label, language, analyzed_ns, judge_pending, *rest) = row
    return TaskAnalysis(
        task_id, session_id, user_id, start_ns, position,
        Evaluation(label, score, source, reason),
        tuple(DetectedEvent(*e) for e in json.loads(events)),
        None if s_label is None else Sentiment(s_score, s_label),
        language, analyzed_ns, bool(judge_pending), _usage(rest[:_USAGE]))


def _session_analysis(row: Sequence[Any]) -> SessionAnalysis:
    (session_id, user_id, state, _last_activity, ended_ns, end_reason, evidence, active_ns,
     label, score, source, reason, names, counts, analyzed_ns, *rest) = row
    return SessionAnalysis(
        session_id, user_id, state, ended_ns, end_reason, tuple(evidence), active_ns,
        None if label is None else Evaluation(label, score, source, reason),
        dict(zip(names, counts, strict=True)), analyzed_ns, _usage(rest[:_USAGE]))


class ClickHouseAnalysis(ClickHouseViews):
    """``store.api.AnalysisReader`` over ``self.client`` (set by ``ClickHouseReader``:
    ``analysed`` the committed analysis batches of its snapshot, ``users_run`` the
    latest classification's batch, ``tokens`` the store's pending-work tokens)."""

    analysed: str
    users_run: str
    tokens: PendingTokens

    def _latest(self, table: str, where: str = "") -> str:
        return latest_sql(self.db, table, self.analysed, where)

    def _by_ids(self, table: str, key: str, ids: Iterable[str]) -> list[Any]:
        wanted = sorted(set(ids))
        rows: list[Any] = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            rows += self._rows(f"SELECT * FROM ({self._latest(table, f'{key} IN %(ids)s')})",
                               {"ids": tuple(wanted[start:start + LOOKUP_CHUNK])})
        return rows

    # -- the work queue ------------------------------------------------------------------

    def _not_done(self) -> tuple[str, dict[str, Any]]:
        """The condition on a work table's rows (``_WORK``, with ``{kind}`` and ``{key}``
        to fill in) of the items no committed analysis covers."""
        db = self.db
        condition = (f"{self.visible} AND written NOT IN"
                     f" (SELECT arrayJoin(done) FROM {db}.analysis_commits)")
        params: dict[str, Any] = {}
        for i, (batch, (kind, key)) in enumerate(self._rows(
                f"SELECT partial_batch, max(tuple(partial_kind, partial_key))"
                f" FROM {db}.analysis_commits WHERE partial_batch != 0 AND partial_batch"
                f" NOT IN (SELECT arrayJoin(done) FROM {db}.analysis_commits)"
                " GROUP BY partial_batch")):
            condition += (f" AND NOT (written = {int(batch)} AND ('{{kind}}', {{key}})"
                          f" <= (%(pk{i})s, %(pv{i})s))")
            params[f"pk{i}"], params[f"pv{i}"] = kind, key
        return condition, params

    def pending_analysis(self, limit: int) -> PendingAnalysis:
        db = self.db
        not_done, params = self._not_done()
        counts: dict[int, int] = {}
        for kind, table, key in _WORK:
            for batch, n in self._rows(
                    f"SELECT written, count() FROM {db}.{table}"
                    f" WHERE {not_done.format(kind=kind, key=key)} GROUP BY written", params):
                counts[int(batch)] = counts.get(int(batch), 0) + int(n)
        # whole batches, oldest first, until they hold ``limit`` distinct tasks (or
        # ``MAX_ITEMS_PER_LIMIT`` times as many items)
        ordered = sorted(counts)
        chosen: list[int] = []
        items: list[tuple[int, str, str]] = []
        i = 0
        while i < len(ordered) and len(items) < MAX_ITEMS_PER_LIMIT * limit:
            need = max(limit - len({k for _, kind, k in items if kind != "s"}), 1)
            group: list[int] = []
            held = 0
            while i < len(ordered) and held < need:
                group.append(ordered[i])
                held += counts[ordered[i]]
                i += 1
            for kind, table, key in _WORK:
                items += [(int(b), kind, k) for b, k in self._rows(
                    f"SELECT written, {key} FROM {db}.{table} WHERE written IN %(batches)s"
                    f" AND {not_done.format(kind=kind, key=key)}",
                    {**params, "batches": tuple(group)})]
            chosen += group
            if len({k for _, kind, k in items if kind != "s"}) >= limit:
                break
        items.sort()
        work = Work(chosen)
        seen: set[str] = set()
        for n, item in enumerate(items):  # up to the limit-th task: its batch in part
            if item[1] != "s":
                seen.add(item[2])
            if len(seen) >= limit and n + 1 < len(items):
                kept = [x for x in items if x <= item]
                whole = [batch for batch in chosen if batch < item[0]]
                if any(x[0] == item[0] for x in items[len(kept):]):
                    work = Work(whole, item)
                else:
                    work = Work([*whole, item[0]])
                items = kept
                break
        task_ids = sorted({k for _, kind, k in items if kind != "s"})
        session_of: dict[str, str | None] = {}
        for start in range(0, len(task_ids), LOOKUP_CHUNK):
            chunk = tuple(task_ids[start:start + LOOKUP_CHUNK])
            session_of.update(self._rows(
                f"SELECT task_id, session_id FROM"
                f" ({tasks_sql(db, self.visible, 'task_id IN %(ids)s')})", {"ids": chunk}))
        tasks: dict[str, str | None] = {}
        sessions: dict[str, None] = {}
        for _, kind, key in items:
            if kind == "s":
                sessions[key] = None
            else:  # (a task not stored: feedback before it; the analyzer finds no task)
                tasks[key] = session_of.get(key)
        return PendingAnalysis(list(tasks.items()), list(sessions), self.tokens.issue(work))

    # -- results by id -------------------------------------------------------------------

    def task_analyses(self, task_ids: Iterable[str]) -> dict[str, TaskAnalysis]:
        return {row[0]: _task_analysis(row)
                for row in self._by_ids("task_analysis", "task_id", task_ids)}

    def session_analyses(self, session_ids: Iterable[str]) -> dict[str, SessionAnalysis]:
        return {row[0]: _session_analysis(row)
                for row in self._by_ids("session_analysis", "session_id", session_ids)}

    def user_analyses(self, user_ids: Iterable[str]) -> dict[str, UserAnalysis]:
        """A user's analysis: the classes of the latest classification (none if it left
        them out), with the analyzed time and usage of the latest one that had them;
        their event and success / failure counts over their tasks' latest analyses. A
        user has one once classified, or once a task of theirs is evaluated success,
        failure or a rephrase."""
        wanted = sorted(set(user_ids))
        if not wanted:
            return {}
        latest_run = int(self._rows(f"SELECT {self.users_run}")[0][0])
        out: dict[str, UserAnalysis] = {}
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            ids = {"ids": tuple(wanted[start:start + LOOKUP_CHUNK])}
            users = {row[0]: row for row in self._rows(
                f"SELECT * FROM ({self._latest('user_analysis', 'user_id IN %(ids)s')})", ids)}
            counts = self._user_task_counts("user_id IN %(ids)s", ids)
            events = self._user_events("user_id IN %(ids)s", ids)
            for user_id in sorted(set(users) | set(counts)):
                success, failure, _ = counts.get(user_id, (0, 0, 0))
                row = users.get(user_id)
                classes: tuple[UserClass, ...] = ()
                analyzed_ns, usage = 0, None
                if row is not None:
                    analyzed_ns = row[3]
                    usage = _usage(row[4:4 + _USAGE])
                    if row[-1] == latest_run:
                        classes = tuple(UserClass(label, tuple(reasons))
                                        for label, reasons in json.loads(row[1]))
                out[user_id] = UserAnalysis(user_id, classes, events.get(user_id, {}),
                                            success, failure, analyzed_ns, usage)
        return out

    def _user_task_counts(self, where: str, params: dict[str, Any]
                          ) -> dict[str, tuple[int, int, int]]:
        """Per user with any: tasks evaluated success, failure, and as a rephrase (their
        latest analyses)."""
        return {user_id: (int(s), int(f), int(r)) for user_id, s, f, r in self._rows(
            "SELECT assumeNotNull(user_id) AS _user, countIf(eval_label = 'success') AS _s,"
            " countIf(eval_label = 'failure') AS _f,"
            f" countIf(eval_source = '{REPHRASE_SOURCE}') AS _r"
            f" FROM ({self._latest('task_analysis')}) WHERE isNotNull(user_id)"
            f"{' AND ' + where if where else ''} GROUP BY _user"
            " HAVING _s + _f + _r > 0", params)}

    def _user_events(self, where: str, params: dict[str, Any]) -> dict[str, dict[str, int]]:
        events: dict[str, dict[str, int]] = {}
        for user_id, name, n in self._rows(
                "SELECT assumeNotNull(user_id) AS _user, _name, count() FROM"
                f" ({self._latest('task_analysis')}) ARRAY JOIN event_names AS _name"
                f" WHERE isNotNull(user_id){' AND ' + where if where else ''}"
                " GROUP BY _user, _name ORDER BY _user, _name", params):
            events.setdefault(user_id, {})[name] = int(n)
        return events

    def session_events(self, session_id: str) -> list[SessionEventRecord]:
        return [SessionEventRecord(bytes.fromhex(t), bytes.fromhex(s), *rest)
                for t, s, *rest in self._rows(
                    session_events_sql(self.db, self.visible, "session_id = %(sid)s"),
                    {"sid": session_id})]

    # -- what the analyzer looks for ---------------------------------------------------

    def sessions_idle_since(self, before_ns: int, limit: int) -> list[str]:
        return [s for (s,) in self._rows(
            f"SELECT session_id FROM ({self._latest('session_analysis')})"
            " WHERE state = 'active' AND last_activity_ns < %(before)s"
            f" ORDER BY last_activity_ns, session_id LIMIT {int(limit)}", {"before": before_ns})]

    def judge_pending(self, limit: int) -> list[str]:
        return [t for (t,) in self._rows(
            f"SELECT task_id FROM ({self._latest('task_analysis')}) WHERE judge_pending = 1"
            f" ORDER BY analyzed_ns, task_id LIMIT {int(limit)}")]

    def user_facts(self, window_from_ns: int) -> list[UserFacts]:
        window_day = window_from_ns // NS_PER_DAY
        users = self._rows("SELECT user_id, first_seen_ns, last_seen_ns, task_count,"
                           f" session_count FROM ({self.users()})")
        window = {u: (int(n), int(d)) for u, n, d in self._rows(
            f"SELECT assumeNotNull(user_id) AS _user, count(), uniqExact(_day) FROM"
            f" (SELECT user_id, {utc_day_sql('start_ns')} AS _day"
            f" FROM ({self._latest('task_analysis')}) WHERE isNotNull(user_id))"
            " WHERE _day >= %(day)s GROUP BY _user", {"day": window_day})}
        sessions = dict(self._rows(
            "SELECT assumeNotNull(user_id) AS _user, count() FROM"
            f" ({self.sessions()}) WHERE isNotNull(user_id) AND start_ns >= %(from_ns)s"
            " GROUP BY _user", {"from_ns": window_from_ns}))
        counts = self._user_task_counts("", {})
        bad = ", ".join(f"'{r}'" for r in _BAD_ENDINGS)
        endings = {u: (int(e), int(b)) for u, e, b in self._rows(
            "SELECT assumeNotNull(user_id) AS _user, countIf(state = 'ended'),"
            f" countIf(end_reason IN ({bad})) FROM ({self._latest('session_analysis')})"
            " WHERE isNotNull(user_id) GROUP BY _user")}
        figures = ", ".join(f"sum({c})" for c in USAGE_FIGURES)
        usage = {u: rest for u, *rest in self._rows(
            f"SELECT assumeNotNull(user_id) AS _user, {figures}"
            f" FROM ({self._latest('task_analysis')}) WHERE isNotNull(user_id) GROUP BY _user")}
        events = self._user_events("", {})
        out = []
        for user_id, first_seen, last_seen, task_count, session_count in users:
            tasks_in, days_in = window.get(user_id, (0, 0))
            success, failure, rephrase = counts.get(user_id, (0, 0, 0))
            ended, after_failure = endings.get(user_id, (0, 0))
            sums = dict(zip(USAGE_FIGURES, usage.get(user_id, [None] * len(USAGE_FIGURES)),
                            strict=True))
            out.append(UserFacts(
                user_id, first_seen, last_seen, task_count, session_count, tasks_in,
                int(sessions.get(user_id, 0)), days_in, success + failure, failure, ended,
                after_failure, rephrase, events.get(user_id, {}),
                _usage([sums.get(name) for name, _ in USAGE_COLUMNS])))
        return out

    def latest_activity_ns(self) -> int | None:
        ((with_user, last_seen, n, last_start),) = self._rows(
            "SELECT countIf(isNotNull(user_id)), maxIf(end_ns, isNotNull(user_id)), count(),"
            f" max(start_ns) FROM ({tasks_sql(self.db, self.visible)})")
        if with_user:
            return int(last_seen)
        return int(last_start) if n else None

    def user_days(self) -> list[tuple[str, int]]:
        return [(u, int(d)) for u, d in self._rows(
            f"SELECT assumeNotNull(user_id) AS _user, {utc_day_sql('start_ns')} AS _day"
            f" FROM ({self._latest('task_analysis')}) WHERE isNotNull(user_id)"
            " GROUP BY _user, _day ORDER BY _day, _user")]

    def traces_mentioning(self, trace_ids: Iterable[bytes],
                          keys: Iterable[str]) -> set[bytes]:
        needles = list(dict.fromkeys(keys))
        ids = sorted({t.hex() for t in trace_ids})
        if not needles or not ids:
            return set()
        any_key = " OR ".join(f"position(span, %(k{i})s) > 0" for i in range(len(needles)))
        params: dict[str, Any] = {f"k{i}": k for i, k in enumerate(needles)}
        found: set[bytes] = set()
        for start in range(0, len(ids), LOOKUP_CHUNK):
            params["ids"] = tuple(ids[start:start + LOOKUP_CHUNK])
            found.update(bytes.fromhex(t) for (t,) in self._rows(
                f"SELECT DISTINCT trace_id FROM {self.db}.spans WHERE trace_id IN %(ids)s"
                f" AND {self.visible} AND ({any_key})", params))
        return found

    # -- figures -------------------------------------------------------------------------

    def event_days(self) -> list[tuple[str, int, int]]:
        return [(name, int(day), int(n)) for name, day, n in self._rows(
            f"SELECT _name, {utc_day_sql('start_ns')} AS _day, count()"
            f" FROM ({self._latest('task_analysis')}) ARRAY JOIN event_names AS _name"
            " GROUP BY _name, _day ORDER BY _name, _day")]

    def _session_scope(self, where: SessionFilter) -> tuple[str, dict[str, Any]]:
        """A condition on ``session_id``: the sessions of the filter (none without a
        condition: every session analysis, as on SQLite)."""
        conditions, params = self.session_where(where)
        self._having_task("session_id", where.metadata, conditions, params)
        if not conditions:
            return "", params
        return (f" AND session_id IN (SELECT session_id FROM ({self.sessions()})"
                f"{clause(conditions)})"), params

    def end_reasons(self, where: SessionFilter,
                    examples: int) -> list[tuple[str, int, list[str]]]:
        scope, params = self._session_scope(where)
        latest = self._latest("session_analysis")
        out = []
        for reason, count in self._rows(
                f"SELECT assumeNotNull(end_reason) AS _reason, count() FROM ({latest})"
                f" WHERE isNotNull(end_reason){scope} GROUP BY _reason", params):
            ids = [s for (s,) in self._rows(
                f"SELECT session_id FROM ({latest}) WHERE end_reason = %(reason)s{scope}"
                f" ORDER BY ended_ns DESC, session_id LIMIT {int(examples)}",
                {**params, "reason": reason})]
            out.append((reason, int(count), ids))
        out.sort(key=lambda r: (-r[1], r[0]))
        return out

    def success_by_position(self, max_position: int) -> list[tuple[int, int, int, int]]:
        rows: dict[int, list[int]] = {}
        for position, success, failure, unknown in self._rows(
                f"SELECT least(assumeNotNull(position), {MAX_POSITION}) AS _p,"
                " countIf(eval_label = 'success'), countIf(eval_label = 'failure'),"
                " countIf(eval_label NOT IN ('success', 'failure'))"
                f" FROM ({self._latest('task_analysis')}) WHERE isNotNull(position)"
                " GROUP BY _p"):
            entry = rows.setdefault(min(int(position), max_position), [0, 0, 0])
            entry[0] += int(success)
            entry[1] += int(failure)
            entry[2] += int(unknown)
        return [(p, *rows[p]) for p in sorted(rows) if any(rows[p])]  # type: ignore[misc]

    def active_durations(self, where: SessionFilter) -> list[int]:
        scope, params = self._session_scope(where)
        return [int(d) for (d,) in self._rows(
            f"SELECT active_duration_ns FROM ({self._latest('session_analysis')})"
            f" WHERE state = 'ended'{scope} ORDER BY active_duration_ns", params)]

    def class_counts(self) -> dict[str, int]:
        return {label: int(n) for label, n in self._rows(
            f"SELECT _label, count() FROM {self.db}.user_analysis"
            f" ARRAY JOIN class_labels AS _label WHERE written = {self.users_run}"
            " GROUP BY _label ORDER BY _label")}


assert _TASK[0] == "task_id" and _SESSION[0] == "session_id" and _USER[0] == "user_id"
assert _USER[1:4] == ["classes", "class_labels", "analyzed_ns"] and _USER[-1] == "written"
