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
* ``span_annotations``: every span annotation (``SpanAnnotationRecord``: GenAI content
  and evaluation events, Logfire annotations), ordered by ``(trace_id, span_id,
  annotation_id)``; deduplicated at read.
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
* ``span_operations`` (from ``spans``), ordered by ``(service_name, name, written)``: one
  row per operation and batch, with the kind of its earliest span (an ``argMin`` state):
  the service and operation lists, without reading every span. A database made before
  it existed gets ``span_operations_before`` (the same columns) filled from the spans
  stored when it was created (``CREATE TABLE ... AS SELECT``, once; empty for a new
  database), and reads take both tables: a span stored then and seen again by the view
  is counted twice, which a list of names and an earliest span ignore;
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

import re

from phospho_otel.model.records import (
    FeedbackRecord,
    Origin,
    SpanAnnotationRecord,
    SpanRecord,
    TaskRecord,
)
from phospho_otel.store.clickhouse.analysis_schema import analysis_ddl
from phospho_otel.store.clickhouse.rollup_schema import rollup_ddl

__all__ = ["HEX_FIELDS", "LOCAL_SUFFIX", "SCHEMA_VERSION", "TABLE_COLUMNS", "created", "ddl",
           "on_cluster"]

SCHEMA_VERSION = 1

HEX_FIELDS = frozenset({"trace_id", "span_id", "parent_span_id", "hash", "annotation_id"})
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
    "span_annotations": _columns(SpanAnnotationRecord._fields, _WRITTEN),
}
"""The raw tables' columns (name, ClickHouse type) in insert order: their record's fields
first (``model.records``), in the records' order."""

_POINT_READS = "SETTINGS index_granularity = 1024"
"""The tables read by key ranges of a few rows (a trace, a session's spans, the newest
spans of a search): granules of 1,024 rows rather than 8,192, so that a read decodes an
eighth of the rows (most of ``spans``' bytes are the OTLP ``span``). A setting of the
table: it applies to tables created with it, and a database made by an earlier version
keeps its 8,192-row granules and answers the same, only slower (to convert a table, create
it anew and ``INSERT ... SELECT`` its rows)."""

_ENGINES = {
    "spans": "MergeTree PARTITION BY toYYYYMM(toDateTime(intDiv(start_ns, 1000000000)))"
             f" ORDER BY (trace_id, span_id) {_POINT_READS}",
    "origins": "ReplacingMergeTree ORDER BY hash",
    "tasks": "MergeTree ORDER BY (task_id, end_ns)",
    "feedback": "MergeTree ORDER BY (task_id, time_ns)",
    "counters": "MergeTree ORDER BY (name, written)",
    "commits": "MergeTree ORDER BY batch",
    "span_annotations": f"MergeTree ORDER BY (trace_id, span_id, annotation_id) {_POINT_READS}",
}

