"""The SQLite backend's tables. One file, nothing to install.

* ``spans`` keeps **every** span received, exactly as received: the serialized OTLP
  ``Span`` message in ``span``, its resource and scope in ``origins``; the other columns
  are ``model.records.SpanRecord``'s, copied out for indexing. Unique key ``(trace_id,
  span_id)``: a span delivered twice (a collector retry) is inserted once; only a span
  that was really inserted goes on to the task, feedback and rollup steps, so nothing
  counts twice.
* ``tasks`` holds one row per task id: ``model.records.TaskRecord``'s columns, then the
  task's latest feedback (``flag``...).
* ``feedback`` holds one row per feedback span (``model.records.FeedbackRecord``); a
  task's ``flag`` is its latest feedback by time.
* ``span_annotations`` holds one row per span annotation
  (``model.records.SpanAnnotationRecord``: GenAI content and evaluation events, Logfire
  annotations), whether its span is stored or not; the aggregator resolves them.
* ``sessions`` and ``users`` are the rollups of ``model.rollup`` (``SessionRollup``,
  ``UserRollup``: their columns, their merge rules).

Each table has its record's fields as columns, in their order, plus its own (``spans.
origin_id``, a task's feedback); ``tests/store/sqlite`` checks it, and the writer generates
its statements from the records.
Times are integer nanoseconds since the Unix epoch (UTC); ids of traces and spans are raw
bytes (16 and 8). Files made by an older version are upgraded at open
(``migrations``).
"""

from __future__ import annotations

__all__ = ["APPLICATION_ID", "DDL", "FEEDBACK_COLUMNS", "SCHEMA_VERSION"]

FEEDBACK_COLUMNS = ("flag", "flag_time_ns", "notes", "flag_source")
"""The ``tasks`` columns after ``TaskRecord``'s: the task's latest feedback
(``model.records.TaskFeedback``'s fields)."""

APPLICATION_ID = int.from_bytes(b"PHOS", "big")
"""``PRAGMA application_id`` of our files (0x50484F53, the bytes "PHOS"): set when a file
is created or upgraded, so that a store never takes another application's SQLite file for
its own (``files.inspect``). Files made before it have our tables and no id."""

SCHEMA_VERSION = 5
"""1: the first schema; 2: ``sessions.last_flag`` (migration ``sessions_last_flag``); 3:
the ``input_tokens``, ``output_tokens``, ``cost`` of ``task_analysis``,
``session_analysis`` and ``user_analysis`` (migration ``analysis_usage``); 4: their
``model`` (migration ``analysis_model``); 5: the ``span_annotations`` table (migration
``span_annotations``)."""

DDL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- migrations.py: the upgrades this file has had (or did not need: made after them)
CREATE TABLE IF NOT EXISTS migrations (
    name       TEXT PRIMARY KEY,
    applied_at INTEGER NOT NULL  -- ns since the epoch
);

-- (resource, instrumentation scope) pairs, deduplicated by a hash of their bytes.
CREATE TABLE IF NOT EXISTS origins (
    id           INTEGER PRIMARY KEY,
    hash         BLOB NOT NULL UNIQUE,
    service_name TEXT NOT NULL,
    resource     BLOB NOT NULL,      -- opentelemetry.proto.resource.v1.Resource
    resource_schema_url TEXT NOT NULL DEFAULT '',
    scope        BLOB NOT NULL,      -- opentelemetry.proto.common.v1.InstrumentationScope
    scope_schema_url TEXT NOT NULL DEFAULT ''
);

CREATE TABLE IF NOT EXISTS spans (
    trace_id       BLOB NOT NULL,
    span_id        BLOB NOT NULL,
    parent_span_id BLOB,              -- NULL for a root span
    origin_id      INTEGER NOT NULL REFERENCES origins(id),
    service_name   TEXT NOT NULL,
    name           TEXT NOT NULL,
    kind           INTEGER NOT NULL,  -- OTLP SpanKind number
    start_ns       INTEGER NOT NULL,
    end_ns         INTEGER NOT NULL,
    status_code    INTEGER NOT NULL,  -- OTLP StatusCode number (0 unset, 1 ok, 2 error)
    session_id     TEXT,              -- from any convention, NULL if none
    user_id        TEXT,
    span           BLOB NOT NULL,     -- opentelemetry.proto.trace.v1.Span, as received
    UNIQUE (trace_id, span_id)
);  -- a rowid table: rows (with their blobs) are appended in arrival order, and only the
    -- small unique index takes the random (trace_id, span_id) inserts.
