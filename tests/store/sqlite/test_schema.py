"""The SQLite schema follows the records: each table's columns are its record's fields,
in their order (the writer generates its statements from ``<Record>._fields``), plus only
the table's own columns."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from phospho_otel.model.records import FeedbackRecord, Origin, SpanRecord, TaskRecord
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.sqlite import SQLiteStore

TABLES = [
    pytest.param("spans", SpanRecord._fields, ("origin_id",), id="spans"),
    pytest.param("tasks", (*TaskRecord._fields, "flag", "flag_time_ns", "notes", "flag_source"),
                 (), id="tasks"),
    pytest.param("feedback", FeedbackRecord._fields, (), id="feedback"),
    pytest.param("sessions", SessionRollup._fields, (), id="sessions"),
    pytest.param("users", UserRollup._fields, (), id="users"),
    pytest.param("origins", Origin._fields, ("id",), id="origins"),
]
"""(table, its record's fields in order, the table's own columns besides them)."""


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store file just made by this version."""
    path = tmp_path_factory.mktemp("schema") / "fresh.db"
    SQLiteStore(path).close()
    return path


def columns(path: Path, table: str) -> list[str]:
    with closing(sqlite3.connect(path)) as conn:
        return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


@pytest.mark.parametrize(("table", "fields", "own"), TABLES)
def test_columns_are_the_record_fields_in_order(fresh: Path, table: str,
                                                fields: tuple[str, ...],
                                                own: tuple[str, ...]) -> None:
    """The table's columns, without its own ones, are exactly the record's fields in
    order; and it has no other column."""
    found = columns(fresh, table)
    assert found, f"no table {table}"
    assert [c for c in found if c not in own] == list(fields)
    assert sorted(set(found) - set(fields)) == sorted(own)
