"""The command line: view commands on the file (--db) and on a server (--url), and
``python -m phospho_otel serve`` as a real process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.server import AggregatorServer


def run(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


class TestViewCommands:
    def test_sessions_table_and_json(self, db_path: Path) -> None:
        """`sessions` prints a table for people and the API's JSON with --json."""
        table = run("sessions", "--db", str(db_path))
        assert table.splitlines()[0].split()[:3] == ["SESSION", "USER", "TASKS"]
        assert "(3 of 3 sessions)" in table
        assert re.search(r"^s1\s+alice\s+3\s", table, re.M)
        data = json.loads(run("sessions", "--db", str(db_path), "--json", "--sort",
                              "duration_s"))
        assert [s["session_id"] for s in data["items"]] == ["s1", "s2", "s3"]

    def test_one_session_user_task(self, db_path: Path) -> None:
        """Given an id, `sessions`, `users` and `tasks` show that item."""
        data = json.loads(run("sessions", "s1", "--db", str(db_path), "--json"))
        assert [t["position"] for t in data["tasks"]] == [1, 2, 3]
        assert "book a flight" in run("sessions", "s1", "--db", str(db_path))
        user = json.loads(run("users", "alice", "--db", str(db_path), "--json"))
        # from the evaluations, feedback first (docs/insights.md)
        assert (user["task_count"], user["success_rate"]) == (4, 0.75)
        assert "avg_session_duration_s" in run("users", "alice", "--db", str(db_path))
        task = json.loads(run("tasks", "a3", "--db", str(db_path), "--json"))
        assert (task["flag"], task["is_last"]) == ("success", True)

    def test_users_tasks_insights(self, db_path: Path) -> None:
        """`users`, `tasks` and `insights` list with filters."""
        users = json.loads(run("users", "--db", str(db_path), "--json", "--sort",
                               "task_count"))
        assert [u["user_id"] for u in users["items"]] == ["alice", "bob", "carol"]
        tasks = json.loads(run("tasks", "--db", str(db_path), "--json", "--user", "bob"))
        assert {t["task_id"] for t in tasks["items"]} == {"b1", "b2"}
        insights = json.loads(run("insights", "--db", str(db_path), "--json"))
        assert insights["sessions"]["session_count"] == 3
        assert insights["users"]["user_count"] == 3
        text = run("insights", "--db", str(db_path))
        assert "What ends sessions" in text and "refund?" in text

    def test_over_http(self, server: AggregatorServer, db_path: Path) -> None:
        """--url reads a running server and gives the same JSON as --db (links included:
        null without a Jaeger UI, both ways)."""
        over_http = json.loads(run("sessions", "--url", server.http_url, "--json"))
        direct = json.loads(run("sessions", "--db", str(db_path), "--json"))
        assert all(s["links"] is None for s in direct["items"])
        assert over_http == direct
        assert "alice" in run("users", "--url", server.http_url)

    def test_errors(self, db_path: Path, tmp_path: Path, server: AggregatorServer) -> None:
        """Unknown ids, bad parameters and a missing file exit non-zero with a message."""
        runner = CliRunner()
        for args in (["sessions", "nope", "--db", str(db_path)],
                     ["sessions", "nope", "--url", server.http_url],
                     ["sessions", "--db", str(db_path), "--sort", "bogus"],
                     ["sessions", "--url", server.http_url, "--from", "yesterday"],
                     ["users", "--db", str(tmp_path / "missing.db")]):
            result = runner.invoke(main, args)
            assert result.exit_code == 1, args
            assert "Error:" in result.output, args


class TestServe:
    def _start(self, tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
               ) -> tuple[subprocess.Popen[str], str, str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "phospho_otel", "serve", "--db", str(tmp_path / "p.db"),
             "--http-port", "0", "--grpc-port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(r"phospho-otel listening http=127\.0\.0\.1:(\d+) "
                             r"grpc=127\.0\.0\.1:(\d+)\n", line)
        if match is None:
            proc.kill()
            pytest.fail(f"unexpected first line {line!r}; stderr: {proc.communicate()[1]}")
        return proc, match.group(1), match.group(2)

    def test_serve_open(self, tmp_path: Path) -> None:
        """`serve` without a token warns that it is open, serves, and stops on SIGTERM."""
        proc, http_port, _ = self._start(tmp_path)
        try:
            r = httpx.get(f"http://127.0.0.1:{http_port}/api/sessions")
            assert r.json()["total"] == 0
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "no token set" in err

    def test_serve_token_from_env(self, tmp_path: Path) -> None:
        """PHOSPHO_TOKEN protects the API; no open-service warning then."""
        proc, http_port, _ = self._start(tmp_path, env={"PHOSPHO_TOKEN": "tok"})
        try:
            url = f"http://127.0.0.1:{http_port}/api/users"
            assert httpx.get(url).status_code == 401
            ok = httpx.get(url, headers={"Authorization": "Bearer tok"})
            assert ok.status_code == 200
        finally:
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "no token set" not in err

    @pytest.mark.parametrize("taken", ["--http-port", "--grpc-port"])
    def test_port_in_use(self, tmp_path: Path, server: AggregatorServer, taken: str) -> None:
        """A port that is taken (HTTP or gRPC) is a clear error, not a traceback."""
        port = server.http_port if taken == "--http-port" else server.grpc_port
        ports = {"--http-port": "0", "--grpc-port": "0", taken: str(port)}
        result = subprocess.run(
            [sys.executable, "-m", "phospho_otel", "serve", "--db", str(tmp_path / "q.db"),
             *(x for kv in ports.items() for x in kv)],
            capture_output=True, text=True, timeout=30,
        )
        assert result.returncode == 1
        assert "Error: cannot start" in result.stderr
        assert "Traceback" not in result.stderr
