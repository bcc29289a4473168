"""The main job: ``python tools/demo.py`` (what scripts/demo.sh runs after setting up
.venv) starts the aggregator, rotel and the example app, and prints the views."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from phospho_otel.store import open_store
from phospho_otel.store.api import Page, TaskFilter, UserFilter

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "examples"))
import chat_app  # noqa: E402


class TestDemo:
    def test_demo_end_to_end(self, tmp_path: Path) -> None:
        """The demo waits for every task, prints the views, then serves the dashboard
        until Ctrl-C and exits 0; the store agrees with the example app's plan."""
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "tools" / "demo.py"), "--workdir", str(tmp_path),
             "--users", "6", "--sessions", "15", "--seed", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )
        try:
            assert process.stdout is not None
            lines: list[str] = []
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                line = process.stdout.readline()
                if not line:
                    break
                lines.append(line)
                if line.startswith("dashboard: "):
                    break
            out = "".join(lines)
            found = re.search(r"^dashboard: (http://\S+/) ", out, re.M)
            assert found, out
            page = httpx.get(found.group(1) + "sessions", timeout=30)
            assert page.status_code == 200
            assert 'data-list="sessions"' in page.text
        finally:
            process.send_signal(signal.SIGINT)
            rest, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, out + rest + stderr
        expected = chat_app.summary(chat_app.plan(6, 15, 3))
        assert f"all in: {expected['tasks']} tasks, 15 sessions" in out
        assert "$ phospho-otel sessions --url" in out
        assert re.search(r"^SESSION\s+USER\s+TASKS", out, re.M)
        assert re.search(r"^USER\s+TASKS\s+SESSIONS", out, re.M)
        assert "What ends sessions" in out
        store = open_store(str(tmp_path / "phospho.db"), read_only=True)
        try:
            with store.read() as reader:
                users = reader.list_users(UserFilter(), Page("user_id", limit=1000))
                tasks = reader.list_tasks(TaskFilter(), Page("start_time"))
        finally:
            store.close()
        assert users.total == expected["users"]
        assert len(users.items) == expected["users"]
        assert tasks.total == expected["tasks"]
        flagged = sum(u.rollup.success_count + u.rollup.failure_count for u in users.items)
        assert flagged == expected["feedback"]
        errors = sum(u.rollup.error_count for u in users.items)
        assert errors == expected["errors"]
