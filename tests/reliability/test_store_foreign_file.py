"""``--db`` pointed at another application's SQLite file (issue 9, defect 12): refused
with one line before anything is changed (no WAL switch, no table), the file left byte
for byte as it was. Files of ours carry ``PRAGMA application_id`` ("PHOS"); files made by
older versions (our tables, no id) are accepted and get the id."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from phospho_otel.errors import StoreError
from phospho_otel.store import open_store
from phospho_otel.store.sqlite import SQLiteStore, schema

PHOS = int.from_bytes(b"PHOS", "big")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _application_id(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA application_id").fetchone()[0])
    finally:
        conn.close()


def _foreign(path: Path, *, journal: str = "delete", application_id: int = 0) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"PRAGMA journal_mode={journal}")
    if application_id:
        conn.execute(f"PRAGMA application_id={application_id}")
    conn.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    conn.executemany("INSERT INTO contacts VALUES (?, ?)", [("ann", "1"), ("bob", "2")])
    conn.close()
    return path


class TestForeignFileRefused:
    """Another application's database: refused, unchanged."""

    @pytest.mark.parametrize("read_only", [False, True])
    @pytest.mark.parametrize(("journal", "app_id"), [("delete", 0), ("wal", 0),
                                                     ("delete", 0x12345678)])
    def test_refused_unchanged(self, tmp_path: Path, read_only: bool, journal: str,
                               app_id: int) -> None:
        path = _foreign(tmp_path / "contacts.db", journal=journal, application_id=app_id)
        before = _digest(path)
        files = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(StoreError) as caught:
            open_store(str(path), read_only=read_only)
        message = str(caught.value)
        assert "\n" not in message
        assert "not a phospho-otel store" in message and "contacts" in message
        assert _digest(path) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == files  # no -wal, no -shm
        conn = sqlite3.connect(path)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == journal
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["contacts"]
        finally:
            conn.close()


class TestOurFiles:
    """New files get our application id; older files of ours are accepted and get it."""

    def test_new_file_marked(self, tmp_path: Path) -> None:
        assert getattr(schema, "APPLICATION_ID", None) == PHOS
        SQLiteStore(tmp_path / "new.db").close()
        assert _application_id(tmp_path / "new.db") == PHOS

    def test_empty_database_accepted(self, tmp_path: Path) -> None:
        """A SQLite file without any table (``sqlite3 x.db VACUUM``) is as good as new."""
        path = tmp_path / "empty.db"
        sqlite3.connect(path).execute("VACUUM")
        SQLiteStore(path).close()
        assert _application_id(path) == PHOS

    def test_older_file_adopted(self, tmp_path: Path) -> None:
        path = tmp_path / "old.db"
        SQLiteStore(path).close()
        conn = sqlite3.connect(path)
        conn.execute("PRAGMA application_id=0")  # as a version before the id made it
        conn.commit()
        conn.close()
        read = open_store(str(path), read_only=True)  # reading leaves it as it is
        read.close()
        store = SQLiteStore(path)
        try:
            assert store.counters() == store.counters()
        finally:
            store.close()
        assert _application_id(path) == PHOS
