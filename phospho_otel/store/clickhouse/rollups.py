"""The SQL that reads tasks, sessions and users out of the append-only tables, merging at
read: generated from the records (``model.records``) and the merge rules
(``model.rollup.SESSION_RULES`` / ``USER_RULES``), never restated.

* ``tasks_sql``: each task id's latest version (``argMax`` by ``(end_ns, span_id)``)
  with its latest feedback (``argMax`` by ``(time_ns, trace_id, span_id)``): the
  ``TaskRecord`` columns, then ``flag, flag_time_ns, notes, flag_source`` (NULL without
  feedback). Duplicated rows (a span delivered twice, by any replica) merge away.
* ``sessions_sql``: the ``SessionRollup`` columns, one row per session, aggregated over
  ``tasks_sql`` by the rules: ``SUM`` a sum or count, ``MIN`` / ``MAX`` themselves (NULLs
  skipped), ``FIRST`` / ``LAST`` one ``argMin`` / ``argMax`` of the group's columns by
  ``ORDER_KEY``.
* ``users_sql``: the ``UserRollup`` columns, then the number, total duration and total
  task count of the sessions each user owns (for the averages of ``UserRow``);
  ``session_count`` is the count of sessions whose ``user_id`` is the user.

Every query reads only rows of visible (committed) batches: ``visible`` is a condition
on the ``written`` column. A ``task_filter`` (a condition on ``task_id``) narrows the
tasks read, for rollups of one session or user.
"""

from __future__ import annotations

from collections.abc import Sequence

from phospho_otel.model.records import TaskRecord
from phospho_otel.model.rollup import (
    COUNT,
    ERROR,
    FAILURE,
    NONE,
    ORDER_KEY,
    SESSION_RULES,
    SUCCESS,
    USER_RULES,
    Merge,
    Rule,
    SessionRollup,
    UserRollup,
)

__all__ = ["FEEDBACK_COLUMNS", "TASK_COLUMNS", "USER_EXTRA_COLUMNS", "sessions_sql",
           "tasks_sql", "users_sql"]

FEEDBACK_COLUMNS = ("flag", "flag_time_ns", "notes", "flag_source")
"""``tasks_sql``'s columns after ``TaskRecord``'s: the latest feedback
(``model.records.TaskFeedback``'s fields), NULL without."""
TASK_COLUMNS = (*TaskRecord._fields, *FEEDBACK_COLUMNS)
USER_EXTRA_COLUMNS = ("owned_duration_ns", "owned_task_count")
"""``users_sql``'s columns after ``UserRollup``'s."""

_OWNED = "session_count"
"""The user rule not made from tasks: sessions owned (``model.rollup.owner_deltas``)."""
assert any(r.column == _OWNED and r.source == NONE for r in USER_RULES)

_SUM_SOURCE = {
    COUNT: "count()",
    SUCCESS: "countIf(ifNull(flag, '') = 'success')",
    FAILURE: "countIf(ifNull(flag, '') = 'failure')",
    ERROR: "countIf(status = 'error')",
    NONE: "0",
}


def _and(*conditions: str) -> str:
    return " AND ".join(c for c in conditions if c)


def tasks_sql(db: str, visible: str, task_filter: str = "") -> str:
    """Each task's latest version and latest feedback (``TASK_COLUMNS``)."""
    rest = TaskRecord._fields[1:]
    where = _and(visible, task_filter)
    versions = (f"SELECT task_id, argMax(tuple({', '.join(rest)}),"
                " tuple(end_ns, span_id, written))"
                f" AS v FROM {db}.tasks WHERE {where} GROUP BY task_id")
    latest = ", ".join(f"v.{i} AS {name}" for i, name in enumerate(rest, 1))
    flags = (f"SELECT task_id, argMax(tuple(flag, time_ns, notes, source),"
             f" tuple(time_ns, trace_id, span_id)) AS f FROM {db}.feedback WHERE {where}"
             " GROUP BY task_id")
    flag_columns = ("toNullable(f.1) AS flag, toNullable(f.2) AS flag_time_ns, f.3 AS notes,"
                    " toNullable(f.4) AS flag_source")
    return (f"SELECT {', '.join(TASK_COLUMNS)} FROM (SELECT task_id, {latest} FROM ({versions}))"
            f" ANY LEFT JOIN (SELECT task_id, {flag_columns} FROM ({flags})) USING task_id")