CREATE INDEX IF NOT EXISTS spans_by_session ON spans(session_id, start_ns)
    WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_user ON spans(user_id, start_ns)
    WHERE user_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_by_service ON spans(service_name, start_ns);
-- operation lists (skip scan over names) and service + operation searches (Jaeger API)
CREATE INDEX IF NOT EXISTS spans_by_operation ON spans(service_name, name, start_ns);

CREATE TABLE IF NOT EXISTS tasks (
    task_id      TEXT PRIMARY KEY,
    trace_id     BLOB NOT NULL,
    span_id      BLOB NOT NULL,
    session_id   TEXT,
    user_id      TEXT,
    name         TEXT NOT NULL,
    service_name TEXT NOT NULL,
    convention   TEXT NOT NULL,  -- phospho, or a name of aggregator.conventions
    input        TEXT,
    output       TEXT,
    raw_input    TEXT,                -- JSON text
    raw_output   TEXT,                -- JSON text
    metadata     TEXT NOT NULL DEFAULT '{}',  -- JSON object
    start_ns     INTEGER NOT NULL,
    end_ns       INTEGER NOT NULL,
    status       TEXT NOT NULL,       -- 'unset' | 'ok' | 'error'
    flag         TEXT,                -- latest feedback flag: 'success' | 'failure' | NULL
    flag_time_ns INTEGER,             -- time of that feedback (latest-by-time merge)
    notes        TEXT,
    flag_source  TEXT
);
CREATE INDEX IF NOT EXISTS tasks_by_session ON tasks(session_id, start_ns, task_id)
    WHERE session_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_user ON tasks(user_id, start_ns);
CREATE INDEX IF NOT EXISTS tasks_by_start ON tasks(start_ns);
-- flagged tasks only; no query uses it since sessions.last_flag (kept: older files have it)
CREATE INDEX IF NOT EXISTS tasks_flagged ON tasks(task_id, flag) WHERE flag IS NOT NULL;

