"""Read queries behind the session, user, task and insight views.

Every function takes an open ``sqlite3.Connection`` (``SQLiteStore.reader()`` gives one;
any connection to a file with ``schema.DDL`` works) and returns plain JSON-ready dicts:
times are ISO-8601 UTC strings, durations seconds. Nothing here writes.

Lists read the ``sessions`` / ``users`` rollups and ``tasks`` through their indexes
(``ORDER BY <indexed column>, <id> LIMIT``), never a full scan; insights aggregate the
``sessions`` rollup. A task's ``position`` is its 1-based rank in its session by
``(start_ns, task_id)``.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

__all__ = [
    "SESSION_SORTS",
    "TASK_SORTS",
    "USER_SORTS",
    "InvalidQuery",
    "Page",
    "data_version",
    "decode_cursor",
    "get_session",
    "get_task",
    "get_user",
    "iso_to_ns",
    "list_sessions",
    "list_tasks",
    "list_users",
    "ns_to_iso",
    "session_insights",
    "snapshot",
    "user_insights",
]

NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

SESSION_SORTS: dict[str, str] = {
    "start_time": "start_ns",
    "end_time": "end_ns",
    "task_count": "task_count",
    "duration_s": "(end_ns - start_ns)",
    "session_id": "session_id",
}
"""Sort keys of ``list_sessions`` -> SQL expression (each has an index ending in the id)."""

USER_SORTS: dict[str, str] = {
    "last_seen": "last_seen_ns",
    "first_seen": "first_seen_ns",
    "task_count": "task_count",
    "session_count": "session_count",
    "user_id": "user_id",
}
"""Sort keys of ``list_users`` -> SQL expression."""

TASK_SORTS: dict[str, str] = {
    "start_time": "start_ns",
}
"""Sort keys of ``list_tasks`` -> SQL expression."""


class InvalidQuery(ValueError):
    """A parameter the queries cannot honour (bad cursor, unknown sort key...)."""


# ----------------------------------------------------------------------------- conversions


def ns_to_iso(ns: int | None) -> str | None:
    """``1764082980123456789`` -> ``'2025-11-25T15:03:00.123456Z'`` (microseconds, UTC)."""
    if ns is None:
        return None
    dt = _EPOCH + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_to_ns(text: str) -> int:
    """Parse an ISO-8601 time (``Z`` or offset; naive means UTC; a bare date is midnight)."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidQuery(f"not an ISO-8601 time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    delta = dt - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000


def _seconds(ns: float | int | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_S, 6)


