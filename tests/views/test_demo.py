"""The main job: ``phospho-otel demo`` (what scripts/demo.sh runs after setting up .venv)
starts the aggregator, rotel and the example app, and prints the views."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

from phospho_otel.store import queries
from phospho_otel.store.queries import Page

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import chat_app


class TestDemo:
    def test_demo_end_to_end(self, tmp_path: Path) -> None:
        """The demo exits 0, waits for every task, prints the views; the store agrees with
        the example app's plan."""
        result = subprocess.run(
            [sys.executable, "-m", "phospho_otel", "demo", "--workdir", str(tmp_path),
             "--users", "6", "--sessions", "15", "--seed", "3"],
            capture_output=True, text=True, timeout=240,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        expected = chat_app.summary(chat_app.plan(6, 15, 3))
        assert f"all in: {expected['tasks']} tasks, 15 sessions" in out
        assert "$ phospho-otel sessions --url" in out
        assert re.search(r"^SESSION\s+USER\s+TASKS", out, re.M)
        assert re.search(r"^USER\s+TASKS\s+SESSIONS", out, re.M)
        assert "What ends sessions" in out
        conn = sqlite3.connect(tmp_path / "phospho.db")
        try:
            users = queries.list_users(conn, page=Page("user_id"))
            assert users["total"] == expected["users"]
            assert queries.list_tasks(conn, page=Page("start_time"))["total"] == expected["tasks"]
            flagged = sum(u["success_count"] + u["failure_count"] for u in users["items"])
            assert flagged == expected["feedback"]
            errors = sum(u["error_count"] for u in users["items"])
            assert errors == expected["errors"]
        finally:
            conn.close()
