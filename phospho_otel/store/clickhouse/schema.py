"""The ClickHouse backend's tables: the common SQL subset that runs on ClickHouse 18.16
(Debian's package, the oldest engine supported) and on current engines.

Every table only grows: rows are appended, never updated, and **reads merge** (GROUP BY
with ``argMax``/``argMin`` over the rows of one key), so that any replica may write any
row, in any order, any number of times, and the views stay exact; background merges of
parts change nothing a read returns.

Raw tables (``MergeTree``), columns in their record's field order
(``model.records``), then the table's own:

* ``spans``: every span as received (``SpanRecord``; ``span`` holds the serialized OTLP
  ``Span``), plus ``origin`` (the hash of its ``origins`` row) and ``written``. Ordered
  by ``(trace_id, span_id)``: a trace is a key range; a span delivered twice is two rows,
  deduplicated at read.
* ``origins`` (``ReplacingMergeTree`` by hash): the ``Origin`` records.
* ``tasks``: every version of every task (``TaskRecord``), ordered by ``task_id``; a read
  keeps the version with the largest ``(end_ns, span_id)``.
* ``feedback``: every feedback span (``FeedbackRecord``), ordered by task id; a task's
  flag is its latest by ``(time_ns, trace_id, span_id)``.
* ``counters``: ingest counters, one row per name and write, summed at read.
* ``commits``: one row per completed write (``batch``). Every other row carries the
  ``written`` batch it belongs to, and reads see only rows of committed batches: a write
  that failed half-way is invisible (all or nothing), and a reader sees the batches
  committed when it opened (a snapshot).

Lookup tables, filled by materialized views from the raw tables (ClickHouse 18.16 has
no data-skipping indexes, so each lookup path is a narrow table ordered for it):

* ``span_index`` (from ``spans``), ordered by ``(service_name, name, start_ns)``: the
  service and operation lists and the Jaeger search by service / operation / time;
* ``span_tags`` (from ``spans``), ordered by ``(tag, value, start_ns)``: the Jaeger search
  by ``session.id`` / ``user.id``, one row per span and tag;
* ``task_keys`` (from ``tasks``), ordered by ``(key, value, task_id)``: the task ids that
  ever had a session or user id (``session`` / ``user`` keys), so that one session's or
  user's rollup reads only its tasks.

Session and user rollups are not stored: they are computed at read from the latest task
versions and flags, with aggregate SQL generated from ``model.rollup``'s rules
(``rollups``). A rollup stored as partial aggregate states could not stay exact: a task
logged again in another session must leave the old session's counts, and a later flag
must replace the earlier one, and neither is a merge of states.

Ids: trace, span and origin ids are lowercase hex text (their byte order is kept);
times are integer nanoseconds (``Int64``). ``spans`` is partitioned by month of start
(retention: ``ALTER TABLE ... DROP PARTITION``); the server's time zone should be UTC.
"""

from __future__ import annotations

from phospho_otel.model.records import FeedbackRecord, Origin, SpanRecord, TaskRecord

__all__ = ["HEX_FIELDS", "SCHEMA_VERSION", "TABLE_COLUMNS", "ddl"]

SCHEMA_VERSION = 1

HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id", "hash"})
"""Record fields holding raw ids, stored as hex text."""

_NULLABLE = frozenset({"parent_span_id", "session_id", "user_id", "input", "output",
                       "raw_input", "raw_output", "notes"})
_INTEGER = {"kind": "Int32", "status_code": "Int32", "start_ns": "Int64", "end_ns": "Int64",
            "time_ns": "Int64"}


def _type(field: str) -> str:
    base = _INTEGER.get(field, "String")
    return f"Nullable({base})" if field in _NULLABLE else base


def _columns(fields: tuple[str, ...], *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (*((f, _type(f)) for f in fields), *extra)


_WRITTEN = ("written", "UInt64")

TABLE_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "spans": _columns(SpanRecord._fields, ("origin", "String"), _WRITTEN),
    "origins": _columns(Origin._fields),
    "tasks": _columns(TaskRecord._fields, _WRITTEN),
    "feedback": _columns(FeedbackRecord._fields, _WRITTEN),
    "counters": (("name", "String"), ("value", "Int64"), _WRITTEN),
    "commits": (("batch", "UInt64"), ("replica", "String"), ("committed_ns", "Int64")),
}
"""The raw tables' columns (name, ClickHouse type) in insert order: their record's fields
first (``model.records``), in the records' order."""

_ENGINES = {
    "spans": "MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(start_ns, 1000000000)))"
             " ORDER BY (trace_id, span_id)",
    "origins": "ReplacingMergeTree ORDER BY hash",
    "tasks": "MergeTree ORDER BY (task_id, end_ns)",
    "feedback": "MergeTree ORDER BY (task_id, time_ns)",
    "counters": "MergeTree ORDER BY (name, written)",
    "commits": "MergeTree ORDER BY batch",
}

_LOOKUPS = """
CREATE TABLE IF NOT EXISTS {db}.span_index (
    service_name String, name String, start_ns Int64, end_ns Int64, kind Int32,
    trace_id String, span_id String, origin String, written UInt64
) ENGINE = MergeTree ORDER BY (service_name, name, start_ns);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_index_mv TO {db}.span_index AS
SELECT service_name, name, start_ns, end_ns, kind, trace_id, span_id, origin, written
FROM {db}.spans;

CREATE TABLE IF NOT EXISTS {db}.span_tags (
    tag String, value String, start_ns Int64, end_ns Int64, service_name String,
    name String, trace_id String, span_id String, origin String,
    session_id Nullable(String), user_id Nullable(String), written UInt64
) ENGINE = MergeTree ORDER BY (tag, value, start_ns);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_tags_session_mv TO {db}.span_tags AS
SELECT 'session.id' AS tag, assumeNotNull(session_id) AS value, start_ns, end_ns,
       service_name, name, trace_id, span_id, origin, session_id, user_id, written
FROM {db}.spans WHERE isNotNull(session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_tags_user_mv TO {db}.span_tags AS
SELECT 'user.id' AS tag, assumeNotNull(user_id) AS value, start_ns, end_ns,
       service_name, name, trace_id, span_id, origin, session_id, user_id, written
FROM {db}.spans WHERE isNotNull(user_id);

CREATE TABLE IF NOT EXISTS {db}.task_keys (
    key String, value String, task_id String, written UInt64
) ENGINE = MergeTree ORDER BY (key, value, task_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.task_keys_session_mv TO {db}.task_keys AS
SELECT 'session' AS key, assumeNotNull(session_id) AS value, task_id, written
FROM {db}.tasks WHERE isNotNull(session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.task_keys_user_mv TO {db}.task_keys AS
SELECT 'user' AS key, assumeNotNull(user_id) AS value, task_id, written
FROM {db}.tasks WHERE isNotNull(user_id)
"""


def ddl(database: str) -> list[str]:
    """The statements creating the database and every table and view, in order; each
    ``IF NOT EXISTS``, so running them again, or from several replicas at once, is
    harmless."""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for table, columns in TABLE_COLUMNS.items():
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        statements.append(f"CREATE TABLE IF NOT EXISTS {database}.{table} ({body})"
                          f" ENGINE = {_ENGINES[table]}")
    statements += [s.strip() for s in _LOOKUPS.format(db=database).split(";")]
    return statements
