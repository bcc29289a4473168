"""The SQL that reads the analyzer's results out of their append-only tables
(``analysis_schema``), merging at read, and the list filters and sorts made from them.

* ``latest_sql``: each task's / session's / user's row of the latest committed analysis
  batch (``argMax`` by ``written``), with the table's columns (``written`` last);
* ``session_analysis_conditions`` / ``user_class_condition`` /
  ``task_analysis_conditions``: the ``SessionFilter`` / ``UserFilter`` / ``TaskFilter``
  fields on results (state, end reason, evaluation, event, class) as conditions on the
  rollups' ids, with the rules of the SQLite backend (``store/sqlite/views.py``): a
  session not analysed yet is ``active``;
* ``with_user_figures``: the users with their analysis sort values
  (``store.api.USER_ANALYSIS_SORTS``: ``USER_FIGURE_SORTS``), -1 without the figure.

``analysed`` is the condition on ``written`` selecting committed analysis batches (set
by the reader); ``users_run`` the SQL of the latest classification's batch.
"""

from __future__ import annotations

from typing import Any

from phospho_otel.store.api import SessionFilter, TaskFilter, UserFilter
from phospho_otel.store.clickhouse.analysis_schema import ANALYSIS_COLUMNS

__all__ = ["REPHRASE_SOURCE", "USER_FIGURE_SORTS", "analysed_sql", "latest_sql",
           "session_analysis_conditions", "task_analysis_conditions", "user_class_condition",
           "users_run_sql", "with_user_figures"]

REPHRASE_SOURCE = "heuristic:rephrase"
"""The evaluation source of a task failed because the next input rephrased it."""

_KEYS = {"task_analysis": "task_id", "session_analysis": "session_id",
         "user_analysis": "user_id"}


def analysed_sql(db: str, upto: int) -> str:
    """The condition selecting rows of analysis batches committed up to ``upto``."""
    return f"written IN (SELECT batch FROM {db}.analysis_commits WHERE batch <= {int(upto)})"


def users_run_sql(db: str, upto: int) -> str:
    """The batch of the latest classification committed up to ``upto`` (0 when none)."""
    return (f"(SELECT max(batch) FROM {db}.analysis_commits WHERE users = 1"
            f" AND batch <= {int(upto)})")


def latest_sql(db: str, table: str, analysed: str, where: str = "") -> str:
    """Each key's latest row of ``table`` (one of ``ANALYSIS_COLUMNS``' result tables),
    its columns by name; ``where`` narrows the rows read (a condition on the key)."""
    key = _KEYS[table]
    columns = [name for name, _ in ANALYSIS_COLUMNS[table] if name != key]
    condition = f"{analysed} AND {where}" if where else analysed
    # the key's alias differs from the column (ClickHouse substitutes aliases in WHERE)
    inner = (f"SELECT {key} AS _key, argMax(tuple({', '.join(columns)}), written) AS _v"
             f" FROM {db}.{table} WHERE {condition} GROUP BY _key")
    picked = ", ".join(f"_v.{i} AS {name}" for i, name in enumerate(columns, 1))
    return f"SELECT _key AS {key}, {picked} FROM ({inner})"


def session_analysis_conditions(f: SessionFilter, db: str, analysed: str
                                ) -> tuple[list[str], dict[str, Any]]:
    """Conditions on ``session_id`` of the filter's state, end reason, evaluation and
    event: ``active`` is "not analysed as ended"; the others need an analysis row."""
    probed = f.end_reason is not None or f.evaluation is not None or f.event is not None
    latest = latest_sql(db, "session_analysis", analysed)
    params: dict[str, Any] = {}
    if f.state == "ended" or probed:
        on_row: list[str] = []
        if f.state == "ended":
            on_row.append("state = 'ended'")
        elif f.state is not None:
            on_row.append("state != 'ended'")
        if f.end_reason is not None:
            on_row.append("end_reason = %(a_end_reason)s")
            params["a_end_reason"] = f.end_reason
        if f.evaluation is not None:
            on_row.append("eval_label = %(a_evaluation)s")
            params["a_evaluation"] = f.evaluation
        if f.event is not None:
            on_row.append("arrayExists((n, c) -> n = %(a_event)s AND c > 0,"
                          " event_names, event_counts)")
            params["a_event"] = f.event
        return ([f"session_id IN (SELECT session_id FROM ({latest})"
                 f" WHERE {' AND '.join(on_row)})"], params)
    if f.state is not None:
        return [f"session_id NOT IN (SELECT session_id FROM ({latest})"
                " WHERE state = 'ended')"], params
    return [], params


