"""The ClickHouse backend's ``InsightReader``: aggregates over the session and user
rollups merged at read (``rollups``), one query each.

Averages are exact sums divided by counts (integer sums in ClickHouse, the division in
Python), so that they do not depend on the order ClickHouse sums in.
"""

from __future__ import annotations

from collections.abc import Sequence

from phospho_otel.store.api import (
    Ending,
    SessionFilter,
    SessionTotals,
    UserFilter,
    UserRow,
    UserTotals,
)
from phospho_otel.store.clickhouse.views import (
    NS_PER_DAY,
    ClickHouseViews,
    clause,
    user_row,
    utc_day_sql,
)

__all__ = ["NS_PER_DAY", "ClickHouseInsights"]


def _ratio(total: int, n: int) -> float | None:
    return total / n if n else None


class ClickHouseInsights(ClickHouseViews):
    """``store.api.InsightReader`` (over the sources of ``ClickHouseViews``)."""

    def session_totals(self, where: SessionFilter) -> SessionTotals:
        conditions, params = self.session_where(where)
        ((n, duration, tasks, successes, failures, errors),) = self._rows(
            "SELECT count(), toInt64(sum(end_ns - start_ns)), toInt64(sum(task_count)),"
            " toInt64(sum(success_count)), toInt64(sum(failure_count)),"
            f" toInt64(sum(error_count)) FROM ({self.sessions()}){clause(conditions)}", params)
        return SessionTotals(n, tasks, _ratio(duration, n), _ratio(tasks, n), successes,
                             failures, errors)

    def session_lengths(self, where: SessionFilter) -> list[tuple[int, int]]:
        conditions, params = self.session_where(where)
        return [(int(length), int(count)) for length, count in self._rows(
            f"SELECT task_count, count() FROM ({self.sessions()}){clause(conditions)}"
            " GROUP BY task_count ORDER BY task_count", params)]

    def session_durations_at(self, where: SessionFilter, ranks: Sequence[int]) -> list[int]:
        if not ranks:
            return []
        conditions, params = self.session_where(where)
        lo, hi = min(ranks), max(ranks)
        values = [int(v) for (v,) in self._rows(
            f"SELECT end_ns - start_ns AS d FROM ({self.sessions()}){clause(conditions)}"
            f" ORDER BY d LIMIT {int(lo)}, {int(hi - lo + 1)}", params)]
        return [values[r - lo] for r in ranks if r - lo < len(values)]

    def session_duration_counts(self, where: SessionFilter,
                                edges_ns: Sequence[int]) -> list[int]:
        conditions, params = self.session_where(where)
        bounds = [*edges_ns[1:], None]
        counts = ", ".join(f"countIf(d >= {int(lo)}" + (f" AND d < {int(hi)})"
                                                         if hi is not None else ")")
                           for lo, hi in zip(edges_ns, bounds, strict=True))
        ((*row,),) = self._rows(
            f"SELECT {counts} FROM (SELECT end_ns - start_ns AS d FROM ({self.sessions()})"
            f"{clause(conditions)})", params)
        return [int(n) for n in row]

    def sessions_per_day(self, where: SessionFilter) -> list[tuple[int, int]]:
        conditions, params = self.session_where(where)
        day = utc_day_sql("start_ns")
        return [(int(d), int(n)) for d, n in self._rows(
            f"SELECT {day} AS day, count() FROM ({self.sessions()}){clause(conditions)}"
            " GROUP BY day ORDER BY day", params)]

    def session_endings(self, where: SessionFilter) -> list[Ending]:
        conditions, params = self.session_where(where)
        return [Ending(flag, status, input_, int(n)) for flag, status, input_, n in self._rows(
            f"SELECT last_flag, last_status, last_input, count() FROM ({self.sessions()})"
            f"{clause(conditions)} GROUP BY last_flag, last_status, last_input", params)]

    def user_totals(self, where: UserFilter) -> UserTotals:
        conditions, params = self.user_where(where)
        ((n, tasks, sessions, successes, failures),) = self._rows(
            "SELECT count(), toInt64(sum(task_count)), toInt64(sum(session_count)),"
            " toInt64(sum(success_count)), toInt64(sum(failure_count))"
            f" FROM ({self._users_for(where)}){clause(conditions)}", params)
        return UserTotals(n, _ratio(tasks, n), _ratio(sessions, n), successes, failures)

    def user_task_counts(self, where: UserFilter) -> list[int]:
        conditions, params = self.user_where(where)
        return [int(c) for (c,) in self._rows(
            f"SELECT task_count FROM ({self._users_for(where)}){clause(conditions)}"
            " ORDER BY task_count", params)]

    def top_users(self, where: UserFilter, limit: int) -> list[UserRow]:
        conditions, params = self.user_where(where)
        rows = self._rows(
            f"SELECT * FROM ({self._users_for(where)}){clause(conditions)}"
            f" ORDER BY task_count DESC, user_id LIMIT {int(limit)}", params)
        return [user_row(r) for r in rows]

    def _users_for(self, where: UserFilter) -> str:
        if where.user_id is None:
            return self.users()
        return self._user_source(where.user_id, "user_id")
