"""SDK -> rotel (started with the shipped collector-config/rotel.env) -> aggregator, all
real processes on 127.0.0.1: the session and user views come out exact, also when the
collector restarts or the aggregator is killed mid-stream.

Run with ``-s`` to see the figures (tasks sent, tasks in the views).
"""

from __future__ import annotations

import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, TypedDict

import pytest

from tests.collector.collector_support import (
    ROTEL_ENV,
    AggregatorProcess,
    AppProcess,
    RotelFromEnvFile,
    Workload,
)
from tools.rotel import RotelCollector

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def aggregator(tmp_path: Path) -> Iterator[AggregatorProcess]:
    agg = AggregatorProcess(tmp_path / "phospho.db", tmp_path / "aggregator.log")
    agg.start()
    yield agg
    agg.stop(signal.SIGTERM)


@pytest.fixture
def rotel(tmp_path: Path, aggregator: AggregatorProcess) -> Iterator[RotelFromEnvFile]:
    collector = RotelFromEnvFile(ROTEL_ENV, aggregator.url, log_path=tmp_path / "rotel.log")
    collector.start()
    yield collector
    collector.stop(signal.SIGTERM)


def expected_views(result: dict[str, Any]) -> tuple[dict[str, dict[str, Any]],
                                                    dict[str, dict[str, Any]]]:
    """What /api/sessions and /api/users must say, from what the app logged."""
    sessions: dict[str, dict[str, Any]] = {}
    by_session: dict[str, list[str]] = defaultdict(list)
    for task in result["tasks"]:
        by_session[task["session_id"]].append(task["task_id"])
        sessions.setdefault(task["session_id"], {"user_id": task["user_id"]})
    flags = result["feedback"]
    users: dict[str, dict[str, Any]] = {}
    for session_id, task_ids in by_session.items():
        s = sessions[session_id]
        s["task_count"] = len(task_ids)
        s["first_task_id"], s["last_task_id"] = task_ids[0], task_ids[-1]
        s["success_count"] = sum(flags.get(t) == "success" for t in task_ids)
        s["failure_count"] = sum(flags.get(t) == "failure" for t in task_ids)
        s["error_count"] = 0
        u = users.setdefault(s["user_id"], Counter())
        u["task_count"] += s["task_count"]
        u["session_count"] += 1
        u["success_count"] += s["success_count"]
        u["failure_count"] += s["failure_count"]
        u["error_count"] += 0
    return sessions, {k: dict(v) for k, v in users.items()}


def views(aggregator: AggregatorProcess, run_id: str) -> tuple[dict[str, dict[str, Any]],
                                                               dict[str, dict[str, Any]]]:
    """This run's sessions and users as GET /api/sessions and /api/users show them."""
    sessions = _all_pages(aggregator, "/api/sessions")
    users = _all_pages(aggregator, "/api/users")
    return (
        {s["session_id"]: s for s in sessions if run_id in s["session_id"]},
        {u["user_id"]: u for u in users if run_id in u["user_id"]},
    )


def _all_pages(aggregator: AggregatorProcess, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 1000}
    while True:
        page = aggregator.get(path, **params)
        items.extend(page["items"])
        if not page.get("next_cursor"):
            return items
        params = {"limit": 1000, "cursor": page["next_cursor"]}


def tasks_in_views(aggregator: AggregatorProcess, run_id: str) -> int:
    sessions, _ = views(aggregator, run_id)
    return sum(s["task_count"] for s in sessions.values())


def wait_for_views(aggregator: AggregatorProcess, run_id: str, total: int,
                   timeout: float = 60.0) -> int:
    """Poll until the views count ``total`` tasks of this run (or the deadline passes);
    the count seen last."""
    deadline = time.monotonic() + timeout
    seen = -1
    while time.monotonic() < deadline:
        seen = tasks_in_views(aggregator, run_id)
        if seen >= total:
            return seen
        time.sleep(0.1)
    return seen


def wait_until_quiet(aggregator: AggregatorProcess, run_id: str, quiet_s: float = 1.0,
                     timeout: float = 30.0) -> int:
    """Poll until this run's task count in the views has not moved for ``quiet_s`` (the
    collector holds nothing more for the aggregator); the count."""
    deadline = time.monotonic() + timeout
    seen = tasks_in_views(aggregator, run_id)
    since = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.1)
        now = tasks_in_views(aggregator, run_id)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return seen
    raise AssertionError(f"the views kept moving for {timeout} s")


