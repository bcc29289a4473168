"""Named, recorded upgrades of the SQLite file, run at open (as sqlite-utils' migrations).

A file made by this version gets ``schema.DDL`` and every migration recorded as applied
(it needs none). A file made by an older version gets, in order, each migration it has
not had, then the DDL (which adds any table or index it lacks). Each migration runs in
its own ``BEGIN IMMEDIATE`` transaction, checks again inside it whether another process
did the work meanwhile, and is recorded in the ``migrations`` table with it, so opening
the same file from several processes at once is safe.

A new migration is one function appended to ``MIGRATIONS``, and ``schema.SCHEMA_VERSION``
goes up by one.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable

from phospho_otel.store.sqlite import schema

__all__ = ["MIGRATIONS", "USAGE_COLUMNS", "migrate", "pending"]

logger = logging.getLogger(__name__)


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _sessions_last_flag(conn: sqlite3.Connection) -> None:
    """``sessions.last_flag``: the flag of each session's last task, filled from ``tasks``
    (before the DDL: its ``sessions_by_ending`` index needs the column)."""
    if "last_flag" in _columns(conn, "sessions"):
        return
    conn.execute("ALTER TABLE sessions ADD COLUMN last_flag TEXT")
    conn.execute(
        "UPDATE sessions SET last_flag ="
        " (SELECT flag FROM tasks WHERE task_id = sessions.last_task_id)"
    )


USAGE_COLUMNS = (("input_tokens", "INTEGER"), ("output_tokens", "INTEGER"), ("cost", "REAL"))
"""The usage columns of the analysis tables (``analysis_usage``), NULL when unknown."""


def _analysis_usage(conn: sqlite3.Connection) -> None:
    """``input_tokens``, ``output_tokens``, ``cost`` on ``task_analysis``,
    ``session_analysis`` and ``user_analysis``, NULL in the rows already there: analyses
    made before have no usage until analysed again (``phospho-otel reevaluate``). A table
    the file does not have yet is left to the DDL."""
    for table in ("task_analysis", "session_analysis", "user_analysis"):
        present = _columns(conn, table)
        if not present:
            continue
        for column, sql_type in USAGE_COLUMNS:
            if column not in present:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {sql_type}")


def _analysis_model(conn: sqlite3.Connection) -> None:
    """``model`` on ``task_analysis``, ``session_analysis`` and ``user_analysis``, NULL in
    the rows already there (until analysed again, as ``analysis_usage``'s columns)."""
    for table in ("task_analysis", "session_analysis", "user_analysis"):
        present = _columns(conn, table)
        if present and "model" not in present:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN model TEXT")


def _span_annotations(conn: sqlite3.Connection) -> None:
    """The ``span_annotations`` table, empty (``schema.DDL`` would add it too; recorded so
    that the version says the file has it)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS span_annotations (trace_id BLOB NOT NULL,"
        " span_id BLOB NOT NULL, annotation_id BLOB NOT NULL, annotation_kind TEXT NOT NULL,"
        " body TEXT NOT NULL, time_ns INTEGER NOT NULL,"
        " PRIMARY KEY (trace_id, span_id, annotation_id)) WITHOUT ROWID"
    )


MIGRATIONS: tuple[tuple[str, Callable[[sqlite3.Connection], None]], ...] = (
    ("sessions_last_flag", _sessions_last_flag),
    ("analysis_usage", _analysis_usage),
    ("analysis_model", _analysis_model),
    ("span_annotations", _span_annotations),
)
"""(name, function) in the order they run; a function sees an older file's tables."""

assert len(MIGRATIONS) == schema.SCHEMA_VERSION - 1, "a migration per schema version"


def _applied(conn: sqlite3.Connection) -> set[str]:
    if not _columns(conn, "migrations"):
        return set()
    return {name for (name,) in conn.execute("SELECT name FROM migrations")}


def _record(conn: sqlite3.Connection, name: str) -> None:
    conn.execute("INSERT OR IGNORE INTO migrations (name, applied_at) VALUES (?, ?)",
                 (name, time.time_ns()))


def pending(conn: sqlite3.Connection) -> list[str]:
    """Names of the migrations this file still needs (none for a new, empty file)."""
    if not _columns(conn, "sessions"):
        return []
    applied = _applied(conn)
    return [name for name, _ in MIGRATIONS if name not in applied]


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file (opened in autocommit mode) to ``schema.DDL``: run the pending
    migrations, then the DDL, record what was done, and mark the file as ours
    (``schema.APPLICATION_ID``). The caller has checked that the file is ours or new
    (``files.inspect``)."""
    new_file = not _columns(conn, "sessions")
    if not new_file:
        for name, upgrade in MIGRATIONS:
            if name in _applied(conn):
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS migrations"
                    " (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
                )
                if name not in _applied(conn):  # not done meanwhile by another process
                    upgrade(conn)
                    _record(conn, name)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            logger.info("SQLite migration %s applied", name)
    conn.executescript(schema.DDL)
    conn.execute("BEGIN IMMEDIATE")
    try:
        if new_file:
            for name, _ in MIGRATIONS:
                _record(conn, name)
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (str(schema.SCHEMA_VERSION),),
        )
        if conn.execute("PRAGMA application_id").fetchone()[0] != schema.APPLICATION_ID:
            conn.execute(f"PRAGMA application_id = {schema.APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
