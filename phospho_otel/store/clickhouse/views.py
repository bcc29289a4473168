"""The ClickHouse backend's ``ViewReader``: sessions, users and tasks by id and as pages,
read from the rollups merged at read (``rollups``).

One session's or user's reads only touch its tasks (found through ``task_keys``); lists
aggregate every task of the snapshot, then sort and page (keyset cursor: the last row's
sort value and id). A task's ``position`` is its 1-based rank in its session by
``(start_ns, task_id)``, computed from the session's tasks, one query per page.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from clickhouse_driver import Client

from phospho_otel.errors import BadRequest
from phospho_otel.model.records import TaskFeedback, TaskRecord
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.api import (
    METADATA_KEY_FORBIDDEN,
    SESSION_ANALYSIS_SORTS,
    SESSION_SORTS,
    TASK_ANALYSIS_SORTS,
    TASK_SORTS,
    USER_ANALYSIS_SORTS,
    USER_SORTS,
    Listing,
    Page,
    SessionFilter,
    TaskFilter,
    TaskRow,
    UserFilter,
    UserRow,
)
from phospho_otel.store.clickhouse.analysis_sql import (
    USER_FIGURE_SORTS,
    session_analysis_conditions,
    task_analysis_conditions,
    user_class_condition,
    with_user_figures,
)
from phospho_otel.store.clickhouse.rollup_store import (
    DIRTY_LIMIT,
    Touched,
    literal,
    stored_sessions_sql,
    stored_users_sql,
    touched,
)
from phospho_otel.store.clickhouse.rollups import (
    TASK_COLUMNS,
    sessions_sql,
    tasks_sql,
    users_sql,
)

__all__ = ["NS_PER_DAY", "ClickHouseViews", "session_conditions", "task_conditions",
           "user_conditions", "user_row", "utc_day_sql"]

_SESSION_SORT_SQL = {
    "start_time": "start_ns",
    "end_time": "end_ns",
    "task_count": "task_count",
    "duration_s": "(end_ns - start_ns)",
    "session_id": "session_id",
    # the insights' figures: refused before any query (``list_sessions``)
    **dict.fromkeys(SESSION_ANALYSIS_SORTS, "session_id"),
}
NS_PER_DAY = 86_400 * 1_000_000_000


def utc_day_sql(column: str) -> str:
    """SQL for the UTC day (days since the epoch, floored, also before 1970) of a
    nanosecond time column."""
    return (f"(intDiv({column}, {NS_PER_DAY})"
            f" - if(modulo({column}, {NS_PER_DAY}) < 0, 1, 0))")


_USER_SORT_SQL = {
    "last_seen": "last_seen_ns",
    "first_seen": "first_seen_ns",
    "task_count": "task_count",
    "session_count": "session_count",
    "user_id": "user_id",
    # the insights' figures, joined for these sorts only (``list_users``)
    **USER_FIGURE_SORTS,
}
_TASK_SORT_SQL = {"start_time": "start_ns",
                  # the insights' figures: refused before any query (``list_tasks``)
                  **dict.fromkeys(TASK_ANALYSIS_SORTS, "task_id")}
assert tuple(_SESSION_SORT_SQL) == SESSION_SORTS and tuple(_USER_SORT_SQL) == USER_SORTS
assert tuple(_TASK_SORT_SQL) == TASK_SORTS

_RECORD = len(TaskRecord._fields)


def _refuse_figure_sort(page: Page, figures: tuple[str, ...], listed: str) -> None:
    """``BadRequest`` for a sort by an analysis figure this backend cannot sort by yet."""
    if page.sort in figures:
        raise BadRequest(f"sort: {listed} sorted by {page.sort} need the insights' figures"
                         " per row, which the clickhouse store cannot sort by yet; use the"
                         " SQLite store to sort by it")
_USER_FIELDS = len(UserRollup._fields)


def _task(row: Sequence[Any], position: int | None, is_last: bool | None) -> TaskRow:
    flag = row[_RECORD:_RECORD + 4]
    record = list(row[:_RECORD])
    record[1] = bytes.fromhex(record[1])
    record[2] = bytes.fromhex(record[2])
    return TaskRow(TaskRecord._make(record),
                   None if flag[0] is None else TaskFeedback._make(flag), position, is_last)


def user_row(row: Sequence[Any]) -> UserRow:
    """A ``users_sql`` row as a ``UserRow`` (averages over the sessions owned)."""
    rollup = UserRollup._make(row[:_USER_FIELDS])
    duration, tasks = row[_USER_FIELDS:_USER_FIELDS + 2]
    owned = rollup.session_count
    if not owned:
        return UserRow(rollup, None, None)
    return UserRow(rollup, duration / owned, tasks / owned)


def _time(column: str, from_ns: int | None, to_ns: int | None, where: list[str],
          params: dict[str, Any]) -> None:
    if from_ns is not None:
        where.append(f"{column} >= %(from_ns)s")
        params["from_ns"] = from_ns
    if to_ns is not None:
        where.append(f"{column} < %(to_ns)s")
        params["to_ns"] = to_ns


def _metadata_match(pairs: Sequence[tuple[str, str]], where: list[str],
                    params: dict[str, Any]) -> None:
    """Conditions on ``tasks_sql``'s ``metadata``: the object has each key with that text
    (``store.api.METADATA_TEXT``). ClickHouse 18.16 has no JSON parser: ``visitParam*``
    finds the key's first ``"key":`` in the text (the object is flat as extraction writes
    it; a nested value is JSON text in a string)."""
    for i, (key, value) in enumerate(pairs):
        if not key or any(c in METADATA_KEY_FORBIDDEN for c in key):
            raise BadRequest(f"metadata.{key}: not a metadata key")
        k, v = f"meta_key_{i}", f"meta_value_{i}"
        raw = f"replaceRegexpAll(visitParamExtractRaw(metadata, %({k})s), '^\\\\s+|\\\\s+$', '')"
        where.append(f"visitParamHas(metadata, %({k})s) AND if(startsWith({raw}, '\"'),"
                     f" visitParamExtractString(metadata, %({k})s), {raw}) = %({v})s")
        params[k], params[v] = key, value


def task_conditions(f: TaskFilter) -> tuple[list[str], dict[str, Any]]:
    """Conditions (on ``tasks_sql``'s columns) of a task filter's metadata, text and flag;
    the text is compared with ASCII letters case-insensitive, as on SQLite."""
    where: list[str] = []
    params: dict[str, Any] = {}
    _metadata_match(f.metadata, where, params)
    if f.text is not None:
        where.append("(positionCaseInsensitive(ifNull(input, ''), %(text)s) > 0"
                     " OR positionCaseInsensitive(ifNull(output, ''), %(text)s) > 0)")
        params["text"] = f.text
    if f.flag == "none":
        where.append("isNull(flag)")
    elif f.flag is not None:
        where.append("flag = %(flag)s")
        params["flag"] = f.flag
    return where, params


def session_conditions(f: SessionFilter) -> tuple[list[str], dict[str, Any]]:
    """Conditions (on ``sessions_sql``'s columns) and parameters of a session filter's
    user and time range (its analysis fields: ``ClickHouseViews.session_where``)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.user_id is not None:
        where.append("user_id = %(user_id)s")
        params["user_id"] = f.user_id
    _time("start_ns", f.from_ns, f.to_ns, where, params)
    return where, params


def user_conditions(f: UserFilter) -> tuple[list[str], dict[str, Any]]:
    """Conditions of a user filter: active in the range means last seen at or after
    ``from``, first seen before ``to`` (its class: ``ClickHouseViews.user_where``)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if f.user_id is not None:
        where.append("user_id = %(user_id)s")
        params["user_id"] = f.user_id
    if f.from_ns is not None:
        where.append("last_seen_ns >= %(from_ns)s")
        params["from_ns"] = f.from_ns
    if f.to_ns is not None:
        where.append("first_seen_ns < %(to_ns)s")
        params["to_ns"] = f.to_ns
    return where, params


def clause(where: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


class ClickHouseViews:
    """``store.api.ViewReader`` over ``self.client`` at snapshot ``self.visible`` (set by
    ``ClickHouseReader``)."""

    client: Client
    db: str
    visible: str
    version: float
    analysed: str
    """The condition selecting the snapshot's committed analysis batches."""
    users_run: str
    """The SQL of the snapshot's latest classification batch."""
    snapshot: int
    """The snapshot's largest batch."""
    stored_rollups: bool
    """Read session and user rollups from their stored rows (``rollup_store``); False:
    compute them all from the tasks at read."""
    unfolded: tuple[int, ...]
    """The snapshot's batches that no fold at or before it has folded."""

    def data_version(self) -> float:
        return self.version

    # -- filters -------------------------------------------------------------------------

    def session_where(self, f: SessionFilter) -> tuple[list[str], dict[str, Any]]:
        """Conditions on ``sessions_sql``'s columns of every field of a session filter
        but its metadata."""
        where, params = session_conditions(f)
        more, more_params = session_analysis_conditions(f, self.db, self.analysed)
        return [*where, *more], {**params, **more_params}

    def user_where(self, f: UserFilter) -> tuple[list[str], dict[str, Any]]:
        """Conditions on ``users_sql``'s columns of every field of a user filter but its
        metadata."""
        where, params = user_conditions(f)
        more, more_params = user_class_condition(f, self.db, self.users_run)
        return [*where, *more], {**params, **more_params}

    # -- sources -------------------------------------------------------------------------

    def _keyed(self, key: str, param: str) -> str:
        """A ``task_filter``: the tasks that ever had this session or user id."""
        return (f"task_id IN (SELECT task_id FROM {self.db}.task_keys WHERE key = '{key}'"
                f" AND value = %({param})s)")

    @cached_property
    def dirty(self) -> Touched | None:
        """The ids the stored rollups do not cover at this snapshot (read live), or None:
        compute every rollup live (stored rollups off, or too many ids)."""
        if not self.stored_rollups or len(self.unfolded) > DIRTY_LIMIT:
            return None
        ids = touched(self.client, self.db, self.unfolded)
        if max(len(ids.sessions), len(ids.users)) > DIRTY_LIMIT:
            return None
        return ids

    def _clean(self, kind: str, key: str) -> bool:
        """Whether session or user (``kind``) ``key`` is read from its stored row."""
        dirty = self.dirty
        return dirty is not None and key not in getattr(dirty, kind)

    def sessions(self, task_filter: str = "") -> str:
        """Every session's rollup; with ``task_filter``, computed live from those tasks."""
        dirty = self.dirty
        if task_filter or dirty is None:
            return sessions_sql(self.db, self.visible, task_filter)
        if not dirty.sessions:
            return stored_sessions_sql(self.db, self.snapshot)
        these = literal(dirty.sessions)
        live = sessions_sql(self.db, self.visible, self._in_values("session", these))
        return (f"{stored_sessions_sql(self.db, self.snapshot, f'session_id NOT IN {these}')}"
                f" UNION ALL SELECT * FROM ({live}) WHERE session_id IN {these}")

    def _in_values(self, key: str, values: str) -> str:
        """A ``task_filter``: the tasks that ever had one of these session or user ids
        (``values``: an SQL tuple or subquery)."""
        return (f"task_id IN (SELECT task_id FROM {self.db}.task_keys WHERE key = '{key}'"
                f" AND value IN {values})")

    def _sessions_of_user(self, user_param: str) -> str:
        """The ids of the sessions that ever had a task of the user (an SQL subquery)."""
        return (f"(SELECT value FROM {self.db}.task_keys WHERE key = 'session' AND"
                f" {self._keyed('user', user_param)})")

    def _live_users(self, user_param: str | None = None, users: str = "") -> str:
        """Users' rollups computed from their tasks: every user's, one (``user_param``),
        or those of an SQL tuple (``users``)."""
        if user_param is None and not users:
            return users_sql(self.db, self.visible)
        mine = (self._keyed("user", user_param) if user_param is not None
                else self._in_values("user", users))
        owned = self._in_values(
            "session", f"(SELECT value FROM {self.db}.task_keys WHERE key = 'session'"
                       f" AND {mine})")
        return users_sql(self.db, self.visible, mine, owned)

    def users(self, user_param: str | None = None) -> str:
        """Every user's rollup, or (``user_param``: the parameter holding a user id) one."""
        dirty = self.dirty
        if dirty is None:
            return self._live_users(user_param)
        if user_param is not None:
            # (the stored row is read when the user is clean: ``_user_source``)
            return self._live_users(user_param)
        if not dirty.users:
            return stored_users_sql(self.db, self.snapshot)
        these = literal(dirty.users)
        return (f"{stored_users_sql(self.db, self.snapshot, f'user_id NOT IN {these}')}"
                f" UNION ALL SELECT * FROM ({self._live_users(users=these)})"
                f" WHERE user_id IN {these}")

    def _user_source(self, user_id: str, user_param: str) -> str:
        """One user's rollup: its stored row when clean, else computed live."""
        if self._clean("users", user_id):
            return stored_users_sql(self.db, self.snapshot, f"user_id = %({user_param})s")
        return self._live_users(user_param)

    def _having_task(self, column: str, pairs: Sequence[tuple[str, str]],
                     where: list[str], params: dict[str, Any]) -> None:
        """The condition "one of the session's / user's (``column``) tasks has these
        metadata values"."""
        if not pairs:
            return
        conditions: list[str] = [f"isNotNull({column})"]
        _metadata_match(pairs, conditions, params)
        where.append(f"{column} IN (SELECT assumeNotNull({column}) FROM"
                     f" ({tasks_sql(self.db, self.visible)}) WHERE {' AND '.join(conditions)})")

    def _rows(self, sql: str, params: dict[str, Any] | None = None) -> list[Any]:
        return list(self.client.execute(sql, params or {}))

    # -- shared ------------------------------------------------------------------------

    def _page(self, *, source: str, id_column: str, sorts: dict[str, str], where: list[str],
              params: dict[str, Any], page: Page) -> tuple[list[Any], Any]:
        """Rows of one page (the sort value last), and the next page's cursor."""
        expr = sorts.get(page.sort)
        if expr is None:
            raise BadRequest(f"sort: must be one of {', '.join(sorts)}, got {page.sort!r}")
        direction = "DESC" if page.descending else "ASC"
        where = list(where)
        params = dict(params)
        offset = page.offset
        if page.cursor is not None:
            value, row_id = page.cursor
            op = "<" if page.descending else ">"
            params["cursor_id"] = row_id
            if expr == id_column:
                where.append(f"{id_column} {op} %(cursor_id)s")
            else:
                params["cursor_value"] = value
                where.append(f"({expr}, {id_column}) {op} (%(cursor_value)s, %(cursor_id)s)")
            offset = 0
        order = f"{expr} {direction}"
        if expr != id_column:
            order += f", {id_column} {direction}"
        rows = self._rows(
            f"SELECT *, {expr} AS _sort FROM ({source}){clause(where)} ORDER BY {order}"
            f" LIMIT {int(offset)}, {int(page.limit) + 1}", params)
        next_cursor = None
        if len(rows) > page.limit:
            rows = rows[: page.limit]
            next_cursor = (rows[-1][-1], rows[-1][0])
        return [row[:-1] for row in rows], next_cursor

    def _count(self, source: str, where: list[str], params: dict[str, Any]) -> int:
        return int(self._rows(f"SELECT count() FROM ({source}){clause(where)}", params)[0][0])

    # -- tasks -------------------------------------------------------------------------

    def _positioned(self, rows: Sequence[Sequence[Any]]) -> list[TaskRow]:
        """Tasks with their 1-based rank in their session and whether it is the last."""
        tasks = [_task(r, None, None) for r in rows]
        sessions = sorted({t.task.session_id for t in tasks if t.task.session_id is not None})
        ranks: dict[str, tuple[int, bool]] = {}
        if sessions:
            in_sessions = (f"task_id IN (SELECT task_id FROM {self.db}.task_keys"
                           " WHERE key = 'session' AND value IN %(sessions)s)")
            members = self._rows(
                f"SELECT session_id, task_id FROM ({tasks_sql(self.db, self.visible, in_sessions)})"
                " WHERE session_id IN %(sessions)s ORDER BY session_id, start_ns, task_id",
                {"sessions": tuple(sessions)})
            counts: dict[str, int] = {}
            for session_id, _ in members:
                counts[session_id] = counts.get(session_id, 0) + 1
            position: dict[str, int] = {}
            for session_id, task_id in members:
                n = position[session_id] = position.get(session_id, 0) + 1
                ranks[task_id] = (n, n == counts[session_id])
        out = []
        for t in tasks:
            if t.task.session_id is None:
                out.append(t)
            else:
                n, last = ranks[t.task.task_id]
                out.append(t._replace(position=n, is_last=last))
        return out

    def get_task(self, task_id: str) -> TaskRow | None:
        rows = self._rows(f"SELECT * FROM ({tasks_sql(self.db, self.visible, 'task_id = %(id)s')})",
                          {"id": task_id})
        return self._positioned(rows)[0] if rows else None

    def list_tasks(self, where: TaskFilter, page: Page, *,
                   with_total: bool = True) -> Listing[TaskRow]:
        _refuse_figure_sort(page, TASK_ANALYSIS_SORTS, "tasks")
        conditions, params = task_analysis_conditions(where, self.db, self.analysed)
        task_filter = ""
        if where.user_id is not None:
            conditions.append("user_id = %(user_id)s")
            params["user_id"] = where.user_id
            task_filter = self._keyed("user", "user_id")
        if where.session_id is not None:
            conditions.append("session_id = %(session_id)s")
            params["session_id"] = where.session_id
            task_filter = self._keyed("session", "session_id")
        _time("start_ns", where.from_ns, where.to_ns, conditions, params)
        on_task, more = task_conditions(where)
        conditions += on_task
        params.update(more)
        source = tasks_sql(self.db, self.visible, task_filter)
        rows, next_cursor = self._page(source=source, id_column="task_id", sorts=_TASK_SORT_SQL,
                                       where=conditions, params=params, page=page)
        total = self._count(source, conditions, params) if with_total else None
        return Listing(self._positioned(rows), total, next_cursor)

    def session_tasks(self, session_id: str, limit: int, offset: int = 0) -> list[TaskRow]:
        rows = self._rows(
            f"SELECT * FROM ({tasks_sql(self.db, self.visible, self._keyed('session', 'sid'))})"
            " WHERE session_id = %(sid)s ORDER BY start_ns, task_id", {"sid": session_id})
        total = len(rows)
        return [_task(r, i + 1, i + 1 == total)
                for i, r in enumerate(rows) if offset <= i < offset + limit]

    def user_activity(self, user_id: str) -> list[tuple[int, int]]:
        return [(int(d), int(n)) for d, n in self._rows(
            f"SELECT {utc_day_sql('start_ns')} AS day, count() FROM"
            f" ({tasks_sql(self.db, self.visible, self._keyed('user', 'uid'))})"
            " WHERE user_id = %(uid)s GROUP BY day ORDER BY day", {"uid": user_id})]

    def user_tasks(self, user_id: str, limit: int) -> list[TaskRow]:
        rows = self._rows(
            f"SELECT * FROM ({tasks_sql(self.db, self.visible, self._keyed('user', 'uid'))})"
            f" WHERE user_id = %(uid)s ORDER BY start_ns DESC, task_id DESC LIMIT {int(limit)}",
            {"uid": user_id})
        return self._positioned(rows)

    # -- sessions ----------------------------------------------------------------------

    def list_sessions(self, where: SessionFilter, page: Page) -> Listing[SessionRollup]:
        _refuse_figure_sort(page, SESSION_ANALYSIS_SORTS, "sessions")
        conditions, params = self.session_where(where)
        self._having_task("session_id", where.metadata, conditions, params)
        source = self.sessions()
        rows, next_cursor = self._page(source=source, id_column="session_id",
                                       sorts=_SESSION_SORT_SQL, where=conditions,
                                       params=params, page=page)
        return Listing([SessionRollup._make(r) for r in rows],
                       self._count(source, conditions, params), next_cursor)

    def get_session(self, session_id: str) -> SessionRollup | None:
        if self._clean("sessions", session_id):
            source = stored_sessions_sql(self.db, self.snapshot, "session_id = %(sid)s")
        else:
            source = self.sessions(self._keyed("session", "sid"))
        rows = self._rows(f"SELECT * FROM ({source}) WHERE session_id = %(sid)s",
                          {"sid": session_id})
        return SessionRollup._make(rows[0]) if rows else None

    def user_sessions(self, user_id: str, limit: int) -> list[SessionRollup]:
        rows = self._rows(
            f"SELECT * FROM ({self._user_sessions('uid')}) WHERE user_id = %(uid)s"
            f" ORDER BY start_ns DESC, session_id DESC LIMIT {int(limit)}", {"uid": user_id})
        return [SessionRollup._make(r) for r in rows]

    def _user_sessions(self, user_param: str) -> str:
        """The rollups of the sessions that ever had a task of the user (whose owner may
        be the user): stored rows of clean ones, live for dirty ones."""
        mine = self._sessions_of_user(user_param)
        dirty = self.dirty
        if dirty is None:
            return self.sessions(self._in_values("session", mine))
        if not dirty.sessions:
            return stored_sessions_sql(self.db, self.snapshot, f"session_id IN {mine}")
        these = literal(dirty.sessions)
        stored = stored_sessions_sql(self.db, self.snapshot,
                                     f"session_id IN {mine} AND session_id NOT IN {these}")
        live = self.sessions(self._in_values("session", these))
        return (f"{stored} UNION ALL SELECT * FROM ({live})"
                f" WHERE session_id IN {these} AND session_id IN {mine}")

    # -- users -------------------------------------------------------------------------

    def list_users(self, where: UserFilter, page: Page) -> Listing[UserRow]:
        conditions, params = self.user_where(where)
        self._having_task("user_id", where.metadata, conditions, params)
        source = (self.users() if where.user_id is None
                  else self._user_source(where.user_id, "user_id"))
        if page.sort in USER_ANALYSIS_SORTS:
            source = with_user_figures(source, self.db, self.analysed)
        rows, next_cursor = self._page(source=source, id_column="user_id", sorts=_USER_SORT_SQL,
                                       where=conditions, params=params, page=page)
        return Listing([user_row(r) for r in rows], self._count(source, conditions, params),
                       next_cursor)

    def get_user(self, user_id: str) -> UserRow | None:
        rows = self._rows(f"SELECT * FROM ({self._user_source(user_id, 'uid')})"
                          " WHERE user_id = %(uid)s", {"uid": user_id})
        return user_row(rows[0]) if rows else None


assert TASK_COLUMNS[:_RECORD] == TaskRecord._fields