def check_exact(aggregator: AggregatorProcess, workload: Workload,
                result: dict[str, Any]) -> tuple[int, int]:
    """Compare every session and user of the run with what the app logged, and each
    session's task list with the task ids it logged: nothing lost, nothing twice.
    Returns (tasks sent, tasks in the views)."""
    want_sessions, want_users = expected_views(result)
    got_sessions, got_users = views(aggregator, workload.run_id)
    sent = len(result["tasks"])
    in_views = sum(s["task_count"] for s in got_sessions.values())
    print(f"\n[collector-route] tasks sent={sent} tasks in views={in_views}")
    assert set(got_sessions) == set(want_sessions)
    for session_id, want in want_sessions.items():
        got = got_sessions[session_id]
        assert {k: got[k] for k in want} == want, session_id
    assert set(got_users) == set(want_users)
    for user_id, want in want_users.items():
        got = got_users[user_id]
        assert {k: got[k] for k in want} == want, user_id
    logged_by_session: dict[str, list[str]] = defaultdict(list)
    for task in result["tasks"]:
        logged_by_session[task["session_id"]].append(task["task_id"])
    for session_id, logged in logged_by_session.items():
        detail = aggregator.get(f"/api/sessions/{session_id}")
        ids = [t["task_id"] for t in detail["tasks"]]
        assert len(ids) == len(set(ids)), f"{session_id}: a task listed twice"
        assert sorted(ids) == sorted(logged), f"{session_id}: tasks differ"
    assert in_views == sent == workload.total_tasks
    return sent, in_views


def report(name: str, workload: Workload, result: dict[str, Any], sent: int,
           in_views: int, rotel: RotelCollector, **extra: Any) -> None:
    """The figures, for the -s output."""
    retries = rotel.log().count("Exporting failed, will retry")
    fields = " ".join(f"{k}={v}" for k, v in extra.items())
    print(
        f"\n[collector-route] {name}: tasks sent={sent} tasks in views={in_views} "
        f"lost={sent - in_views} sessions={workload.sessions} users={workload.users} "
        f"feedback={len(result['feedback'])} sdk={result['stats']} "
        f"rotel retries logged={retries} {fields}"
    )


class TestRoute:
    """A workload through rotel lands exactly in the session and user views."""

    @pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
    def test_views_exact(self, tmp_path: Path, aggregator: AggregatorProcess,
                         rotel: RotelFromEnvFile, protocol: str) -> None:
        """SDK (over gRPC or HTTP to rotel) -> rotel -> aggregator: every session and user
        of a 360-task workload with feedback is exact."""
        workload = Workload(sessions=24, tasks_per_session=15, users=7, feedback_every=5)
        endpoint = rotel.grpc_endpoint if protocol == "grpc" else rotel.http_endpoint
        app = AppProcess(workload, endpoint, protocol, tmp_path / "app.log")
        result = app.finish()
        assert result["flushed"], result["stats"]
        assert result["stats"]["dropped"] == 0 and result["stats"]["failed"] == 0
        wait_for_views(aggregator, workload.run_id, workload.total_tasks)
        sent, in_views = check_exact(aggregator, workload, result)
        report(f"route sdk-{protocol}", workload, result, sent, in_views, rotel)


    def test_grpc_export_variant(self, tmp_path: Path,
                                 aggregator: AggregatorProcess) -> None:
        """The variant rotel.env describes, rotel -> aggregator over gRPC (port 8317), is
        exact too."""
        rotel = RotelFromEnvFile(
            ROTEL_ENV, f"http://127.0.0.1:{aggregator.grpc_port}",
            log_path=tmp_path / "rotel.log",
            overrides={"ROTEL_OTLP_EXPORTER_PROTOCOL": "grpc"},
        ).start()
        try:
            workload = Workload(sessions=12, tasks_per_session=10, users=5, feedback_every=4)
            app = AppProcess(workload, rotel.http_endpoint, "http/protobuf",
                             tmp_path / "app.log")
            result = app.finish()
            assert result["flushed"], result["stats"]
            wait_for_views(aggregator, workload.run_id, workload.total_tasks)
            sent, in_views = check_exact(aggregator, workload, result)
            report("route rotel-grpc-export", workload, result, sent, in_views, rotel)
        finally:
            rotel.stop()


class WorkloadArgs(TypedDict):
    """Keyword arguments of ``Workload`` (the ones the tests set)."""

    sessions: int
    tasks_per_session: int
    users: int
    rate: float
    feedback_every: int


