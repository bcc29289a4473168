"""A file made before ``sessions.last_flag`` (schema version 1) is upgraded at open by
``store/sqlite/migrations.py``: the column is added and filled, its index made, the
migration recorded in the ``migrations`` table; opening again changes nothing. A
read-only open upgrades it too, then reads it."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.errors import StoreError
from phospho_otel.model.rollup import SessionRollup
from phospho_otel.store.sqlite import SQLiteStore, migrations, schema
from tests.store_conformance.test_writes import flag_workload
from tests.support.oracle import check_store, read_state, write
from tests.support.otlp import make_request, task_span

LAST_FLAG = "sessions_last_flag"
"""The migration that adds ``sessions.last_flag``."""
LATER = [name for name, _ in migrations.MIGRATIONS][1:]
"""The migrations after it (a version-1 file needs them too)."""


def last_flags(store: SQLiteStore) -> dict[str, tuple[str | None, str | None]]:
    """session id -> (last task id, last flag), through the store API."""
    return {k: (s.last_task_id, s.last_flag) for k, s in read_state(store).sessions.items()}


def make_old_file(path: Path) -> tuple[ExportTraceServiceRequest, dict[str, object]]:
    """A file holding the last-flag workload as version 1 made it: no
    ``sessions.last_flag``, no ``sessions_by_ending`` index, no ``migrations`` table,
    no usage columns (``drop_usage``), ``schema_version`` 1. Returns the request written
    and each session's expected (last task, last flag)."""
    spans, expected = flag_workload(random.Random(7))
    request = make_request(spans)
    store = SQLiteStore(path)
    write(store, request)
    store.close()
    with closing(sqlite3.connect(path, isolation_level=None)) as c:
        c.execute("DROP INDEX sessions_by_ending")
        c.execute("ALTER TABLE sessions DROP COLUMN last_flag")
        c.execute("DROP TABLE migrations")
        drop_usage(c)
        c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        assert "last_flag" not in columns(c, "sessions")
        assert migrations.pending(c) == [LAST_FLAG, *LATER]
    return request, expected


def drop_usage(c: sqlite3.Connection) -> None:
    """Remove what migration ``analysis_usage`` adds (schema version 3)."""
    c.execute("DROP INDEX task_analysis_usage")
    for table in ("task_analysis", "session_analysis", "user_analysis"):
        for column, _ in migrations.USAGE_COLUMNS:
            c.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


def columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def file_state(path: Path) -> dict[str, object]:
    """What an upgrade changes in the file: its schema, the migrations recorded (with
    their times), its schema version, and the sessions."""
    with closing(sqlite3.connect(path)) as c:
        return {
            "schema": sorted(c.execute("SELECT type, name, sql FROM sqlite_master").fetchall(),
                             key=repr),
            "migrations": c.execute("SELECT name, applied_at FROM migrations").fetchall(),
            "meta": c.execute("SELECT key, value FROM meta ORDER BY key").fetchall(),
            "sessions": c.execute("SELECT * FROM sessions ORDER BY session_id").fetchall(),
        }


def check_upgraded(path: Path) -> None:
    """The file has what this version's DDL gives, and the migration is recorded."""
    with closing(sqlite3.connect(path)) as c:
        assert columns(c, "sessions") == list(SessionRollup._fields)
        indexes = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
        assert "sessions_by_ending" in indexes
        assert sorted(name for (name,) in c.execute("SELECT name FROM migrations")) == sorted(
            [LAST_FLAG, *LATER])
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (
            str(schema.SCHEMA_VERSION),)
        assert migrations.pending(c) == []


class TestOldFile:
    """A file made before sessions.last_flag gets the column, filled, at open."""

    def test_column_added_and_filled(self, tmp_path: Path) -> None:
        """Drop the column (and its index) from a file; reopening restores both, records
        the migration, and the file holds what a new one would; opening again changes
        nothing."""
        path = tmp_path / "old.db"
        request, expected = make_old_file(path)
        store = SQLiteStore(path)
        try:
            assert last_flags(store) == expected
            check_store(store, [request])
        finally:
            store.close()
        check_upgraded(path)
        before = file_state(path)
        store = SQLiteStore(path)  # opening again changes nothing
        try:
            assert last_flags(store) == expected
        finally:
            store.close()
        assert file_state(path) == before

    def test_upgraded_file_keeps_working(self, tmp_path: Path) -> None:
        """Writes to an upgraded file keep the sessions' last flag (the filled column is
        merged into like a new one)."""
        path = tmp_path / "old.db"
        request, _ = make_old_file(path)
        store = SQLiteStore(path)
        try:
            more = make_request([task_span("s00-t9", session_id="s00", user_id="u",
                                           start_ns=max(s.start_time_unix_nano for s in
                                                        request.resource_spans[0]
                                                        .scope_spans[0].spans) + 1)])
            write(store, more)
            check_store(store, [request, more])
            assert last_flags(store)["s00"] == ("s00-t9", None)
        finally:
            store.close()

    def test_read_only_open_upgrades(self, tmp_path: Path) -> None:
        """SQLiteStore(path, read_only=True) of an old file upgrades it first, then reads
        it; it still refuses to write."""
        path = tmp_path / "old.db"
        request, expected = make_old_file(path)
        store = SQLiteStore(path, read_only=True)
        try:
            assert last_flags(store) == expected
            check_store(store, [request])
            with pytest.raises(StoreError):
                write(store, make_request([task_span("late")]))
        finally:
            store.close()
        check_upgraded(path)
        before = file_state(path)
        SQLiteStore(path, read_only=True).close()
        SQLiteStore(path).close()
        assert file_state(path) == before

    def test_new_file_needs_no_migration(self, tmp_path: Path) -> None:
        """A file made by this version records every migration as applied (it needs
        none), at the current schema version."""
        SQLiteStore(tmp_path / "new.db").close()
        with closing(sqlite3.connect(tmp_path / "new.db")) as c:
            assert sorted(n for (n,) in c.execute("SELECT name FROM migrations")) == sorted(
                name for name, _ in migrations.MIGRATIONS)
            assert migrations.pending(c) == []
        check_upgraded(tmp_path / "new.db")
