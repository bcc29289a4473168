"""The SQLite backend's ``InsightReader``: aggregates over the ``sessions`` and ``users``
rollups, each through an index (cost at 100,000 sessions: ``benchmarks/bench_views.py``).

* totals: one scan of the rollup (of the filter's index range when filtered);
* session lengths and duration ranks: index-only (``sessions_by_task_count``,
  ``sessions_by_duration``);
* sessions per day: index range counts, one per day with sessions;
* endings: one GROUP BY over the covering index ``sessions_by_ending``.

Filtered queries put ``+`` before a column to keep the planner on the filter's index (it
would otherwise walk a whole other index, reading each row's filter column from the
table).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from phospho_otel.store.api import (
    Ending,
    SessionFilter,
    SessionTotals,
    UserFilter,
    UserRow,
    UserTotals,
)
from phospho_otel.store.sqlite.views import (
    NS_PER_DAY,
    session_where,
    user_rows,
    user_where,
    utc_day_sql,
)

__all__ = ["NS_PER_DAY", "SQLiteInsights"]


def _clause(where: Sequence[str]) -> str:
    return (" WHERE " + " AND ".join(where)) if where else ""


class SQLiteInsights:
    """``store.api.InsightReader`` over ``self.conn`` (set by ``SQLiteReader``)."""

    conn: sqlite3.Connection

    def session_totals(self, where: SessionFilter) -> SessionTotals:
        conditions, params = session_where(where)
        n, avg_duration, avg_tasks, tasks, successes, failures, errors = self.conn.execute(
            "SELECT count(*), avg(end_ns - start_ns), avg(task_count), total(task_count),"
            " total(success_count), total(failure_count), total(error_count)"
            f" FROM sessions{_clause(conditions)}",
            params,
        ).fetchone()
        return SessionTotals(n, int(tasks), avg_duration, avg_tasks, int(successes),
                             int(failures), int(errors))

    def session_lengths(self, where: SessionFilter) -> list[tuple[int, int]]:
        conditions, params = session_where(where)
        plus = "+" if conditions else ""
        return [(length, count) for length, count in self.conn.execute(
            f"SELECT task_count, count(*) FROM sessions{_clause(conditions)}"
            f" GROUP BY {plus}task_count ORDER BY {plus}task_count",
            params,
        )]

    def session_durations_at(self, where: SessionFilter, ranks: Sequence[int]) -> list[int]:
        if not ranks:
            return []
        conditions, params = session_where(where)
        lo, hi = min(ranks), max(ranks)
        values = [v for (v,) in self.conn.execute(
            f"SELECT end_ns - start_ns FROM sessions{_clause(conditions)}"
            " ORDER BY end_ns - start_ns LIMIT ? OFFSET ?",
            [*params, hi - lo + 1, lo],
        )]
        return [values[r - lo] for r in ranks if r - lo < len(values)]

    def session_duration_counts(self, where: SessionFilter,
                                edges_ns: Sequence[int]) -> list[int]:
        conditions, params = session_where(where)
        bounds = [*edges_ns[1:], None]
        sums = ", ".join(f"total(d >= {int(lo)}" + (f" AND d < {int(hi)})" if hi is not None
                                                    else ")")
                         for lo, hi in zip(edges_ns, bounds, strict=True))
        row = self.conn.execute(
            f"SELECT {sums} FROM (SELECT end_ns - start_ns AS d FROM sessions"
            f"{_clause(conditions)})", params).fetchone()
        return [int(n) for n in row]

    def sessions_per_day(self, where: SessionFilter) -> list[tuple[int, int]]:
        """A recursive query jumps from one non-empty day to the next (``min(start_ns)``
        at or after the next midnight, one index probe each) and counts each day as an
        index range, without sorting."""
        conditions, params = session_where(where)
        clause = _clause(conditions)
        first = self.conn.execute(f"SELECT min(start_ns) FROM sessions{clause}",
                                  params).fetchone()[0]
        if first is None:
            return []
        beyond_range = (where.state, where.end_reason, where.evaluation, where.event,
                        where.metadata or None) != (None,) * 5
        # before 1970 (the jumps below assume days >= 0), or conditions the jumps do not
        # apply (analysis results, metadata): group the slow way
        if first < 0 or beyond_range:
            return [(int(d), int(n)) for d, n in self.conn.execute(
                f"SELECT {utc_day_sql('start_ns')} AS day, count(*) FROM sessions{clause}"
                " GROUP BY day ORDER BY day",
                params,
            )]
        # One lower and one upper bound per probe (max/min of the range and the day), so
        # that the index search starts at the day, not at ``from``.
        user = "user_id = :user AND " if where.user_id is not None else ""
        rows = self.conn.execute(
            "WITH RECURSIVE d(day) AS ("
            f" SELECT :first / {NS_PER_DAY}"
            f" UNION ALL SELECT (SELECT min(start_ns) FROM sessions WHERE {user}"
            f" start_ns >= max(:lo, (d.day + 1) * {NS_PER_DAY}) AND start_ns < :hi)"
            f" / {NS_PER_DAY} FROM d WHERE d.day IS NOT NULL)"
            f" SELECT day, (SELECT count(*) FROM sessions WHERE {user}"
            f" start_ns >= max(:lo, day * {NS_PER_DAY})"
            f" AND start_ns < min(:hi, (day + 1) * {NS_PER_DAY}))"
            " FROM d WHERE day IS NOT NULL",
            {"first": first, "user": where.user_id,
             "lo": -(2**63) if where.from_ns is None else where.from_ns,
             "hi": 2**63 - 1 if where.to_ns is None else where.to_ns},
        ).fetchall()
        return [(int(day), int(count)) for day, count in rows]

    def session_endings(self, where: SessionFilter) -> list[Ending]:
        conditions, params = session_where(where)
        plus = "+" if conditions else ""
        return [Ending(*row) for row in self.conn.execute(
            f"SELECT last_flag, last_status, last_input, count(*) FROM sessions"
            f"{_clause(conditions)}"
            f" GROUP BY {plus}last_flag, {plus}last_status, {plus}last_input",
            params,
        )]

    def user_totals(self, where: UserFilter) -> UserTotals:
        conditions, params = user_where(where)
        n, avg_tasks, avg_sessions, successes, failures = self.conn.execute(
            "SELECT count(*), avg(task_count), avg(session_count), total(success_count),"
            f" total(failure_count) FROM users{_clause(conditions)}",
            params,
        ).fetchone()
        return UserTotals(n, avg_tasks, avg_sessions, int(successes), int(failures))

    def user_task_counts(self, where: UserFilter) -> list[int]:
        conditions, params = user_where(where)
        return [c for (c,) in self.conn.execute(
            f"SELECT task_count FROM users{_clause(conditions)} ORDER BY task_count", params)]

    def top_users(self, where: UserFilter, limit: int) -> list[UserRow]:
        conditions, params = user_where(where)
        rows = self.conn.execute(
            "SELECT user_id, task_count, session_count, first_seen_ns, last_seen_ns,"
            " success_count, failure_count, error_count"
            f" FROM users{_clause(conditions)} ORDER BY task_count DESC, user_id LIMIT ?",
            [*params, limit],
        ).fetchall()
        return user_rows(self.conn, rows)