class TestRestarts:
    """Mid-stream restarts lose nothing and count nothing twice."""

    WORKLOAD: ClassVar[WorkloadArgs] = {"sessions": 30, "tasks_per_session": 20, "users": 9,
                                        "rate": 250.0, "feedback_every": 7}

    def test_collector_restart(self, tmp_path: Path, aggregator: AggregatorProcess,
                               rotel: RotelFromEnvFile) -> None:
        """rotel gets SIGTERM a third of the way in and is started again on the same ports
        once the app has logged half: the SDK queues and retries meanwhile."""
        workload = Workload(**self.WORKLOAD)
        app = AppProcess(workload, rotel.http_endpoint, "http/protobuf", tmp_path / "app.log")
        try:
            app.wait_until_logged(workload.total_tasks // 3)
            code = rotel.stop(signal.SIGTERM)
            assert code == 0, rotel.log()
            stopped_at = app.logged
            app.wait_until_logged(workload.total_tasks // 2)
            down_for = app.logged - stopped_at
            rotel.start()
            result = app.finish()
        finally:
            app.kill()
        assert result["flushed"], result["stats"]
        assert result["stats"]["retries"] > 0, "the SDK never had to retry: no restart?"
        assert result["stats"]["dropped"] == 0 and result["stats"]["failed"] == 0
        wait_for_views(aggregator, workload.run_id, workload.total_tasks)
        sent, in_views = check_exact(aggregator, workload, result)
        report("collector restart (SIGTERM)", workload, result, sent, in_views, rotel,
               tasks_logged_while_collector_down=down_for)

    def test_aggregator_killed(self, tmp_path: Path, aggregator: AggregatorProcess,
                               rotel: RotelFromEnvFile) -> None:
        """The aggregator gets SIGKILL a third of the way in and is started again on the
        same ports and database once the app has logged two thirds: rotel retries.

        The kill lands while rotel has no request in flight to the aggregator (the app is
        paused until the views stop moving): rotel drops, without retrying, a request whose
        connection breaks before the reply (hyper's ``IncompleteMessage``), which no
        aggregator can prevent. A kill in the middle of a write is ``tests/server/
        test_crash.py``'s, with a client that retries."""
        workload = Workload(**self.WORKLOAD)
        app = AppProcess(workload, rotel.http_endpoint, "http/protobuf", tmp_path / "app.log")
        try:
            app.wait_until_logged(workload.total_tasks // 3)
            app.process.send_signal(signal.SIGSTOP)
            try:
                before_kill = wait_until_quiet(aggregator, workload.run_id)
                aggregator.stop(signal.SIGKILL)
            finally:
                app.process.send_signal(signal.SIGCONT)
            killed_at = app.logged
            app.wait_until_logged(2 * workload.total_tasks // 3)
            down_for = app.logged - killed_at
            aggregator.start()
            result = app.finish()
        finally:
            app.kill()
        assert result["flushed"], result["stats"]
        assert result["stats"]["dropped"] == 0 and result["stats"]["failed"] == 0
        wait_for_views(aggregator, workload.run_id, workload.total_tasks)
        retries = rotel.log().count("Exporting failed, will retry")
        assert retries > 0, "rotel never had to retry: was the aggregator down?"
        sent, in_views = check_exact(aggregator, workload, result)
        report("aggregator killed (SIGKILL)", workload, result, sent, in_views, rotel,
               tasks_in_views_at_kill=before_kill, tasks_logged_while_aggregator_down=down_for)


class TestReplicas:
    """The scale-out README's claim for tier 2, with real processes: when every session
    lives on one replica, each replica's session views are exact and a user's rows on
    the replicas add up to the user's whole activity."""

    def test_user_rows_merge_across_replicas(self, tmp_path: Path) -> None:
        """Two app -> rotel -> aggregator routes share a run's users but not its sessions
        (what session routing gives): summing /api/users over both replicas is exact."""
        halves = [Workload(sessions=10, tasks_per_session=8, users=4, feedback_every=3,
                           first_session=k * 10) for k in (0, 1)]
        halves[1].run_id = halves[0].run_id
        routes: list[AggregatorProcess | RotelCollector] = []
        results = []
        try:
            for k, half in enumerate(halves):
                agg = AggregatorProcess(tmp_path / f"replica{k}.db",
                                        tmp_path / f"aggregator{k}.log").start()
                routes.append(agg)
                rotel = RotelFromEnvFile(ROTEL_ENV, agg.url,
                                         log_path=tmp_path / f"rotel{k}.log").start()
                routes.append(rotel)
                app = AppProcess(half, rotel.http_endpoint, "http/protobuf",
                                 tmp_path / f"app{k}.log")
                half_result = app.finish()
                assert half_result["flushed"]
                wait_for_views(agg, half.run_id, half.total_tasks)
                check_exact(agg, half, half_result)
                results.append(half_result)
            result = {"tasks": [t for r in results for t in r["tasks"]],
                      "feedback": {k: v for r in results for k, v in r["feedback"].items()}}
            replicas = [r for r in routes if isinstance(r, AggregatorProcess)]
            _, want_users = expected_views(result)
            merged: dict[str, Counter[str]] = defaultdict(Counter)
            for agg in replicas:
                _, users = views(agg, halves[0].run_id)
                for user_id, row in users.items():
                    merged[user_id].update({k: row[k] for k in want_users[user_id]})
            assert {k: dict(v) for k, v in merged.items()} == want_users
            per_replica = [len(views(agg, halves[0].run_id)[1]) for agg in replicas]
            assert per_replica == [4, 4], "every user has sessions on both replicas"
            print(f"\n[collector-route] two replicas: tasks sent={len(result['tasks'])} "
                  f"tasks in merged user rows={sum(u['task_count'] for u in merged.values())}")
        finally:
            for part in reversed(routes):
                part.stop()