def _aggregate(rules: Sequence[Rule], key: str, source: str,
               leave_out: frozenset[str] = frozenset()) -> str:
    """``SELECT <key> AS <key>, <rule columns>`` grouped by the non-null ``key`` over
    ``source``, the columns in rule order (but those in ``leave_out``)."""
    inner: list[str] = []
    outer: list[str] = []
    order = f"tuple({', '.join(ORDER_KEY)})"
    for kind, function in ((Merge.FIRST, "argMin"), (Merge.LAST, "argMax")):
        group = [r.source for r in rules if r.merge is kind]
        if group:
            inner.append(f"{function}(tuple({', '.join(group)}), {order}) AS _{kind.value}")
    positions = {Merge.FIRST: 0, Merge.LAST: 0}
    for i, r in enumerate(rules):
        if r.column in leave_out:
            continue
        if r.merge is Merge.SUM:
            expr = _SUM_SOURCE.get(r.source) or f"sum({r.source})"
            inner.append(f"toInt64({expr}) AS _c{i}")
            outer.append(f"_c{i} AS {r.column}")
        elif r.merge in (Merge.MIN, Merge.MAX):
            inner.append(f"{r.merge.value}({r.source}) AS _c{i}")
            outer.append(f"_c{i} AS {r.column}")
        else:
            positions[r.merge] += 1
            outer.append(f"_{r.merge.value}.{positions[r.merge]} AS {r.column}")
    # (the key's alias differs from the column: ClickHouse substitutes an alias for a
    # column of the same name, in WHERE too)
    return (f"SELECT _key AS {key}, {', '.join(outer)} FROM (SELECT assumeNotNull({key}) AS _key,"
            f" {', '.join(inner)} FROM ({source}) WHERE isNotNull({key}) GROUP BY _key)")


def sessions_sql(db: str, visible: str, task_filter: str = "") -> str:
    """Every session's rollup (``SessionRollup`` columns)."""
    return _aggregate(SESSION_RULES, "session_id", tasks_sql(db, visible, task_filter))


def users_sql(db: str, visible: str, task_filter: str = "", session_task_filter: str = "") -> str:
    """Every user's rollup (``UserRollup`` columns, then ``USER_EXTRA_COLUMNS``).
    ``task_filter`` narrows the users' tasks, ``session_task_filter`` the tasks of the
    sessions they may own."""
    by_user = _aggregate(USER_RULES, "user_id", tasks_sql(db, visible, task_filter),
                         frozenset({_OWNED}))
    owned = (f"SELECT _owner AS user_id, owned, owned_duration_ns, owned_task_count FROM"
             " (SELECT assumeNotNull(user_id) AS _owner, toInt64(count()) AS owned,"
             " toInt64(sum(end_ns - start_ns)) AS owned_duration_ns,"
             " toInt64(sum(task_count)) AS owned_task_count"
             f" FROM ({sessions_sql(db, visible, session_task_filter)})"
             " WHERE isNotNull(user_id) GROUP BY _owner)")
    columns = [f"owned AS {c}" if c == _OWNED else c for c in UserRollup._fields]
    return (f"SELECT {', '.join(columns)}, {', '.join(USER_EXTRA_COLUMNS)}"
            f" FROM ({by_user}) ANY LEFT JOIN ({owned}) USING user_id")


assert SessionRollup._fields[0] == "session_id" and UserRollup._fields[0] == "user_id"
