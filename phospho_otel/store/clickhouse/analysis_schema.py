"""The ClickHouse backend's tables for the analyzer (``store.api.AnalysisStore``): its
results, the session events it reads, and which ingest batches it has analysed. The same
ClickHouse 18.16 subset as ``schema``; every statement ``IF NOT EXISTS`` (``schema.ddl``
appends these).

Every table only grows, like the others (``schema``), and reads merge:

* ``task_analysis`` / ``session_analysis`` / ``user_analysis``: one row per result
  written (``model.analysis.TaskAnalysis`` ...), ``written`` the analysis batch it came
  in. A read keeps each task's, session's, user's row of the latest batch (``argMax`` by
  ``written``), so that analyzers of several replicas writing results for the same task,
  in any order, any number of times, never count it twice. A user's classes are those
  of the latest classification (the latest batch with ``users = 1``): a user it left
  out has none.
* ``analysis_commits``: one row per ``write_analysis``, written last; reads see only
  results of committed batches (all or nothing). ``done`` lists the ingest batches
  (``commits.batch``) whose work it completes, ``partial_*`` the one batch (if any) it
  completes up to an item (``(kind, key)``: ``t`` task, ``f`` feedback, ``s`` session
  event; items of a batch are taken in that order): the analyzer's queue is the items of
  committed ingest batches (tasks, feedback, session events) that no commit covers, so it
  survives restarts (nothing analysed twice, nothing skipped).
* ``session_events``: the session ends and session feedback (``SessionEventRecord``),
  written by the ingest writer with its batch (``written``, visible once committed).

A session analysis also keeps ``last_activity_ns`` (its last task's end or event, when
written): the inactivity timeout reads it. Usage (``model.analysis.Usage``) is stored
field by field (``USAGE_COLUMNS``); event names are kept in arrays beside their JSON so
that filters and counts read them.
"""

from __future__ import annotations

import typing

from phospho_otel.model.analysis import Usage
from phospho_otel.model.records import SessionEventRecord

__all__ = ["ANALYSIS_COLUMNS", "SESSION_EVENT_COLUMNS", "USAGE_COLUMNS", "USAGE_FIGURES",
           "analysis_ddl"]

_USAGE_TYPES = {int: "Nullable(Int64)", float: "Nullable(Float64)", str: "Nullable(String)"}


def _usage_columns() -> tuple[tuple[str, str], ...]:
    hints = typing.get_type_hints(Usage)
    out = []
    for name in Usage._fields:
        base = next(t for t in typing.get_args(hints[name]) if t is not type(None))
        out.append((name, _USAGE_TYPES[base]))
    return tuple(out)


USAGE_COLUMNS = _usage_columns()
"""A ``Usage``'s fields as columns (name, type), in field order; each Nullable."""
USAGE_FIGURES = tuple(name for name, kind in USAGE_COLUMNS if kind != "Nullable(String)")
"""The usage columns that sum over tasks (tokens, cost): a user's usage is their sums."""

ANALYSIS_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "task_analysis": (
        ("task_id", "String"), ("session_id", "Nullable(String)"),
        ("user_id", "Nullable(String)"), ("start_ns", "Int64"),
        ("position", "Nullable(Int64)"), ("eval_label", "String"), ("eval_score", "Float64"),
        ("eval_source", "String"), ("eval_reason", "String"), ("events", "String"),
        ("event_names", "Array(String)"), ("sentiment_score", "Nullable(Float64)"),
        ("sentiment_label", "Nullable(String)"), ("language", "Nullable(String)"),
        ("analyzed_ns", "Int64"), ("judge_pending", "UInt8"), *USAGE_COLUMNS,
        ("written", "UInt64")),
    "session_analysis": (
        ("session_id", "String"), ("user_id", "Nullable(String)"), ("state", "String"),
        ("last_activity_ns", "Int64"), ("ended_ns", "Nullable(Int64)"),
        ("end_reason", "Nullable(String)"), ("end_evidence", "Array(String)"),
        ("active_duration_ns", "Int64"), ("eval_label", "Nullable(String)"),
        ("eval_score", "Nullable(Float64)"), ("eval_source", "Nullable(String)"),
        ("eval_reason", "Nullable(String)"), ("event_names", "Array(String)"),
        ("event_counts", "Array(Int64)"), ("analyzed_ns", "Int64"), *USAGE_COLUMNS,
        ("written", "UInt64")),
    "user_analysis": (
        ("user_id", "String"), ("classes", "String"), ("class_labels", "Array(String)"),
        ("analyzed_ns", "Int64"), *USAGE_COLUMNS, ("written", "UInt64")),
    "analysis_commits": (
        ("batch", "UInt64"), ("done", "Array(UInt64)"), ("partial_batch", "UInt64"),
        ("partial_kind", "String"), ("partial_key", "String"), ("users", "UInt8"),
        ("replica", "String"), ("committed_ns", "Int64")),
}
"""The analysis tables' columns (name, ClickHouse type) in insert order."""

_SESSION_EVENT_TYPES = {"time_ns": "Int64", "flag": "Nullable(String)",
                        "notes": "Nullable(String)"}
SESSION_EVENT_COLUMNS: tuple[tuple[str, str], ...] = (
    *((f, _SESSION_EVENT_TYPES.get(f, "String")) for f in SessionEventRecord._fields),
    ("written", "UInt64"))
"""``session_events``' columns: ``SessionEventRecord``'s fields (ids as hex), then
``written``."""

_ENGINES = {
    "task_analysis": "MergeTree ORDER BY (task_id, written)",
    "session_analysis": "MergeTree ORDER BY (session_id, written)",
    "user_analysis": "MergeTree ORDER BY (user_id, written)",
    "analysis_commits": "MergeTree ORDER BY batch",
    "session_events": "MergeTree ORDER BY (session_id, time_ns)",
}


def analysis_ddl(database: str) -> list[str]:
    """The statements creating the analysis tables (``IF NOT EXISTS``)."""
    tables = {**ANALYSIS_COLUMNS, "session_events": SESSION_EVENT_COLUMNS}
    return [f"CREATE TABLE IF NOT EXISTS {database}.{table}"
            f" ({', '.join(f'{n} {k}' for n, k in columns)}) ENGINE = {_ENGINES[table]}"
            for table, columns in tables.items()]
