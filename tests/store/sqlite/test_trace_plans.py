"""The SQLite backend's trace searches go through its indexes (``store.sqlite.traces``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.store.api import TraceQuery
from phospho_otel.store.sqlite import SQLiteStore
from phospho_otel.store.sqlite.traces import candidates_sql
from tests.support.oracle import write
from tests.support.traces import dataset


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[SQLiteStore]:
    """The trace data set in a SQLite store."""
    store = SQLiteStore(tmp_path / "phospho.db", synchronous="NORMAL")
    write(store, dataset())
    yield store
    store.close()


def test_uses_the_indexes(filled: SQLiteStore) -> None:
    """The query plan of each search path uses an index, never a table scan."""
    with filled.read() as reader:
        for query, index in [
            (TraceQuery(tags={"session.id": "s1"}), "spans_by_session"),
            (TraceQuery(tags={"user.id": "u1"}), "spans_by_user"),
            (TraceQuery(service="app"), "spans_by_service"),
            (TraceQuery(service="app", operation="chat"), "spans_by_operation"),
        ]:
            sql, params = candidates_sql(query)
            plan = " ".join(
                str(row[3]) for row in reader.conn.execute("EXPLAIN QUERY PLAN " + sql, params)
            )
            assert index in plan and "SCAN" not in plan, plan
