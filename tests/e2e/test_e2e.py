"""End to end: SDK (separate process) -> rotel -> aggregator, then the views through the
HTTP API and the CLI, against figures known in advance (see workload.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from phospho_otel.cli import main
from phospho_otel.server import AggregatorServer, ServerSettings
from tools.rotel import RotelCollector

WORKLOAD = Path(__file__).with_name("workload.py")


def _wait_until_in(client: httpx.Client, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        tasks = client.get("/api/tasks", params={"limit": 1}).json()["total"]
        ins = client.get("/api/insights/users").json()
        if tasks == 7 and ins["success_rate"] == 0.75:  # 3 successes, 1 failure
            return
        if time.monotonic() > deadline:
            pytest.fail(f"not all in after {timeout}s: {tasks} tasks, {ins}")
        time.sleep(0.1)


@pytest.fixture(scope="module", params=["http", "grpc"])
def pipeline(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[AggregatorServer]:
    """Aggregator + rotel (exporting to it over OTLP/``param``) fed by the workload over
    OTLP/gRPC; built once per protocol."""
    tmp_path = tmp_path_factory.mktemp(f"e2e-{request.param}")
    settings = ServerSettings(store=str(tmp_path / "e2e.db"), http_port=0, grpc_port=0)
    with AggregatorServer(settings) as server:
        port = server.http_port if request.param == "http" else server.grpc_port
        with RotelCollector(f"http://127.0.0.1:{port}", exporter_protocol=request.param,
                            log_path=tmp_path / "rotel.log") as rotel:
            result = subprocess.run(
                [sys.executable, str(WORKLOAD), rotel.grpc_endpoint, "grpc"],
                capture_output=True, text=True, timeout=60,
            )
            assert result.returncode == 0, result.stderr
            with httpx.Client(base_url=server.http_url) as client:
                _wait_until_in(client)
        yield server


class TestEndToEnd:
    def test_views_over_http(self, pipeline: AggregatorServer) -> None:
        """Sessions, users, tasks and insights match the scripted workload."""
        with httpx.Client(base_url=pipeline.http_url) as c:
            sessions = {s["session_id"]: s for s in c.get("/api/sessions").json()["items"]}
            assert set(sessions) == {"e2e-s1", "e2e-s2", "e2e-s3"}
            s1 = sessions["e2e-s1"]
            assert (s1["user_id"], s1["task_count"], s1["first_input"], s1["last_input"],
                    s1["last_output"], s1["last_task_id"], s1["success_count"],
                    s1["failure_count"]) == ("alice", 3, "hi", "bye", "ciao", "e2e-a3", 1, 1)
            assert s1["duration_s"] > 0.02
            assert (sessions["e2e-s2"]["task_count"], sessions["e2e-s2"]["error_count"]) == (1, 1)
            s3 = sessions["e2e-s3"]
            assert (s3["success_count"], s3["user_id"]) == (2, "bob")

            detail = c.get("/api/sessions/e2e-s1").json()
            assert [(t["task_id"], t["position"], t["is_last"], t["flag"]) for t in
                    detail["tasks"]] == [("e2e-a1", 1, False, None),
                                         ("e2e-a2", 2, False, "success"),
                                         ("e2e-a3", 3, True, "failure")]
            a2 = c.get("/api/tasks/e2e-a2").json()
            assert (a2["input"], a2["output"], a2["metadata"]["model"]) == ("weather?", "sunny",
                                                                          "m1")
            assert c.get("/api/tasks/e2e-a3").json()["notes"] == "too short"
            assert c.get("/api/tasks/e2e-a4").json()["status"] == "error"
            c1 = c.get("/api/tasks/e2e-c1").json()
            assert (c1["session_id"], c1["user_id"], c1["position"]) == (None, "carol", None)

            users = {u["user_id"]: u for u in c.get("/api/users").json()["items"]}
            assert {k: (u["task_count"], u["session_count"], u["success_rate"])
                    for k, u in users.items()} == {"alice": (4, 2, 0.5), "bob": (2, 1, 1.0),
                                                   "carol": (1, 0, None)}
            assert users["alice"]["avg_tasks_per_session"] == 2.0
            alice = c.get("/api/users/alice").json()
            assert {s["session_id"] for s in alice["sessions"]} == {"e2e-s1", "e2e-s2"}

            ins = c.get("/api/insights/sessions").json()
            assert (ins["session_count"], ins["task_count"], ins["avg_tasks_per_session"]) == (
                3, 6, 2.0)
            assert ins["length_histogram"] == [{"task_count": n, "sessions": 1}
                                               for n in (1, 2, 3)]
            endings = {(g["flag"], g["status"]) for g in ins["endings"]}
            assert endings == {("failure", "unset"), (None, "error"), ("success", "unset")}
            users_ins = c.get("/api/insights/users").json()
            assert (users_ins["user_count"], users_ins["top_users"][0]["user_id"]) == (3, "alice")

    def test_views_in_cli(self, pipeline: AggregatorServer) -> None:
        """The CLI shows the same figures, over HTTP and from the SQLite file."""
        runner = CliRunner()
        for source in (["--url", pipeline.http_url], ["--db", pipeline.settings.store]):
            out = runner.invoke(main, ["sessions", *source, "--json"])
            assert out.exit_code == 0, out.output
            counts = {s["session_id"]: s["task_count"] for s in json.loads(out.output)["items"]}
            assert counts == {"e2e-s1": 3, "e2e-s2": 1, "e2e-s3": 2}
            out = runner.invoke(main, ["users", *source])
            assert out.exit_code == 0, out.output
            lines = {line.split()[0]: line.split() for line in out.output.splitlines()[2:-1]}
            assert lines["alice"][1:3] == ["4", "2"]
            assert lines["bob"][-2] == "1.00"  # SUCCESS, then CLASSES
            out = runner.invoke(main, ["insights", *source, "--json"])
            assert json.loads(out.output)["sessions"]["session_count"] == 3