def _json_value(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


@contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the enclosed queries in one read transaction, so that they see one state."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def data_version(conn: sqlite3.Connection) -> float:
    """A number that grows with every write to the store (the sum of the ingest
    ``counters``, one of which counts write requests): equal numbers, same data."""
    return float(conn.execute("SELECT total(value) FROM counters").fetchone()[0])


# ----------------------------------------------------------------------------- pagination


@dataclass(frozen=True)
class Page:
    """Which slice of a list: sort key (a whitelisted name), direction, size, start.

    ``cursor`` (from a previous page's ``next_cursor``) wins over ``offset``.
    """

    sort: str
    descending: bool = True
    limit: int = 50
    offset: int = 0
    cursor: tuple[Any, str] | None = None


def encode_cursor(value: Any, row_id: str) -> str:
    """Opaque keyset cursor: the last row's sort value and id."""
    raw = json.dumps([value, row_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[Any, str]:
    """Inverse of ``encode_cursor``; ``InvalidQuery`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value, row_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise InvalidQuery("cursor: not a cursor returned by this API") from None
    if not isinstance(row_id, str) or not isinstance(value, (int, str, type(None))):
        raise InvalidQuery("cursor: not a cursor returned by this API")
    return value, row_id


def _paged(
    conn: sqlite3.Connection,
    *,
    columns: str,
    table: str,
    id_column: str,
    sorts: dict[str, str],
    where: list[str],
    params: list[Any],
    page: Page,
) -> tuple[list[sqlite3.Row], str | None]:
    """Rows of one page, and the cursor of the next one (None on the last page)."""
    if page.sort not in sorts:
        raise InvalidQuery(f"sort: must be one of {', '.join(sorts)}")
    expr = sorts[page.sort]
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
    sql = f"SELECT {columns}, {expr} AS _sort FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    order = f"{expr} {direction}"
    if expr != id_column:
        order += f", {id_column} {direction}"
    sql += f" ORDER BY {order} LIMIT ? OFFSET ?"
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    rows = cur.execute(sql, [*params, page.limit + 1, offset]).fetchall()
    next_cursor = None
    if len(rows) > page.limit:
        rows = rows[: page.limit]
        last = rows[-1]
        next_cursor = encode_cursor(last["_sort"], last[id_column])
    return rows, next_cursor


def _count(conn: sqlite3.Connection, table: str, where: list[str], params: list[Any]) -> int:
    sql = f"SELECT count(*) FROM {table}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return int(conn.execute(sql, params).fetchone()[0])


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
    cur = conn.cursor()
    cur.row_factory = sqlite3.Row
    return cur.execute(sql, params).fetchall()


def _time_filter(
    column: str, from_ns: int | None, to_ns: int | None, where: list[str], params: list[Any]
) -> None:
    if from_ns is not None:
        where.append(f"{column} >= ?")
        params.append(from_ns)
    if to_ns is not None:
        where.append(f"{column} < ?")
        params.append(to_ns)


# ----------------------------------------------------------------------------- tasks

_TASK_COLUMNS = (
    "task_id, trace_id, span_id, session_id, user_id, name, service_name, convention, input,"
    " output, raw_input, raw_output, metadata, start_ns, end_ns, status, flag, notes,"
    " flag_source"
)


def _task_dict(row: sqlite3.Row, position: int | None, is_last: bool | None) -> dict[str, Any]:
    trace_id = row["trace_id"]
    span_id = row["span_id"]
    metadata = _json_value(row["metadata"])
    return {
        "task_id": row["task_id"],
        "session_id": row["session_id"],
        "user_id": row["user_id"],
        "input": row["input"],
        "output": row["output"],
        "raw_input": _json_value(row["raw_input"]),
        "raw_output": _json_value(row["raw_output"]),
        "metadata": metadata if metadata is not None else {},
        "start_time": ns_to_iso(row["start_ns"]),
        "end_time": ns_to_iso(row["end_ns"]),
        "duration_s": _seconds(row["end_ns"] - row["start_ns"]),
        "status": row["status"],
        "flag": row["flag"],
        "notes": row["notes"],
        "flag_source": row["flag_source"],
        "position": position,
        "is_last": is_last,
        "name": row["name"],
        "service_name": row["service_name"],
        "convention": row["convention"],
        "trace_id": trace_id.hex() if isinstance(trace_id, bytes) else trace_id,
        "span_id": span_id.hex() if isinstance(span_id, bytes) else span_id,
    }


def _position(conn: sqlite3.Connection, row: sqlite3.Row) -> tuple[int | None, bool | None]:
    """1-based rank of a task in its session by (start_ns, task_id), and whether it is last."""
    if row["session_id"] is None:
        return None, None
    before, total = conn.execute(
        "SELECT"
        " (SELECT count(*) FROM tasks WHERE session_id = ?1 AND (start_ns, task_id) < (?2, ?3)),"
        " (SELECT count(*) FROM tasks WHERE session_id = ?1)",
        (row["session_id"], row["start_ns"], row["task_id"]),
    ).fetchone()
    return before + 1, before + 1 == total


def get_task(conn: sqlite3.Connection, task_id: str) -> dict[str, Any] | None:
    """One task, with its position in its session; None if unknown."""
    rows = _rows(conn, f"SELECT {_TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
    if not rows:
        return None
    return _task_dict(rows[0], *_position(conn, rows[0]))


def list_tasks(
    conn: sqlite3.Connection,
    *,
    page: Page,
    from_ns: int | None = None,
    to_ns: int | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
    with_total: bool = True,
) -> dict[str, Any]:
    """Tasks started in ``[from_ns, to_ns)``, optionally of one user or session."""
    where: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    if session_id is not None:
        where.append("session_id = ?")
        params.append(session_id)
    _time_filter("start_ns", from_ns, to_ns, where, params)
    rows, next_cursor = _paged(
        conn, columns=_TASK_COLUMNS, table="tasks", id_column="task_id", sorts=TASK_SORTS,
        where=where, params=params, page=page,
    )
    items = [_task_dict(r, *_position(conn, r)) for r in rows]
    result: dict[str, Any] = {"items": items, "next_cursor": next_cursor}
    if with_total:
        result["total"] = _count(conn, "tasks", where, params)
    return result


def _session_tasks(
    conn: sqlite3.Connection, session_id: str, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    total = conn.execute(
        "SELECT count(*) FROM tasks WHERE session_id = ?", (session_id,)
    ).fetchone()[0]
    rows = _rows(
        conn,
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE session_id = ?"
        " ORDER BY start_ns, task_id LIMIT ? OFFSET ?",
        (session_id, limit, offset),
    )
    items = [
        _task_dict(r, offset + i + 1, offset + i + 1 == total) for i, r in enumerate(rows)
    ]
    return items, int(total)


# ----------------------------------------------------------------------------- sessions

_SESSION_COLUMNS = (
    "session_id, user_id, task_count, start_ns, end_ns, first_task_id, first_input,"
    " last_task_id, last_input, last_output, last_status, success_count, failure_count,"
    " error_count"
)


def _session_dict(row: sqlite3.Row) -> dict[str, Any]:
    start, end = row["start_ns"], row["end_ns"]
    return {
        "session_id": row["session_id"],
        "user_id": row["user_id"],
        "task_count": row["task_count"],
        "start_time": ns_to_iso(start),
        "end_time": ns_to_iso(end),
        "duration_s": _seconds(end - start) if start is not None and end is not None else None,
        "first_task_id": row["first_task_id"],
        "first_input": row["first_input"],
        "last_task_id": row["last_task_id"],
        "last_input": row["last_input"],
        "last_output": row["last_output"],
        "last_status": row["last_status"],
        "success_count": row["success_count"],
        "failure_count": row["failure_count"],
        "error_count": row["error_count"],
    }


def _session_filters(
    from_ns: int | None, to_ns: int | None, user_id: str | None
) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    _time_filter("start_ns", from_ns, to_ns, where, params)
    return where, params


def list_sessions(
    conn: sqlite3.Connection,
    *,
    page: Page,
    from_ns: int | None = None,
    to_ns: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Sessions started in ``[from_ns, to_ns)``, optionally of one user."""
    where, params = _session_filters(from_ns, to_ns, user_id)
    rows, next_cursor = _paged(
        conn, columns=_SESSION_COLUMNS, table="sessions", id_column="session_id",
        sorts=SESSION_SORTS, where=where, params=params, page=page,
    )
    return {
        "items": [_session_dict(r) for r in rows],
        "total": _count(conn, "sessions", where, params),
        "next_cursor": next_cursor,
    }


def get_session(
    conn: sqlite3.Connection, session_id: str, *, task_limit: int = 1000, task_offset: int = 0
) -> dict[str, Any] | None:
    """One session with its tasks in order; None if unknown."""
    rows = _rows(conn, f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE session_id = ?",
                 (session_id,))
    if not rows:
        return None
    session = _session_dict(rows[0])
    session["tasks"], _ = _session_tasks(conn, session_id, task_limit, task_offset)
    return session


# ----------------------------------------------------------------------------- users

_USER_COLUMNS = (
    "user_id, task_count, session_count, first_seen_ns, last_seen_ns, success_count,"
    " failure_count, error_count"
)


def _user_dicts(conn: sqlite3.Connection, rows: Iterable[sqlite3.Row]) -> list[dict[str, Any]]:
    rows = list(rows)
    if not rows:
        return []
    ids = [r["user_id"] for r in rows]
    stats: dict[str, sqlite3.Row] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        marks = ",".join("?" * len(chunk))
        for s in _rows(
            conn,
            "SELECT user_id, count(*) AS n, avg(end_ns - start_ns) AS avg_duration,"
            " avg(task_count) AS avg_tasks FROM sessions"
            f" WHERE user_id IN ({marks}) GROUP BY user_id",
            chunk,
        ):
            stats[s["user_id"]] = s
    result = []
    for r in rows:
        s = stats.get(r["user_id"])
        judged = r["success_count"] + r["failure_count"]
        result.append({
            "user_id": r["user_id"],
            "task_count": r["task_count"],
            "session_count": r["session_count"],
            "first_seen": ns_to_iso(r["first_seen_ns"]),
            "last_seen": ns_to_iso(r["last_seen_ns"]),
            "avg_session_duration_s": _seconds(s["avg_duration"]) if s else None,
            "avg_tasks_per_session": round(s["avg_tasks"], 6) if s else None,
            "success_rate": round(r["success_count"] / judged, 6) if judged else None,
            "success_count": r["success_count"],
            "failure_count": r["failure_count"],
            "error_count": r["error_count"],
        })
    return result


def _users_active_in(where: list[str], params: list[Any], from_ns: int | None,
                     to_ns: int | None) -> None:
    """Add the filter "active in [from_ns, to_ns)": last seen at or after ``from``, first
    seen before ``to``."""
    if from_ns is not None:
        where.append("last_seen_ns >= ?")
        params.append(from_ns)
    if to_ns is not None:
        where.append("first_seen_ns < ?")
        params.append(to_ns)


def list_users(
    conn: sqlite3.Connection,
    *,
    page: Page,
    from_ns: int | None = None,
    to_ns: int | None = None,
    user_id: str | None = None,
) -> dict[str, Any]:
    """Users active in ``[from_ns, to_ns)``: last seen at or after ``from``, first seen
    before ``to``."""
    where: list[str] = []
    params: list[Any] = []
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    _users_active_in(where, params, from_ns, to_ns)
    rows, next_cursor = _paged(
        conn, columns=_USER_COLUMNS, table="users", id_column="user_id", sorts=USER_SORTS,
        where=where, params=params, page=page,
    )
    return {
        "items": _user_dicts(conn, rows),
        "total": _count(conn, "users", where, params),
        "next_cursor": next_cursor,
    }


def get_user(
    conn: sqlite3.Connection, user_id: str, *, limit: int = 100
) -> dict[str, Any] | None:
    """One user with their latest ``limit`` sessions and tasks (newest first); None if unknown."""
    rows = _rows(conn, f"SELECT {_USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
    if not rows:
        return None
    user = _user_dicts(conn, rows)[0]
    sessions = _rows(
        conn,
        f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE user_id = ?"
        " ORDER BY start_ns DESC, session_id DESC LIMIT ?",
        (user_id, limit),
    )
    user["sessions"] = [_session_dict(r) for r in sessions]
    tasks = _rows(
        conn,
        f"SELECT {_TASK_COLUMNS} FROM tasks WHERE user_id = ?"
        " ORDER BY start_ns DESC, task_id DESC LIMIT ?",
        (user_id, limit),
    )
    user["tasks"] = [_task_dict(r, *_position(conn, r)) for r in tasks]
    return user


# ----------------------------------------------------------------------------- insights


def _quantile_ns(
    conn: sqlite3.Connection, where: list[str], params: list[Any], n: int, q: float
) -> float | None:
    """The ``q`` quantile of session durations (linear interpolation between ranks)."""
    if n == 0:
        return None
    pos = q * (n - 1)
    lo = math.floor(pos)
    sql = "SELECT end_ns - start_ns FROM sessions"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY end_ns - start_ns LIMIT 2 OFFSET ?"
    values = [v for (v,) in conn.execute(sql, [*params, lo])]
    if not values:
        return None
    if len(values) == 1 or pos == lo:
        return float(values[0])
    return values[0] + (values[1] - values[0]) * (pos - lo)


def _sessions_per_day(
    conn: sqlite3.Connection, from_ns: int | None, to_ns: int | None, user_id: str | None
) -> list[dict[str, Any]]:
    """Sessions per UTC day, through an index on ``start_ns`` without sorting: a
    recursive query jumps from one non-empty day to the next (``min(start_ns)`` at or
    after the next midnight, one index probe each) and counts each day as a range."""
    where, params = _session_filters(from_ns, to_ns, user_id)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    first = conn.execute(f"SELECT min(start_ns) FROM sessions{clause}", params).fetchone()[0]
    if first is None:
        return []
    if first < 0:  # before 1970: SQL division truncates towards zero; group the slow way
        rows = conn.execute(
            f"SELECT start_ns / {NS_PER_DAY} AS day, count(*) FROM sessions{clause}"
            " GROUP BY day ORDER BY day",
            params,
        ).fetchall()
    else:
        # One lower and one upper bound per probe (max/min of the range and the day), so
        # that the index search starts at the day, not at ``from``.
        user = "user_id = :user AND " if user_id is not None else ""
        rows = conn.execute(
            "WITH RECURSIVE d(day) AS ("
            f" SELECT :first / {NS_PER_DAY}"
            f" UNION ALL SELECT (SELECT min(start_ns) FROM sessions WHERE {user}"
            f" start_ns >= max(:lo, (d.day + 1) * {NS_PER_DAY}) AND start_ns < :hi)"
            f" / {NS_PER_DAY} FROM d WHERE d.day IS NOT NULL)"
            f" SELECT day, (SELECT count(*) FROM sessions WHERE {user}"
            f" start_ns >= max(:lo, day * {NS_PER_DAY})"
            f" AND start_ns < min(:hi, (day + 1) * {NS_PER_DAY}))"
            " FROM d WHERE day IS NOT NULL",
            {"first": first, "user": user_id,
             "lo": -(2**63) if from_ns is None else from_ns,
             "hi": 2**63 - 1 if to_ns is None else to_ns},
        ).fetchall()
    return [
        {"date": ns_to_iso(day * NS_PER_DAY)[:10], "sessions": count}  # type: ignore[index]
        for day, count in rows
    ]


def _endings(
    conn: sqlite3.Connection, where: list[str], params: list[Any], top_inputs: int
) -> list[dict[str, Any]]:
    """The sessions' last tasks grouped by (feedback flag, status), each group with its
    ``top_inputs`` most frequent last inputs (ties by input, null first).

    ``last_flag``, ``last_status`` and ``last_input`` are rollup columns of ``sessions``:
    one GROUP BY over the covering index ``sessions_by_ending`` (in index order: no sort,
    no table rows, no look-up in ``tasks``), or over the filter's index and a sort when
    filtered; only one row per distinct (flag, status, input) comes to Python, which
    picks each group's top inputs."""
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: cheap
    flag = "last_flag"
    if not any(row[1] == "last_flag" for row in cur.execute("PRAGMA table_info(sessions)")):
        # a file from before last_flag, opened read-only (the store adds it at open)
        flag = "(SELECT flag FROM tasks WHERE task_id = sessions.last_task_id)"
    # Filtered: "+" keeps the planner on the filter's index (it would walk all of
    # sessions_by_ending, reading each row's start_ns or user_id from the table).
    plus = "+" if where else ""
    counts = cur.execute(
        f"SELECT {flag}, last_status, last_input, count(*) FROM sessions{clause}"
        f" GROUP BY {plus}{flag}, {plus}last_status, {plus}last_input",
        params,
    )
    totals: dict[tuple[Any, Any], int] = {}
    candidates: dict[tuple[Any, Any], list[tuple[int, bool, str, Any]]] = {}
    for flag, status, last_input, count in counts:
        key = (flag, status)
        totals[key] = totals.get(key, 0) + count
        # SQLite's order: count descending, then input with NULL first
        candidates.setdefault(key, []).append(
            (-count, last_input is not None, last_input or "", last_input))
    endings = [
        {
            "flag": flag,
            "status": status,
            "sessions": totals[(flag, status)],
            "top_inputs": [
                {"input": last_input, "sessions": -neg}
                for neg, _, _, last_input in heapq.nsmallest(top_inputs, entries)
            ],
        }
        for (flag, status), entries in candidates.items()
    ]
    endings.sort(key=lambda g: (-g["sessions"], str(g["flag"]), str(g["status"])))
    return endings


def session_insights(
    conn: sqlite3.Connection,
    *,
    from_ns: int | None = None,
    to_ns: int | None = None,
    user_id: str | None = None,
    top_inputs: int = 5,
) -> dict[str, Any]:
    """Figures over the sessions started in ``[from_ns, to_ns)``.

    ``session_count``, average / median / p90 duration, average tasks per session, the
    histogram of session lengths (in tasks), sessions per UTC day, and ``endings``: the
    sessions' last tasks grouped by (feedback flag, status), each with its most frequent
    last inputs.

    Cost at 100,000 sessions (``benchmarks/bench_views.py``): totals one scan of the
    rollup, histogram and quantiles index-only, sessions per day index range counts,
    endings one GROUP BY over an index of ``sessions``.
    """
    where, params = _session_filters(from_ns, to_ns, user_id)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    plus = "+" if where else ""
    n, avg_duration, avg_tasks, task_sum, successes, failures, errors = conn.execute(
        "SELECT count(*), avg(end_ns - start_ns), avg(task_count), total(task_count),"
        f" total(success_count), total(failure_count), total(error_count) FROM sessions{clause}",
        params,
    ).fetchone()
    histogram = [
        {"task_count": length, "sessions": count}
        for length, count in conn.execute(
            # Unfiltered: the task_count index, in order. Filtered: "+" keeps the planner
            # on the filter's index (it would walk all of sessions_by_task_count instead).
            f"SELECT task_count, count(*) FROM sessions{clause} GROUP BY {plus}task_count"
            f" ORDER BY {plus}task_count",
            params,
        )
    ]
    return {
        "session_count": n,
        "task_count": int(task_sum),
        "avg_duration_s": _seconds(avg_duration),
        "median_duration_s": _seconds(_quantile_ns(conn, where, params, n, 0.5)),
        "p90_duration_s": _seconds(_quantile_ns(conn, where, params, n, 0.9)),
        "avg_tasks_per_session": round(avg_tasks, 6) if avg_tasks is not None else None,
        "success_count": int(successes),
        "failure_count": int(failures),
        "error_count": int(errors),
        "length_histogram": histogram,
        "sessions_per_day": _sessions_per_day(conn, from_ns, to_ns, user_id),
        "endings": _endings(conn, where, params, top_inputs),
    }


def user_insights(
    conn: sqlite3.Connection,
    *,
    from_ns: int | None = None,
    to_ns: int | None = None,
    top: int = 10,
) -> dict[str, Any]:
    """Figures over the users active in ``[from_ns, to_ns)``: how many, tasks per user
    (average, median, p90 and a power-of-two histogram) and the top users by tasks."""
    where: list[str] = []
    params: list[Any] = []
    _users_active_in(where, params, from_ns, to_ns)
    clause = (" WHERE " + " AND ".join(where)) if where else ""
    n, avg_tasks, avg_sessions, successes, failures = conn.execute(
        "SELECT count(*), avg(task_count), avg(session_count), total(success_count),"
        f" total(failure_count) FROM users{clause}",
        params,
    ).fetchone()
    counts = [c for (c,) in conn.execute(f"SELECT task_count FROM users{clause}"
                                         " ORDER BY task_count", params)]
    buckets: dict[int, int] = {}
    for c in counts:
        lo = 1 << (max(c, 1).bit_length() - 1)
        buckets[lo] = buckets.get(lo, 0) + 1
    distribution = [
        {"min_tasks": lo, "max_tasks": lo * 2 - 1, "users": buckets[lo]} for lo in sorted(buckets)
    ]
    top_rows = _rows(
        conn,
        f"SELECT {_USER_COLUMNS}, task_count AS _sort FROM users{clause}"
        " ORDER BY task_count DESC, user_id LIMIT ?",
        [*params, top],
    )
    judged = successes + failures

    def quantile(q: float) -> float | None:
        if not counts:
            return None
        pos = q * (len(counts) - 1)
        lo = math.floor(pos)
        hi = min(lo + 1, len(counts) - 1)
        return counts[lo] + (counts[hi] - counts[lo]) * (pos - lo)

    return {
        "user_count": n,
        "avg_tasks_per_user": round(avg_tasks, 6) if avg_tasks is not None else None,
        "median_tasks_per_user": quantile(0.5),
        "p90_tasks_per_user": quantile(0.9),
        "avg_sessions_per_user": round(avg_sessions, 6) if avg_sessions is not None else None,
        "success_rate": round(successes / judged, 6) if judged else None,
        "tasks_per_user": distribution,
        "top_users": _user_dicts(conn, top_rows),
    }