CREATE TABLE IF NOT EXISTS feedback (
    trace_id BLOB NOT NULL,
    span_id  BLOB NOT NULL,
    task_id  TEXT NOT NULL,
    flag     TEXT NOT NULL,
    notes    TEXT,
    source   TEXT NOT NULL,
    time_ns  INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS feedback_by_task ON feedback(task_id, time_ns);

CREATE TABLE IF NOT EXISTS sessions (
    session_id      TEXT PRIMARY KEY,
    user_id         TEXT,
    task_count      INTEGER NOT NULL DEFAULT 0,
    start_ns        INTEGER,          -- min task start
    end_ns          INTEGER,          -- max task end
    first_task_id   TEXT,             -- task with the smallest (start_ns, task_id)
    first_start_ns  INTEGER,
    first_input     TEXT,
    last_task_id    TEXT,             -- task with the largest (start_ns, task_id)
    last_start_ns   INTEGER,
    last_input      TEXT,
    last_output     TEXT,
    last_status     TEXT,
    success_count   INTEGER NOT NULL DEFAULT 0,  -- tasks whose latest flag is success
    failure_count   INTEGER NOT NULL DEFAULT 0,
    error_count     INTEGER NOT NULL DEFAULT 0,  -- tasks with status 'error'
    last_flag       TEXT              -- flag of the last task (its latest feedback), NULL if none
);  -- last_flag came later: migration sessions_last_flag
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions(user_id, start_ns);
CREATE INDEX IF NOT EXISTS sessions_by_start ON sessions(start_ns);
-- the session list's other sort keys (views: ORDER BY <key>, session_id LIMIT), and the
-- duration quantiles of the session insights (ORDER BY duration LIMIT 2 OFFSET k)
CREATE INDEX IF NOT EXISTS sessions_by_end ON sessions(end_ns, session_id);
CREATE INDEX IF NOT EXISTS sessions_by_task_count ON sessions(task_count, session_id);
CREATE INDEX IF NOT EXISTS sessions_by_duration ON sessions((end_ns - start_ns), session_id);
-- what ends sessions (session insights: GROUP BY over this index, no table access)
CREATE INDEX IF NOT EXISTS sessions_by_ending ON sessions(last_flag, last_status, last_input);

CREATE TABLE IF NOT EXISTS users (
    user_id       TEXT PRIMARY KEY,
    task_count    INTEGER NOT NULL DEFAULT 0,
    session_count INTEGER NOT NULL DEFAULT 0,
    first_seen_ns INTEGER,
    last_seen_ns  INTEGER,
    success_count INTEGER NOT NULL DEFAULT 0,
    failure_count INTEGER NOT NULL DEFAULT 0,
    error_count   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS users_by_task_count ON users(task_count);
CREATE INDEX IF NOT EXISTS users_by_last_seen ON users(last_seen_ns);

-- session ends and session feedback (model.records.SessionEventRecord)
CREATE TABLE IF NOT EXISTS session_events (
    trace_id   BLOB NOT NULL,
    span_id    BLOB NOT NULL,
    session_id TEXT NOT NULL,
    kind       TEXT NOT NULL,  -- 'end' | 'feedback'
    flag       TEXT,
    notes      TEXT,
    source     TEXT NOT NULL,
    time_ns    INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS session_events_by_session ON session_events(session_id, time_ns);

-- what log events and annotation spans say of a span (model.records.SpanAnnotationRecord)
CREATE TABLE IF NOT EXISTS span_annotations (
    trace_id      BLOB NOT NULL,
    span_id       BLOB NOT NULL,     -- the span it is about
    annotation_id BLOB NOT NULL,     -- the annotation span's id, or a log record's hash
    annotation_kind TEXT NOT NULL,   -- 'content' | 'feedback' | 'candidate'
    body          TEXT NOT NULL,     -- JSON object
    time_ns       INTEGER NOT NULL,
    PRIMARY KEY (trace_id, span_id, annotation_id)
) WITHOUT ROWID;  -- came later: migration span_annotations

-- ---- the analyzer's work and results (store/sqlite/analysis.py) ----
-- New tasks are found by tasks.rowid (meta 'analysis_tasks_after'); this queue holds the
-- rest: 't' a known task replaced or given feedback, 's' a session with a new event.
CREATE TABLE IF NOT EXISTS analysis_queue (
    seq  INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    key  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_analysis (
    task_id         TEXT PRIMARY KEY,
    session_id      TEXT,
    user_id         TEXT,
    start_ns        INTEGER NOT NULL,
    position        INTEGER,
    eval_label      TEXT NOT NULL,   -- success | failure | unknown
    eval_score      REAL NOT NULL,
    eval_source     TEXT NOT NULL,
    eval_reason     TEXT NOT NULL,
    events          TEXT NOT NULL,   -- JSON [[name, source, score, scope], ...]
    sentiment_score REAL,
    sentiment_label TEXT,
    language        TEXT,
    judge_pending   INTEGER NOT NULL DEFAULT 0,
    analyzed_ns     INTEGER NOT NULL,
    input_tokens    INTEGER,         -- usage (insights/usage.py), NULL when not reported
    output_tokens   INTEGER,
    cost            REAL,
    model           TEXT             -- the model most of its LLM calls name
);  -- the usage columns came later: migrations analysis_usage, analysis_model
CREATE INDEX IF NOT EXISTS task_analysis_by_label ON task_analysis(eval_label, start_ns);
CREATE INDEX IF NOT EXISTS task_analysis_judge ON task_analysis(analyzed_ns)
    WHERE judge_pending = 1;
-- a label's total is position_stats' plus these (tasks without a session)
CREATE INDEX IF NOT EXISTS task_analysis_unplaced ON task_analysis(eval_label)
    WHERE position IS NULL;
-- each user's usage sums (user_facts), covered, over the tasks that report any
CREATE INDEX IF NOT EXISTS task_analysis_usage
    ON task_analysis(user_id, input_tokens, output_tokens, cost)
    WHERE input_tokens IS NOT NULL OR output_tokens IS NOT NULL OR cost IS NOT NULL;
CREATE TABLE IF NOT EXISTS task_events (
    name     TEXT NOT NULL,
    start_ns INTEGER NOT NULL,
    task_id  TEXT NOT NULL,
    PRIMARY KEY (name, start_ns, task_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS session_analysis (
    session_id         TEXT PRIMARY KEY,
    user_id            TEXT,
    state              TEXT NOT NULL,   -- active | ended
    last_activity_ns   INTEGER NOT NULL,
    ended_ns           INTEGER,
    end_reason         TEXT,
    end_evidence       TEXT NOT NULL,   -- JSON [sentence, ...]
    active_duration_ns INTEGER NOT NULL,
    eval_label         TEXT,
    eval_score         REAL,
    eval_source        TEXT,
    eval_reason        TEXT,
    event_counts       TEXT NOT NULL,   -- JSON {name: count}
    analyzed_ns        INTEGER NOT NULL,
    input_tokens       INTEGER,         -- its tasks' usage summed, NULL when none reported
    output_tokens      INTEGER,
    cost               REAL,
    model              TEXT             -- the model most of its tasks used
);
CREATE INDEX IF NOT EXISTS session_analysis_by_state
    ON session_analysis(state, last_activity_ns);
CREATE INDEX IF NOT EXISTS session_analysis_by_reason
    ON session_analysis(end_reason, ended_ns) WHERE end_reason IS NOT NULL;
-- an end reason's count, covered (each then probed in sessions)
CREATE INDEX IF NOT EXISTS session_analysis_by_reason_id
    ON session_analysis(end_reason, state, session_id) WHERE end_reason IS NOT NULL;
-- the ended sessions in id order: their count less those whose session is gone (a merge
-- with the sessions' primary key), and the active-duration distribution, both covered
CREATE INDEX IF NOT EXISTS session_analysis_by_state_id ON session_analysis(state, session_id);
CREATE INDEX IF NOT EXISTS session_analysis_by_active_duration
    ON session_analysis(state, active_duration_ns);
CREATE TABLE IF NOT EXISTS user_analysis (
    user_id       TEXT PRIMARY KEY,
    classes       TEXT NOT NULL DEFAULT '[]',  -- JSON [[label, [reason, ...]], ...]
    success_count INTEGER NOT NULL DEFAULT 0,  -- tasks evaluated success (kept by deltas)
    failure_count INTEGER NOT NULL DEFAULT 0,
    rephrase_count INTEGER NOT NULL DEFAULT 0,
    analyzed_ns   INTEGER NOT NULL DEFAULT 0,
    input_tokens  INTEGER,  -- its tasks' usage summed when classified, NULL when none
    output_tokens INTEGER,
    cost          REAL,
    model         TEXT      -- not computed for users yet: NULL
);
CREATE TABLE IF NOT EXISTS user_classes (
    label   TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (label, user_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_events (
    user_id TEXT NOT NULL,
    name    TEXT NOT NULL,
    count   INTEGER NOT NULL,
    PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS user_days (
    user_id TEXT NOT NULL,
    day     INTEGER NOT NULL,  -- UTC days since the epoch
    tasks   INTEGER NOT NULL,
    PRIMARY KEY (user_id, day)
) WITHOUT ROWID;
-- retention reads every (user, day) with tasks by day: covered (tasks included)
CREATE INDEX IF NOT EXISTS user_days_by_day_tasks ON user_days(day, user_id, tasks);
CREATE TABLE IF NOT EXISTS position_stats (
    position INTEGER PRIMARY KEY,  -- capped at analysis.MAX_POSITION
    success  INTEGER NOT NULL DEFAULT 0,
    failure  INTEGER NOT NULL DEFAULT 0,
    unknown  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS counters (
    name  TEXT PRIMARY KEY,  -- e.g. spans_received, spans_duplicate, tasks_skipped_invalid
    value INTEGER NOT NULL
);
"""
