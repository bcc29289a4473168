"""The SQLite backend's ``ViewReader``: sessions, users and tasks by id and as pages.

Lists read the ``sessions`` / ``users`` rollups and ``tasks`` through their indexes
(``ORDER BY <indexed column>, <id> LIMIT``), never a full scan; pages after the first go
by keyset cursor (the last row's sort value and id). A task's ``position`` is its 1-based
rank in its session by ``(start_ns, task_id)``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from phospho_otel.errors import BadRequest
from phospho_otel.model.analysis import EVALUATION_LABELS
from phospho_otel.model.records import TaskFeedback, TaskRecord
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.api import (
    METADATA_KEY_FORBIDDEN,
    SESSION_SORTS,
    TASK_SORTS,
    USER_SORTS,
    Listing,
    Page,
    SessionFilter,
    TaskFilter,
    TaskRow,
    UserFilter,
    UserRow,
)
from phospho_otel.store.sqlite.schema import FEEDBACK_COLUMNS

__all__ = ["NS_PER_DAY", "SPARSE_SHARE", "SQLiteViews", "metadata_path", "session_where",
           "task_where", "user_rows", "user_where", "utc_day_sql"]

_SESSION_SORT_SQL = {
    "start_time": "start_ns",
    "end_time": "end_ns",
    "task_count": "task_count",
    "duration_s": "(end_ns - start_ns)",
    "session_id": "session_id",
}
"""Sort keys -> SQL (each has an index ending in the id; ``tokens`` and ``cost``, added
below, probe ``session_analysis``)."""


def _analysed(expr: str, table: str = "user_analysis", key: str = "users.user_id") -> str:
    """A figure from an analysis table's row of ``key`` (default: the user's), -1 without
    one (so the cursor's row values never meet a NULL): a probe by primary key per row
    (users: over 10,000 about 10 ms; a walk of every row, sorted, for the tasks)."""
    column = key.rsplit(".", 1)[1]
    return f"coalesce((SELECT {expr} FROM {table} a WHERE a.{column} = {key}), -1)"


_TOKENS = "nullif(coalesce(a.input_tokens, 0) + coalesce(a.output_tokens, 0), 0)"
"""Input + output tokens of an analysis row (NULL when neither is known, or both 0)."""
_SESSION_SORT_SQL |= {
    "tokens": _analysed(_TOKENS, "session_analysis", "sessions.session_id"),
    "cost": _analysed("a.cost", "session_analysis", "sessions.session_id"),
}


_USER_SORT_SQL = {
    "last_seen": "last_seen_ns",
    "first_seen": "first_seen_ns",
    "task_count": "task_count",
    "session_count": "session_count",
    "user_id": "user_id",
    "success_rate": _analysed("1.0 * a.success_count / nullif(a.success_count"
                              " + a.failure_count, 0)"),
    "tokens": _analysed(_TOKENS),
    "cost": _analysed("a.cost"),
}
_TASK_SORT_SQL = {
    "start_time": "start_ns",
    "tokens": _analysed(_TOKENS, "task_analysis", "tasks.task_id"),
    "cost": _analysed("a.cost", "task_analysis", "tasks.task_id"),
}
assert tuple(_SESSION_SORT_SQL) == SESSION_SORTS and tuple(_USER_SORT_SQL) == USER_SORTS
assert tuple(_TASK_SORT_SQL) == TASK_SORTS

_SESSION_COLUMNS = ", ".join(SessionRollup._fields)
_USER_COLUMNS = ", ".join(UserRollup._fields)
_TASK_COLUMNS = ", ".join((*TaskRecord._fields, *FEEDBACK_COLUMNS))
_TASK_COLUMNS_T = ", ".join(f"t.{c}" for c in (*TaskRecord._fields, *FEEDBACK_COLUMNS))
NS_PER_DAY = 86_400 * 1_000_000_000


def utc_day_sql(column: str) -> str:
    """SQL for the UTC day (days since the epoch, floored, also before 1970) of a
    nanosecond time column."""
    return f"({column} / {NS_PER_DAY} - ({column} % {NS_PER_DAY} < 0))"


TASK_WINDOW = 10_000
"""Tasks searched at most per page for a filter no index answers (metadata, text, flag):
about 15 to 40 ms at 1M tasks (``benchmarks/bench_dashboard.py``)."""
SESSION_WINDOW = 1_000
"""Sessions searched at most per page for a metadata filter (each probes its tasks)."""
USER_WINDOW = 200
"""Users searched at most per page for a metadata filter (each probes its tasks)."""

_DRIVEN_SORT_SQL = {
    "start_time": "d.start_ns",
    "tokens": _analysed(_TOKENS, "task_analysis", "t.task_id"),
    "cost": _analysed("a.cost", "task_analysis", "t.task_id"),
}
"""Sort keys of a task list read through task_events or task_analysis (alias ``d``)."""
_RECORD = len(TaskRecord._fields)
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_ACTIVE_IDS = ("SELECT session_id FROM sessions EXCEPT SELECT session_id FROM session_analysis"
               " WHERE state = 'ended' ORDER BY 1")
"""The ids of the active sessions, in order: one merge of two ordered indexes (without the
ORDER BY, SQLite builds a temporary b-tree of every session instead)."""
SPARSE_SHARE = 20
"""A session list by state or end reason keeping under 1 / ``SPARSE_SHARE`` of the sessions
reads them by id (``session_where(sparse=True)``) instead of walking its sort index."""


def _task(row: Sequence[Any], position: int | None, is_last: bool | None) -> TaskRow:
    """A ``tasks`` row (``_TASK_COLUMNS``) as a ``TaskRow``."""
    flag = row[_RECORD:]
    return TaskRow(TaskRecord._make(row[:_RECORD]),
                   None if flag[0] is None else TaskFeedback._make(flag), position, is_last)


def _time_filter(column: str, from_ns: int | None, to_ns: int | None, where: list[str],
                 params: list[Any]) -> None:
    if from_ns is not None:
        where.append(f"{column} >= ?")
        params.append(from_ns)
    if to_ns is not None:
        where.append(f"{column} < ?")
        params.append(to_ns)


def metadata_path(key: str) -> str:
    """The JSON path of a top-level key, quoted (``$."a.b"``); the key holds no ``"``
    (``store.api.METADATA_KEY_FORBIDDEN``, checked by the API, and here)."""
    if any(c in METADATA_KEY_FORBIDDEN for c in key) or not key:
        raise BadRequest(f"metadata.{key}: not a metadata key")
    return f'$."{key}"'


def _metadata_match(column: str, pairs: Sequence[tuple[str, str]], where: list[str],
                    params: list[Any]) -> None:
    """Conditions: the JSON object in ``column`` has each key, with that text
    (``store.api.METADATA_TEXT``: a string's own text, else the value's JSON text; stored
    text that is not JSON matches nothing)."""
    for key, value in pairs:
        path = metadata_path(key)
        if _plain(key):  # a cheap test first: most rows are left without parsing JSON
            where.append(f"instr({column}, ?) > 0")
            params.append(f'"{key}"')
            if _plain(value):
                where.append(f"instr({column}, ?) > 0")
                params.append(value)
        where.append(f"(CASE WHEN NOT json_valid({column}) THEN NULL"
                     f" WHEN json_type({column}, ?) = 'text' THEN {column} ->> ?"
                     f" ELSE {column} -> ? END) = ?")
        params += [path, path, path, value]


def _plain(text: str) -> bool:
    """True when ``text`` is written as itself inside any JSON text holding it (printable
    ASCII but ``"``, ``\\``, ``/`` and the ``<>&`` some writers escape), so that a JSON
    text without it as a substring cannot hold it."""
    return all(" " <= c <= "~" and c not in '"\\/<>&' for c in text)


def _like_pattern(text: str) -> str:
    """A LIKE pattern (escape ``\\``) matching ``text`` anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def task_where(f: TaskFilter, alias: str = "") -> tuple[list[str], list[Any]]:
    """The conditions of a task filter's metadata, text and flag on ``tasks`` (``alias``:
    a prefix such as ``"t."``), each checked on the rows an index yields."""
    where: list[str] = []
    params: list[Any] = []
    _metadata_match(f"{alias}metadata", f.metadata, where, params)
    if f.text is not None:
        where.append(f"({alias}input LIKE ? ESCAPE '\\' OR {alias}output LIKE ? ESCAPE '\\')")
        params += [_like_pattern(f.text)] * 2
    if f.flag == "none":
        where.append(f"{alias}flag IS NULL")
    elif f.flag is not None:  # "+": not through tasks_flagged (by id), which would sort them all
        where.append(f"+{alias}flag = ?")
        params.append(f.flag)
    return where, params


def _having_task(column: str, owner: str, pairs: Sequence[tuple[str, str]],
                 where: list[str], params: list[Any]) -> None:
    """The condition "one of the owner's tasks (``tasks.<column> = <owner>``) has these
    metadata values" (a probe through ``tasks_by_session`` / ``tasks_by_user``)."""
    if not pairs:
        return
    conditions: list[str] = []
    _metadata_match("mt.metadata", pairs, conditions, params)
    where.append(f"EXISTS (SELECT 1 FROM tasks mt WHERE mt.{column} = {owner} AND "
                 + " AND ".join(conditions) + ")")


def _rollup_where(f: SessionFilter, alias: str = "") -> tuple[list[str], list[Any]]:
    """The conditions of a session filter on the ``sessions`` rollup's own columns
    (``alias``: a prefix such as ``"s."``), and on its tasks' metadata."""
    where: list[str] = []
    params: list[Any] = []
    if f.user_id is not None:
        where.append(f"{alias}user_id = ?")
        params.append(f.user_id)
    _time_filter(f"{alias}start_ns", f.from_ns, f.to_ns, where, params)
    _having_task("session_id", f"{alias or 'sessions.'}session_id", f.metadata, where, params)
    return where, params


def _analysis_where(f: SessionFilter, alias: str) -> tuple[list[str], list[Any]]:
    """The conditions of a session filter on its ``session_analysis`` row (``alias``):
    ended, not ended (``active``), with an end reason, an evaluation, an event."""
    where: list[str] = []
    params: list[Any] = []
    # "+": never through an index on state, which would list most sessions
    if f.state == "ended":
        where.append(f"+{alias}.state = 'ended'")
    elif f.state is not None:
        where.append(f"+{alias}.state != 'ended'")
    if f.end_reason is not None:
        where.append(f"{alias}.end_reason = ?")
        params.append(f.end_reason)
    if f.evaluation is not None:
        where.append(f"{alias}.eval_label = ?")
        params.append(f.evaluation)
    if f.event is not None:
        where.append(f"json_extract({alias}.event_counts, ?) > 0")
        params.append(metadata_path(f.event))
    return where, params


def _probed(f: SessionFilter) -> bool:
    """Whether ``f`` keeps only sessions with an analysis row (an end reason, an
    evaluation or an event), beyond their state."""
    return f.end_reason is not None or f.evaluation is not None or f.event is not None


def session_where(f: SessionFilter, *, sparse: bool = False) -> tuple[list[str], list[Any]]:
    """SQL conditions and parameters of a session filter, on ``sessions`` (unaliased).

    The state and end reason are correlated probes of ``session_analysis`` by its
    primary key (``EXISTS``), so that a page sorted by an index walks that index and
    stops at its limit, instead of first listing every ended session. A session not
    analysed yet is ``active``: it has no ``session_analysis`` row, so ``active`` is
    "no ended row" (``NOT EXISTS``), the end reason "a row with that reason".

    ``sparse``: the filter keeps few sessions, so a walk would probe most of them before
    it fills a page; the state and end reason are then the list of their sessions
    (``IN``: active ones by one merge of two ordered indexes), looked up by id."""
    where, params = _rollup_where(f)
    if sparse and (f.state is not None or _probed(f)):
        if f.state == "active" and not _probed(f):
            where.append(f"session_id IN ({_ACTIVE_IDS})")
        else:
            conditions, more = _analysis_where(f, "a")
            where.append("session_id IN (SELECT a.session_id FROM session_analysis a WHERE "
                         + " AND ".join(conditions) + ")")
            params += more
        return where, params
    if f.state == "ended" or _probed(f):
        conditions, more = _analysis_where(f, "a")
        where.append("EXISTS (SELECT 1 FROM session_analysis a WHERE a.session_id ="
                     " sessions.session_id AND " + " AND ".join(conditions) + ")")
        params += more
    elif f.state is not None:  # active: ended sessions left out; not analysed yet counts
        where.append("NOT EXISTS (SELECT 1 FROM session_analysis a WHERE a.session_id ="
                     " sessions.session_id AND a.state = 'ended')")
    return where, params


def user_where(f: UserFilter) -> tuple[list[str], list[Any]]:
    """SQL conditions of a user filter: active in the range means last seen at or after
    ``from``, first seen before ``to``."""
    where: list[str] = []
    params: list[Any] = []
    if f.user_id is not None:
        where.append("user_id = ?")
        params.append(f.user_id)
    if f.from_ns is not None:
        where.append("last_seen_ns >= ?")
        params.append(f.from_ns)
    if f.to_ns is not None:
        where.append("first_seen_ns < ?")
        params.append(f.to_ns)
    if f.user_class is not None:  # a probe by key: a page walks its sort index
        where.append("EXISTS (SELECT 1 FROM user_classes c WHERE c.label = ?"
                     " AND c.user_id = users.user_id)")
        params.append(f.user_class)
    _having_task("user_id", "users.user_id", f.metadata, where, params)
    return where, params


def _label_only(f: TaskFilter) -> str | None:
    """The label of ``f`` if it is an evaluation label alone (its total:
    ``_count_label``), else None."""
    alone = (f.event is None and f.user_id is None and f.session_id is None
             and f.from_ns is None and f.to_ns is None and not task_where(f)[0])
    return f.evaluation if alone and f.evaluation in EVALUATION_LABELS else None


def _clause(where: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


def user_rows(conn: sqlite3.Connection, rollups: Sequence[Sequence[Any]]) -> list[UserRow]:
    """Users with the averages over their sessions (through ``sessions_by_user``)."""
    if not rollups:
        return []
    ids = [r[0] for r in rollups]
    stats: dict[str, tuple[float, float]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for user_id, avg_duration, avg_tasks in conn.execute(
            "SELECT user_id, avg(end_ns - start_ns), avg(task_count) FROM sessions"
            f" WHERE user_id IN ({','.join('?' * len(chunk))}) GROUP BY user_id",
            chunk,
        ):
            stats[user_id] = (avg_duration, avg_tasks)
    out = []
    for r in rollups:
        avg_duration, avg_tasks = stats.get(r[0], (None, None))
        out.append(UserRow(UserRollup(*r), avg_duration, avg_tasks))
    return out


class SQLiteViews:
    """``store.api.ViewReader`` over ``self.conn`` (set by ``SQLiteReader``)."""

    conn: sqlite3.Connection

    def data_version(self) -> float:
        """The sum of the ingest counters, one of which counts write requests."""
        return float(self.conn.execute("SELECT total(value) FROM counters").fetchone()[0])

    # -- shared ------------------------------------------------------------------------

    def _page(self, *, columns: str, table: str, id_column: str, sorts: dict[str, str],
              where: list[str], params: list[Any], page: Page,
              scan: tuple[list[str], list[Any]] = ([], []), window: int = 0,
              ) -> tuple[list[Any], Any, Any, bool]:
        """Rows of one page (tuples, the sort value last), the next page's cursor,
        ``Listing.searched_to``, and whether the search was bounded by a window.

        ``scan``: conditions no index answers, checked on the rows ``where`` yields;
        those are then searched ``window`` rows at most, from the cursor on, so that a
        rare match costs one window per page, not a walk of the whole table. Unbounded
        (fewer candidates than a window), its total costs no more than the page."""
        expr = sorts.get(page.sort)
        if expr is None:
            raise BadRequest(f"sort: must be one of {', '.join(sorts)}, got {page.sort!r}")
        direction = "DESC" if page.descending else "ASC"
        where = list(where)
        params = list(params)
        offset = page.offset
        if page.cursor is not None:
            value, row_id = page.cursor
            op = "<" if page.descending else ">"
            if expr == id_column:
                where.append(f"{id_column} {op} ?")
                params.append(row_id)
            else:
                where.append(f"({expr}, {id_column}) {op} (?, ?)")
                params += [value, row_id]
            offset = 0
        order = f"{expr} {direction}"
        if expr != id_column:
            order += f", {id_column} {direction}"
        searched_to = bound_id = None
        scan_where, scan_params = scan
        if scan_where:
            bound = self.conn.execute(
                f"SELECT {expr}, {id_column} FROM {table}{_clause(where)} ORDER BY {order}"
                " LIMIT 1 OFFSET ?", [*params, window - 1]).fetchone()
            if bound is not None:  # more rows than a window: search down to its last
                searched_to, bound_id = bound
                op = ">=" if page.descending else "<="
                where.append(f"{id_column} {op} ?" if expr == id_column
                             else f"({expr}, {id_column}) {op} (?, ?)")
                params += [bound_id] if expr == id_column else [searched_to, bound_id]
            where += scan_where
            params += scan_params
        rows = self.conn.execute(
            f"SELECT {columns}, {expr} FROM {table}{_clause(where)} ORDER BY {order}"
            " LIMIT ? OFFSET ?",
            [*params, page.limit + 1, offset],
        ).fetchall()
        next_cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            next_cursor = (rows[-1][-1], rows[-1][0])
            searched_to = None
        elif searched_to is not None:
            next_cursor = (searched_to, bound_id)
        return [row[:-1] for row in rows], next_cursor, searched_to, bound_id is not None

    def _count(self, table: str, where: list[str], params: list[Any]) -> int:
        return int(self.conn.execute(
            f"SELECT count(*) FROM {table}{_clause(where)}", params).fetchone()[0])

    # -- tasks -------------------------------------------------------------------------

    def _positioned(self, row: Sequence[Any]) -> TaskRow:
        """A task with its 1-based rank in its session and whether it is the last."""
        task = _task(row, None, None)
        record = task.task
        if record.session_id is None:
            return task
        before, total = self.conn.execute(
            "SELECT"
            " (SELECT count(*) FROM tasks WHERE session_id = ?1"
            "  AND (start_ns, task_id) < (?2, ?3)),"
            " (SELECT count(*) FROM tasks WHERE session_id = ?1)",
            (record.session_id, record.start_ns, record.task_id),
        ).fetchone()
        return task._replace(position=before + 1, is_last=before + 1 == total)

    def get_task(self, task_id: str) -> TaskRow | None:
        row = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else self._positioned(row)

    def list_tasks(self, where: TaskFilter, page: Page, *,
                   with_total: bool = True) -> Listing[TaskRow]:
        conditions: list[str] = []
        params: list[Any] = []
        # With an event or evaluation filter the page is read through that index
        # (task_events or task_analysis_by_label, by start), joined to the tasks. Its
        # total counts that index alone unless a condition is on the task (user,
        # session): tasks are never deleted and are analysed only once stored, so every
        # row of task_events / task_analysis has its task.
        table, columns, sorts, id_column, t = "tasks", _TASK_COLUMNS, _TASK_SORT_SQL, "task_id", ""
        count_table = table
        if where.event is not None or where.evaluation is not None:
            driver = ("task_events d" if where.event is not None else "task_analysis d")
            table = f"{driver} JOIN tasks t ON t.task_id = d.task_id"
            count_table = driver
            columns, sorts, id_column, t = _TASK_COLUMNS_T, _DRIVEN_SORT_SQL, "d.task_id", "t."
            if where.event is not None:
                conditions.append("d.name = ?")
                params.append(where.event)
                if where.evaluation is not None:
                    conditions.append("EXISTS (SELECT 1 FROM task_analysis a"
                                      " WHERE a.task_id = d.task_id AND a.eval_label = ?)")
                    params.append(where.evaluation)
            else:
                conditions.append("d.eval_label = ?")
                params.append(where.evaluation)
        if where.user_id is not None:
            conditions.append(f"{t}user_id = ?")
            params.append(where.user_id)
            count_table = table
        if where.session_id is not None:
            conditions.append(f"{t}session_id = ?")
            params.append(where.session_id)
            count_table = table
        _time_filter(sorts["start_time"], where.from_ns, where.to_ns, conditions, params)
        scan = task_where(where, t)
        rows, next_cursor, searched_to, bounded = self._page(
            columns=columns, table=table, id_column=id_column, sorts=sorts,
            where=conditions, params=params, page=page, scan=scan, window=TASK_WINDOW,
        )
        total = None
        if with_total and not bounded:
            label = _label_only(where)
            if scan[0]:  # fewer candidates than a window: counted as cheaply as searched
                count_table = table
            total = (self._count_label(label) if label is not None
                     else self._count(count_table, [*conditions, *scan[0]],
                                      [*params, *scan[1]]))
        return Listing([self._positioned(r) for r in rows], total, next_cursor, searched_to)

    def _count_label(self, label: str) -> int:
        """The tasks evaluated ``label``: the per-position counts (``position_stats``,
        kept with every task analysis that has a position) and those without one."""
        return self._scalar(
            f"SELECT (SELECT total({label}) FROM position_stats) + (SELECT count(*)"
            " FROM task_analysis WHERE eval_label = ? AND position IS NULL)", [label])

    def session_tasks(self, session_id: str, limit: int, offset: int = 0) -> list[TaskRow]:
        total = self.conn.execute(
            "SELECT count(*) FROM tasks WHERE session_id = ?", (session_id,)).fetchone()[0]
        rows = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE session_id = ?"
            " ORDER BY start_ns, task_id LIMIT ? OFFSET ?",
            (session_id, limit, offset),
        ).fetchall()
        return [_task(r, offset + i + 1, offset + i + 1 == total) for i, r in enumerate(rows)]

    def user_activity(self, user_id: str) -> list[tuple[int, int]]:
        return [(d, n) for d, n in self.conn.execute(
            f"SELECT {utc_day_sql('start_ns')} AS day, count(*) FROM tasks WHERE user_id = ?"
            " GROUP BY day ORDER BY day", (user_id,))]

    def user_tasks(self, user_id: str, limit: int) -> list[TaskRow]:
        rows = self.conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM tasks WHERE user_id = ?"
            " ORDER BY start_ns DESC, task_id DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [self._positioned(r) for r in rows]

    # -- sessions ----------------------------------------------------------------------

    def list_sessions(self, where: SessionFilter, page: Page) -> Listing[SessionRollup]:
        total: int | None
        scan: tuple[list[str], list[Any]] = ([], [])
        if where.metadata:  # searched a window at a time (``_page``)
            _having_task("session_id", "sessions.session_id", where.metadata, *scan)
            where = replace(where, metadata=())
        if where.state is None and not _probed(where):
            total = self._count_sessions(where)
            conditions, params = session_where(where)
        else:
            everything = self._scalar("SELECT count(*) FROM sessions", [])
            rollup, _ = _rollup_where(where)
            few = everything // SPARSE_SHARE
            ids = None
            if where.state == "active" and not _probed(where) and not rollup:
                # the active ones, up to a few (past that, a walk fills a page sooner)
                ids = [s for (s,) in self.conn.execute(f"{_ACTIVE_IDS} LIMIT ?", (few + 1,))]
            if ids is not None and len(ids) <= few:
                total = len(ids)
                conditions = ["session_id IN (SELECT value FROM json_each(?))"]
                params = [_dumps(ids)]
            else:
                total = self._count_sessions(where)
                conditions, params = session_where(where, sparse=total < few)
        rows, next_cursor, searched_to, bounded = self._page(
            columns=_SESSION_COLUMNS, table="sessions", id_column="session_id",
            sorts=_SESSION_SORT_SQL, where=conditions, params=params, page=page,
            scan=scan, window=SESSION_WINDOW,
        )
        if scan[0]:
            total = None if bounded else self._count(
                "sessions", [*conditions, *scan[0]], [*params, *scan[1]])
        return Listing([SessionRollup(*r) for r in rows], total, next_cursor, searched_to)

    def _count_sessions(self, f: SessionFilter) -> int:
        """The sessions of ``f`` (``session_where``), counted from the smaller side.

        With an end reason (a few sessions): its ``session_analysis`` rows, each probed
        in ``sessions``. With a user or a time range: those sessions, each probed in
        ``session_analysis``. A state alone (most sessions): ended is the ended rows
        counted on an index, less those whose session is gone (a replaced task can empty
        a session, whose analysis stays), found by one merge of two ordered indexes;
        active is the sessions less the ended ones, by one such merge."""
        rollup, params = _rollup_where(f)
        if f.state is None and not _probed(f):
            return self._count("sessions", rollup, params)
        if _probed(f):
            conditions, more = _analysis_where(f, "a")
            probe, probe_params = _rollup_where(f, "s.")
            return self._scalar(
                "SELECT count(*) FROM session_analysis a WHERE " + " AND ".join(conditions)
                + " AND EXISTS (SELECT 1 FROM sessions s WHERE "
                + " AND ".join(["s.session_id = a.session_id", *probe]) + ")",
                [*more, *probe_params])
        if rollup:
            return self._count("sessions", *session_where(f))
        ended = self._scalar("SELECT count(*) FROM session_analysis WHERE state = 'ended'", [])
        if f.state == "active":
            return self._scalar("SELECT count(*) FROM sessions", []) - ended
        return ended

    def _scalar(self, sql: str, params: Sequence[Any]) -> int:
        return int(self.conn.execute(sql, params).fetchone()[0])

    def get_session(self, session_id: str) -> SessionRollup | None:
        row = self.conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?", (session_id,)
        ).fetchone()
        return None if row is None else SessionRollup(*row)

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRollup]:
        rows = self.conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = ?"
            " ORDER BY start_ns DESC, session_id DESC LIMIT ?",
            (user_id, limit),
        ).fetchall()
        return [SessionRollup(*r) for r in rows]

    # -- users -------------------------------------------------------------------------

    def list_users(self, where: UserFilter, page: Page) -> Listing[UserRow]:
        scan: tuple[list[str], list[Any]] = ([], [])
        if where.metadata:  # searched a window at a time (``_page``)
            _having_task("user_id", "users.user_id", where.metadata, *scan)
            where = replace(where, metadata=())
        conditions, params = user_where(where)
        rows, next_cursor, searched_to, bounded = self._page(
            columns=_USER_COLUMNS, table="users", id_column="user_id", sorts=_USER_SORT_SQL,
            where=conditions, params=params, page=page, scan=scan, window=USER_WINDOW,
        )
        total = None if bounded else self._count(
            "users", [*conditions, *scan[0]], [*params, *scan[1]])
        return Listing(user_rows(self.conn, rows), total, next_cursor, searched_to)

    def get_user(self, user_id: str) -> UserRow | None:
        row = self.conn.execute(
            f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)).fetchone()
        return None if row is None else user_rows(self.conn, [row])[0]
