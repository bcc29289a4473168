"""Files made by an older version of the SQLite backend: opened (read-only, as the CLI's
``--db`` does) they are upgraded first, and answer the same insights as a file made by
this version."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from phospho_otel.insights import session_insights, user_insights
from phospho_otel.store import open_store
from phospho_otel.store.sqlite import schema
from tests.support.dataset import write_scripted_file


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
                "sessions_last_flag"}
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