_LOOKUPS = """
CREATE TABLE IF NOT EXISTS {db}.span_index (
    service_name String, name String, start_ns Int64, end_ns Int64, kind Int32,
    trace_id String, span_id String, origin String, written UInt64
) ENGINE = MergeTree ORDER BY (service_name, name, start_ns) {point_reads};

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_index_mv TO {db}.span_index AS
SELECT service_name, name, start_ns, end_ns, kind, trace_id, span_id, origin, written
FROM {db}.spans;

CREATE TABLE IF NOT EXISTS {db}.span_tags (
    tag String, value String, start_ns Int64, end_ns Int64, service_name String,
    name String, trace_id String, span_id String, origin String,
    session_id Nullable(String), user_id Nullable(String), written UInt64
) ENGINE = MergeTree ORDER BY (tag, value, start_ns) {point_reads};

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_tags_session_mv TO {db}.span_tags AS
SELECT 'session.id' AS tag, assumeNotNull(session_id) AS value, start_ns, end_ns,
       service_name, name, trace_id, span_id, origin, session_id, user_id, written
FROM {db}.spans WHERE isNotNull(session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_tags_user_mv TO {db}.span_tags AS
SELECT 'user.id' AS tag, assumeNotNull(user_id) AS value, start_ns, end_ns,
       service_name, name, trace_id, span_id, origin, session_id, user_id, written
FROM {db}.spans WHERE isNotNull(user_id);

CREATE TABLE IF NOT EXISTS {db}.span_operations (
    service_name String, name String, written UInt64,
    first_kind AggregateFunction(argMin, Int32, Tuple(Int64, String))
) ENGINE = AggregatingMergeTree ORDER BY (service_name, name, written);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.span_operations_mv TO {db}.span_operations AS
SELECT service_name, name, written, argMinState(kind, tuple(start_ns, span_id)) AS first_kind
FROM {db}.spans GROUP BY service_name, name, written;

CREATE TABLE IF NOT EXISTS {db}.span_operations_before
ENGINE = AggregatingMergeTree ORDER BY (service_name, name, written) AS
SELECT service_name, name, written, argMinState(kind, tuple(start_ns, span_id)) AS first_kind
FROM {db}.spans GROUP BY service_name, name, written;

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

_OPERATIONS_BEFORE_EMPTY = """CREATE TABLE IF NOT EXISTS {db}.span_operations_before (
    service_name String, name String, written UInt64,
    first_kind AggregateFunction(argMin, Int32, Tuple(Int64, String))
) ENGINE = AggregatingMergeTree ORDER BY (service_name, name, written)"""


def ddl(database: str, cluster: str | None = None) -> list[str]:
    """The statements creating the database and every table and view, in order; each
    ``IF NOT EXISTS``, so running them again, or from several replicas at once, is
    harmless. With ``cluster``, the same schema on that ClickHouse cluster
    (``on_cluster``)."""
    statements = [f"CREATE DATABASE IF NOT EXISTS {database}"]
    for table, columns in TABLE_COLUMNS.items():
        body = ", ".join(f"{name} {kind}" for name, kind in columns)
        statements.append(f"CREATE TABLE IF NOT EXISTS {database}.{table} ({body})"
                          f" ENGINE = {_ENGINES[table]}")
    lookups = _LOOKUPS.format(db=database, point_reads=_POINT_READS)
    statements += [s.strip() for s in lookups.split(";")]
    statements += analysis_ddl(database)  # the analyzer's tables (analysis_schema)
    statements += rollup_ddl(database)  # the stored rollups (rollup_schema, rollup_store)
    if cluster is None:
        return statements
    # on a cluster, span_operations_before is created empty (no database made before it
    # existed is on a cluster)
    before = f"{database}.span_operations_before"
    statements = [_OPERATIONS_BEFORE_EMPTY.format(db=database) if created(s) == before else s
                  for s in statements]
    return [c for s in statements for c in on_cluster(s, database, cluster)]


# -- on a cluster ----------------------------------------------------------------------

LOCAL_SUFFIX = "_local"
"""On a cluster, the replicated table holding table ``t``'s rows on each server is
``t_local``; ``t`` itself is a ``Distributed`` table over them."""

_CREATE_DATABASE = re.compile(r"CREATE DATABASE IF NOT EXISTS (\w+)$")
_CREATE_TABLE = re.compile(
    r"CREATE TABLE IF NOT EXISTS (\w+)\.(\w+) (\(.*\))\s*"
    r"ENGINE = (\w*MergeTree)(\(([^)]*)\))?(.*)$", re.DOTALL)
_CREATE_VIEW = re.compile(
    r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+)\.(\w+) TO (\w+)\.(\w+) AS\s+(SELECT .*)$",
    re.DOTALL)


def on_cluster(statement: str, database: str, cluster: str) -> list[str]:
    """The statements making ``statement`` (one of ``ddl``'s) on every server of
    ``cluster``, each ``ON CLUSTER`` (run by every server, through ZooKeeper): the one
    place where tables become replicated.

    * a table ``t`` with a ``*MergeTree`` engine becomes ``t_local``, the same engine
      ``Replicated`` (its ZooKeeper path ``/clickhouse/tables/{shard}/DB/t``, replica
      ``{replica}``: the servers' macros), and ``t`` a ``Distributed`` table over the
      ``t_local`` of every shard (inserts spread at random; with one shard, the server
      a client is connected to holds a full replica and answers reads itself);
    * a materialized view fills ``t_local`` from the source's ``_local`` table, on every
      server (a view fires on the server an INSERT reaches);
    * every name keeps its meaning for the readers and the writer, which address ``t``.
    """
    if _CREATE_DATABASE.match(statement):
        return [f"{statement} ON CLUSTER {cluster}"]
    table = _CREATE_TABLE.match(statement)
    if table is not None:
        db, name, body, engine, _, args, rest = table.groups()
        local = f"{db}.{name}{LOCAL_SUFFIX}"
        path = "'/clickhouse/tables/{shard}/" + f"{db}/{name}', " + "'{replica}'"
        params = f"{path}, {args}" if args else path
        return [f"CREATE TABLE IF NOT EXISTS {local} ON CLUSTER {cluster} {body}"
                f" ENGINE = Replicated{engine}({params}){rest}",
                f"CREATE TABLE IF NOT EXISTS {db}.{name} ON CLUSTER {cluster} AS {local}"
                f" ENGINE = Distributed({cluster}, {db}, {name}{LOCAL_SUFFIX}, rand())"]
    view = _CREATE_VIEW.match(statement)
    if view is not None:
        db, name, target_db, target, select = view.groups()
        select = re.sub(rf"\bFROM {re.escape(database)}\.(\w+)",
                        rf"FROM {database}.\1{LOCAL_SUFFIX}", select)
        return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.{name} ON CLUSTER {cluster}"
                f" TO {target_db}.{target}{LOCAL_SUFFIX} AS {select}"]
    raise ValueError(f"no cluster form for the statement: {statement[:80]!r}")


def created(statement: str) -> str:
    """The name of what a ``ddl`` statement creates: ``DB`` or ``DB.NAME``."""
    match = re.search(r"IF NOT EXISTS (\w+(?:\.\w+)?)", statement)
    if match is None:
        raise ValueError(f"not a CREATE ... IF NOT EXISTS statement: {statement[:80]!r}")
    return match.group(1)
