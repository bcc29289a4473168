"""Files made by an older version of the SQLite backend: opened (read-only, as the CLI's
``--db`` does) they are upgraded first, and answer the same insights as a file made by
this version."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from phospho_otel.insights import session_insights, user_insights
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.model.analysis import Usage
from phospho_otel.store import open_store
from phospho_otel.store.sqlite import migrations, schema
from tests.support.dataset import write_scripted_file
from tests.support.oracle import write
from tests.support.otlp import make_request, make_span, task_span

USAGE = "analysis_usage"
"""The migration that adds the usage columns (schema version 3)."""
USAGE_TABLES = ("task_analysis", "session_analysis", "user_analysis")


def insights_of(path: Path) -> tuple[Any, Any]:
    """Session and user insights of the file, opened read-only."""
    store = open_store(str(path), read_only=True)
    try:
        with store.read() as r:
            return session_insights(r), user_insights(r)
    finally:
        store.close()


def columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def indexes(conn: sqlite3.Connection) -> set[str]:
    return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}


def drop_usage(c: sqlite3.Connection) -> None:
    """Make the file's analysis tables as before migration ``analysis_usage``."""
    c.execute("DROP INDEX task_analysis_usage")
    for table in USAGE_TABLES:
        for column, _ in migrations.USAGE_COLUMNS:
            c.execute(f"ALTER TABLE {table} DROP COLUMN {column}")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A SQLite file of this version holding the scripted data set."""
    return write_scripted_file(tmp_path / "views.db")


class TestOlderFiles:
    def test_without_last_flag_column(self, db_path: Path) -> None:
        """A file made before sessions.last_flag, opened read-only, is upgraded and gives
        the same insights."""
        before = insights_of(db_path)
        assert any(g.flag is not None for g in before[0].endings)
        with sqlite3.connect(db_path) as c:  # make it a version-1 file
            c.execute("DROP INDEX sessions_by_ending")
            c.execute("ALTER TABLE sessions DROP COLUMN last_flag")
            c.execute("DROP TABLE migrations")
            drop_usage(c)
            c.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
        c.close()
        with sqlite3.connect(db_path) as c:
            assert "last_flag" not in columns(c, "sessions")
        c.close()
        assert insights_of(db_path) == before
        with sqlite3.connect(db_path) as c:
            assert "last_flag" in columns(c, "sessions")
            assert "sessions_by_ending" in indexes(c)
            assert {n for (n,) in c.execute("SELECT name FROM migrations")} == {
                name for name, _ in migrations.MIGRATIONS}
            assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                             ).fetchone() == (str(schema.SCHEMA_VERSION),)
        c.close()

    def test_without_flagged_index(self, db_path: Path) -> None:
        """A file made before the tasks_flagged index gives the same insights."""
        before = insights_of(db_path)
        with sqlite3.connect(db_path) as c:
            c.execute("DROP INDEX tasks_flagged")
        c.close()
        assert insights_of(db_path) == before
        open_store(str(db_path)).close()  # a writable open adds what the file lacks
        with sqlite3.connect(db_path) as c:
            assert "tasks_flagged" in indexes(c)
        c.close()
        assert insights_of(db_path) == before


class TestUsageColumns:
    """A file made before the usage columns (schema version 2) gets them at open, NULL
    in the analyses it holds, which keep everything else; analysed again, its tasks,
    sessions and users get their usage."""

    @staticmethod
    def analysed_file(path: Path) -> None:
        """A task with a GenAI call under it, analysed, then the file made version 2."""
        task = task_span("t1", session_id="s1", user_id="u1", key="t1", start_ns=10**18)
        call = make_span({"gen_ai.operation.name": "chat", "gen_ai.usage.input_tokens": 12,
                          "gen_ai.usage.output_tokens": 4, "gen_ai.usage.cost": 0.25},
                         trace_id=task.trace_id, span_id=b"\x01" * 8,
                         parent_span_id=task.span_id, start_ns=10**18 + 1)
        store = open_store(str(path))
        try:
            write(store, make_request([task, call]))
            analyzer = Analyzer(store, clock=lambda: 10**18 + 10**13, classify_every_s=0)
            while analyzer.run_once():
                pass
            with store.read() as r:
                assert r.task_analyses(["t1"])["t1"].usage == Usage(12, 4, 0.25)
        finally:
            store.close()
        with sqlite3.connect(path) as c:
            drop_usage(c)
            c.execute("DELETE FROM migrations WHERE name = ?", (USAGE,))
            c.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
            assert migrations.pending(c) == [USAGE]
        c.close()

    def test_old_file_gets_the_columns(self, tmp_path: Path) -> None:
        path = tmp_path / "v2.db"
        self.analysed_file(path)
        with sqlite3.connect(path) as c:
            before = c.execute("SELECT task_id, eval_label, eval_source, events"
                               " FROM task_analysis").fetchall()
            assert "input_tokens" not in columns(c, "task_analysis")
        c.close()
        store = open_store(str(path), read_only=True)  # upgraded first, then read
        try:
            with store.read() as r:
                old = r.task_analyses(["t1"])["t1"]
                assert old.usage is None and old.evaluation.label
                assert r.session_analyses(["s1"])["s1"].usage is None
                assert r.user_analyses(["u1"])["u1"].usage is None
        finally:
            store.close()
        with sqlite3.connect(path) as c:
            for table in USAGE_TABLES:
                assert {"input_tokens", "output_tokens", "cost"} <= columns(c, table), table
            assert "task_analysis_usage" in indexes(c)
            assert c.execute("SELECT task_id, eval_label, eval_source, events"
                             " FROM task_analysis").fetchall() == before
            assert migrations.pending(c) == []
            assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                             ).fetchone() == (str(schema.SCHEMA_VERSION),)
        c.close()
        store = open_store(str(path))  # analysed again: the usage is filled
        try:
            Analyzer(store, clock=lambda: 10**18 + 10**13, classify_every_s=0).reanalyze()
            with store.read() as r:
                assert r.task_analyses(["t1"])["t1"].usage == Usage(12, 4, 0.25)
                assert r.session_analyses(["s1"])["s1"].usage == Usage(12, 4, 0.25)
                assert r.user_analyses(["u1"])["u1"].usage == Usage(12, 4, 0.25)
        finally:
            store.close()
