"""Migration ``analysis_model`` (schema version 4): a file made before it gets a NULL
``model`` column on each analysis table at open, keeping its usage figures; analysed
again, its tasks and sessions get their model."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.model.analysis import Usage
from phospho_otel.store import open_store
from phospho_otel.store.sqlite import migrations, schema
from tests.support.oracle import write
from tests.support.otlp import make_request, make_span, task_span

MODEL = "analysis_model"
TABLES = ("task_analysis", "session_analysis", "user_analysis")
NOW = 10**18 + 10**13


def _columns(c: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in c.execute(f"PRAGMA table_info({table})")}


def test_version_3_file_gets_the_model(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    task = task_span("t1", session_id="s1", user_id="u1", start_ns=10**18)
    call = make_span({"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 12,
                      "gen_ai.usage.output_tokens": 4, "gen_ai.usage.cost": 0.25},
                     trace_id=task.trace_id, span_id=b"\x01" * 8,
                     parent_span_id=task.span_id, start_ns=10**18 + 1)
    store = open_store(str(path))
    try:
        write(store, make_request([task, call]))
        analyzer = Analyzer(store, clock=lambda: NOW, classify_every_s=0)
        while analyzer.run_once():
            pass
    finally:
        store.close()
    with sqlite3.connect(path) as c:  # as version 3 left it
        for table in TABLES:
            c.execute(f"ALTER TABLE {table} DROP COLUMN model")
        c.execute("DELETE FROM migrations WHERE name = ?", (MODEL,))
        c.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
        assert migrations.pending(c) == [MODEL]
    c.close()
    store = open_store(str(path), read_only=True)  # upgraded first, then read
    try:
        with store.read() as r:
            assert r.task_analyses(["t1"])["t1"].usage == Usage(12, 4, 0.25)
            assert r.session_analyses(["s1"])["s1"].usage == Usage(12, 4, 0.25)
    finally:
        store.close()
    with sqlite3.connect(path) as c:
        assert all("model" in _columns(c, t) for t in TABLES)
        assert migrations.pending(c) == []
        assert c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() \
            == (str(schema.SCHEMA_VERSION),)
    c.close()
    store = open_store(str(path))
    try:
        Analyzer(store, clock=lambda: NOW, classify_every_s=0).reanalyze()
        with store.read() as r:
            assert r.task_analyses(["t1"])["t1"].usage == Usage(12, 4, 0.25, "gpt-4o-mini")
            assert r.session_analyses(["s1"])["s1"].usage == Usage(12, 4, 0.25, "gpt-4o-mini")
    finally:
        store.close()