def user_class_condition(f: UserFilter, db: str, users_run: str
                         ) -> tuple[list[str], dict[str, Any]]:
    """The condition on ``user_id`` of the filter's class (the latest classification)."""
    if f.user_class is None:
        return [], {}
    return ([f"user_id IN (SELECT user_id FROM {db}.user_analysis WHERE written = {users_run}"
             " AND has(class_labels, %(a_class)s))"], {"a_class": f.user_class})


def task_analysis_conditions(f: TaskFilter, db: str, analysed: str
                             ) -> tuple[list[str], dict[str, Any]]:
    """The condition on ``task_id`` of the filter's event and evaluation."""
    on_row: list[str] = []
    params: dict[str, Any] = {}
    if f.event is not None:
        on_row.append("has(event_names, %(a_task_event)s)")
        params["a_task_event"] = f.event
    if f.evaluation is not None:
        on_row.append("eval_label = %(a_task_evaluation)s")
        params["a_task_evaluation"] = f.evaluation
    if not on_row:
        return [], {}
    latest = latest_sql(db, "task_analysis", analysed)
    return ([f"task_id IN (SELECT task_id FROM ({latest}) WHERE {' AND '.join(on_row)})"],
            params)


USER_FIGURE_SORTS = {
    "success_rate": "if(_s + _f > 0, _s / (_s + _f), -1)",
    "tokens": "if(_has_usage = 1, _tokens_v, -1)",
    "cost": "if(_has_usage = 1, _cost_v, -1)",
}
"""``USER_ANALYSIS_SORTS`` -> their SQL over ``with_user_figures``' columns: -1 for a user
without the figure (as on SQLite)."""


def with_user_figures(users: str, db: str, analysed: str) -> str:
    """``users`` (a query with a ``user_id`` column) with each user's analysis figures
    joined: ``_s`` / ``_f`` the tasks evaluated success / failure (their latest
    analyses), and, from the user's latest analysis (written with the classes),
    ``_has_usage`` (1 when there is one; a user without gets 0 from the join),
    ``_tokens_v`` (input + output tokens, -1 for none or 0) and ``_cost_v`` (-1 for
    none)."""
    tasks = latest_sql(db, "task_analysis", analysed)
    rates = ("SELECT _rate_user AS user_id, _s, _f FROM (SELECT assumeNotNull(user_id)"
             " AS _rate_user, toInt64(countIf(eval_label = 'success')) AS _s,"
             " toInt64(countIf(eval_label = 'failure')) AS _f"
             f" FROM ({tasks}) WHERE isNotNull(user_id) GROUP BY _rate_user)")
    usage = ("SELECT user_id, toUInt8(1) AS _has_usage,"
             " ifNull(nullIf(ifNull(input_tokens, 0) + ifNull(output_tokens, 0), 0), -1)"
             " AS _tokens_v, toFloat64(ifNull(cost, -1)) AS _cost_v"
             f" FROM ({latest_sql(db, 'user_analysis', analysed)})")
    return (f"SELECT * FROM (SELECT * FROM ({users}) ANY LEFT JOIN ({rates}) USING user_id)"
            f" ANY LEFT JOIN ({usage}) USING user_id")
