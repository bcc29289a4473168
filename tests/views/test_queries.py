"""The view queries over the scripted data set (figures known in advance)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.store import queries
from phospho_otel.store.queries import InvalidQuery, Page
from phospho_otel.store.sqlite import SQLiteStore

from .dataset import write_scripted


@pytest.fixture
def conn(db_path: Path) -> Iterator[sqlite3.Connection]:
    c = sqlite3.connect(db_path)
    yield c
    c.close()


class TestTimes:
    def test_round_trip(self) -> None:
        """ISO-8601 UTC text and nanoseconds convert both ways, offsets honoured."""
        ns = queries.iso_to_ns("2026-01-10T10:00:00.123456Z")
        assert queries.ns_to_iso(ns) == "2026-01-10T10:00:00.123456Z"
        assert queries.iso_to_ns("2026-01-10T11:00:00+01:00") == queries.iso_to_ns(
            "2026-01-10T10:00:00Z")
        assert queries.iso_to_ns("2026-01-10") == queries.iso_to_ns("2026-01-10T00:00:00Z")

    def test_bad_time(self) -> None:
        """Text that is not a time raises InvalidQuery."""
        with pytest.raises(InvalidQuery):
            queries.iso_to_ns("yesterday")


class TestSessions:
    def test_list_figures(self, conn: sqlite3.Connection) -> None:
        """Each session's counts, times, inputs and feedback come out as scripted."""
        result = queries.list_sessions(conn, page=Page("start_time"))
        assert result["total"] == 3
        by_id = {s["session_id"]: s for s in result["items"]}
        assert [s["session_id"] for s in result["items"]] == ["s3", "s2", "s1"]
        s1 = by_id["s1"]
        assert s1 == {
            "session_id": "s1", "user_id": "alice", "task_count": 3,
            "start_time": "2026-01-10T10:00:00.000000Z", "end_time": "2026-01-10T10:05:10.000000Z",
            "duration_s": 310.0, "first_task_id": "a1", "first_input": "hello",
            "last_task_id": "a3", "last_input": "thanks", "last_output": "bye",
            "last_status": "ok", "success_count": 2, "failure_count": 0, "error_count": 0,
        }
        assert (by_id["s2"]["failure_count"], by_id["s2"]["error_count"]) == (1, 1)
        assert by_id["s3"]["duration_s"] == 4.0
        assert by_id["s3"]["last_task_id"] == "b2"

    def test_filters_and_sorts(self, conn: sqlite3.Connection) -> None:
        """Time range, user filter and every sort key select and order as documented."""
        day11 = queries.iso_to_ns("2026-01-11")
        ids = lambda r: [s["session_id"] for s in r["items"]]  # noqa: E731
        assert ids(queries.list_sessions(conn, page=Page("start_time"), from_ns=day11)) == [
            "s3", "s2"]
        assert ids(queries.list_sessions(conn, page=Page("start_time"), to_ns=day11)) == ["s1"]
        assert ids(queries.list_sessions(conn, page=Page("start_time"), user_id="bob")) == ["s3"]
        assert ids(queries.list_sessions(conn, page=Page("duration_s"))) == ["s1", "s2", "s3"]
        assert ids(queries.list_sessions(conn, page=Page("task_count", descending=False))) == [
            "s2", "s3", "s1"]
        assert ids(queries.list_sessions(conn, page=Page("end_time"))) == ["s3", "s2", "s1"]
        assert ids(queries.list_sessions(conn, page=Page("session_id", descending=False))) == [
            "s1", "s2", "s3"]

    def test_cursor_pages(self, conn: sqlite3.Connection) -> None:
        """Following next_cursor visits every session once, in order, for each sort key."""
        for sort in queries.SESSION_SORTS:
            seen: list[str] = []
            cursor = None
            while True:
                r = queries.list_sessions(conn, page=Page(sort, limit=1, cursor=cursor))
                seen += [s["session_id"] for s in r["items"]]
                if r["next_cursor"] is None:
                    break
                cursor = queries.decode_cursor(r["next_cursor"])
            full = queries.list_sessions(conn, page=Page(sort))
            assert seen == [s["session_id"] for s in full["items"]], sort

    def test_offset(self, conn: sqlite3.Connection) -> None:
        """offset skips rows; the total stays the filtered count."""
        r = queries.list_sessions(conn, page=Page("start_time", limit=1, offset=1))
        assert [s["session_id"] for s in r["items"]] == ["s2"]
        assert r["total"] == 3

    def test_bad_cursor_and_sort(self, conn: sqlite3.Connection) -> None:
        """A forged cursor or an unknown sort key raises InvalidQuery."""
        with pytest.raises(InvalidQuery):
            queries.decode_cursor("not-a-cursor")
        with pytest.raises(InvalidQuery):
            queries.list_sessions(conn, page=Page("input"))

    def test_detail_positions(self, conn: sqlite3.Connection) -> None:
        """A session's tasks come in (start, task_id) order with positions and is_last."""
        s3 = queries.get_session(conn, "s3")
        assert s3 is not None
        assert [(t["task_id"], t["position"], t["is_last"]) for t in s3["tasks"]] == [
            ("b1", 1, False), ("b2", 2, True)]
        assert queries.get_session(conn, "nope") is None


class TestTasks:
    def test_task_view(self, conn: sqlite3.Connection) -> None:
        """A task carries its payloads, metadata, latest flag, notes and position."""
        a3 = queries.get_task(conn, "a3")
        assert a3 is not None
        assert (a3["flag"], a3["notes"], a3["position"], a3["is_last"]) == (
            "success", "great", 3, True)
        a1 = queries.get_task(conn, "a1")
        assert a1 is not None
        assert a1["metadata"] == {"model": "gpt-x", "tokens": 12}
        assert a1["raw_input"] == {"messages": []}
        assert (a1["position"], a1["is_last"], a1["status"]) == (1, False, "ok")
        assert a1["start_time"] == "2026-01-10T10:00:00.000000Z"
        assert a1["duration_s"] == 2.0

    def test_unsessioned(self, conn: sqlite3.Connection) -> None:
        """A task without a session has no position; unknown ids give None."""
        c1 = queries.get_task(conn, "c1")
        assert c1 is not None
        assert (c1["session_id"], c1["position"], c1["is_last"]) == (None, None, None)
        assert queries.get_task(conn, "zzz") is None

    def test_list(self, conn: sqlite3.Connection) -> None:
        """Task lists filter by user and session, newest first."""
        r = queries.list_tasks(conn, page=Page("start_time"), user_id="alice")
        assert [t["task_id"] for t in r["items"]] == ["a4", "a3", "a2", "a1"]
        assert r["total"] == 4
        r = queries.list_tasks(conn, page=Page("start_time", descending=False), session_id="s3")
        assert [t["task_id"] for t in r["items"]] == ["b1", "b2"]
        assert queries.list_tasks(conn, page=Page("start_time"))["total"] == 7


class TestUsers:
    def test_figures(self, conn: sqlite3.Connection) -> None:
        """Each user's counts, times, averages and success rate come out as scripted."""
        r = queries.list_users(conn, page=Page("task_count"))
        assert [u["user_id"] for u in r["items"]] == ["alice", "bob", "carol"]
        alice, bob, carol = r["items"]
        assert alice == {
            "user_id": "alice", "task_count": 4, "session_count": 2,
            "first_seen": "2026-01-10T10:00:00.000000Z",
            "last_seen": "2026-01-11T09:00:30.000000Z",
            "avg_session_duration_s": 170.0, "avg_tasks_per_session": 2.0,
            "success_rate": 0.666667, "success_count": 2, "failure_count": 1,
            "error_count": 1,
        }
        assert (bob["session_count"], bob["avg_session_duration_s"], bob["success_rate"]) == (
            1, 4.0, None)
        assert (carol["task_count"], carol["session_count"],
                carol["avg_session_duration_s"], carol["avg_tasks_per_session"]) == (
            1, 0, None, None)

    def test_range(self, conn: sqlite3.Connection) -> None:
        """The time range keeps users active in it."""
        r = queries.list_users(conn, page=Page("user_id", descending=False),
                               from_ns=queries.iso_to_ns("2026-01-11T10:00:00Z"))
        assert [u["user_id"] for u in r["items"]] == ["bob", "carol"]

    def test_detail(self, conn: sqlite3.Connection) -> None:
        """A user's detail lists their sessions and tasks, newest first."""
        alice = queries.get_user(conn, "alice")
        assert alice is not None
        assert [s["session_id"] for s in alice["sessions"]] == ["s2", "s1"]
        assert [t["task_id"] for t in alice["tasks"]] == ["a4", "a3", "a2", "a1"]
        assert [t["position"] for t in alice["tasks"]] == [1, 3, 2, 1]
        assert queries.get_user(conn, "dave") is None


class TestInsights:
    def test_sessions(self, conn: sqlite3.Connection) -> None:
        """Session figures: durations 4, 30, 310 s; lengths 1, 2, 3; what ended each."""
        r = queries.session_insights(conn)
        assert r["session_count"] == 3
        assert r["task_count"] == 6
        assert r["avg_duration_s"] == pytest.approx(114.666667)
        assert r["median_duration_s"] == 30.0
        assert r["p90_duration_s"] == 254.0
        assert r["avg_tasks_per_session"] == 2.0
        assert r["length_histogram"] == [{"task_count": n, "sessions": 1} for n in (1, 2, 3)]
        assert r["sessions_per_day"] == [{"date": "2026-01-10", "sessions": 1},
                                         {"date": "2026-01-11", "sessions": 2}]
        endings = {(g["flag"], g["status"]): g for g in r["endings"]}
        assert set(endings) == {("success", "ok"), ("failure", "error"), (None, "ok")}
        assert endings[("failure", "error")]["top_inputs"] == [{"input": "refund?",
                                                                 "sessions": 1}]

    def test_sessions_filtered(self, conn: sqlite3.Connection) -> None:
        """Filters apply to every figure."""
        r = queries.session_insights(conn, user_id="alice")
        assert (r["session_count"], r["median_duration_s"]) == (2, 170.0)
        empty = queries.session_insights(conn, from_ns=queries.iso_to_ns("2030-01-01"))
        assert (empty["session_count"], empty["median_duration_s"], empty["endings"]) == (
            0, None, [])

    def test_users(self, conn: sqlite3.Connection) -> None:
        """User figures: task counts 1, 2, 4."""
        r = queries.user_insights(conn)
        assert r["user_count"] == 3
        assert r["avg_tasks_per_user"] == pytest.approx(2.333333)
        assert (r["median_tasks_per_user"], r["p90_tasks_per_user"]) == (2, pytest.approx(3.6))
        assert r["avg_sessions_per_user"] == 1.0
        assert r["success_rate"] == 0.666667
        assert r["tasks_per_user"] == [
            {"min_tasks": 1, "max_tasks": 1, "users": 1},
            {"min_tasks": 2, "max_tasks": 3, "users": 1},
            {"min_tasks": 4, "max_tasks": 7, "users": 1},
        ]
        assert [u["user_id"] for u in r["top_users"]] == ["alice", "bob", "carol"]


class TestOrderIndependence:
    def test_any_arrival_order(self, tmp_path: Path) -> None:
        """Whatever order the spans arrive in, every view is the same."""
        outputs = []
        for seed in (1, 2):
            store = SQLiteStore(tmp_path / f"{seed}.db")
            write_scripted(store, seed)
            with store.reader() as c:
                outputs.append((
                    queries.list_sessions(c, page=Page("start_time")),
                    queries.list_users(c, page=Page("user_id")),
                    queries.session_insights(c),
                    [queries.get_task(c, t) for t in ("a1", "a3", "b1", "b2", "c1")],
                ))
            store.close()
        assert outputs[0] == outputs[1]

    def test_without_last_flag_column(self, db_path: Path) -> None:
        """A file made before sessions.last_flag, read as is, gives the same insights."""
        with sqlite3.connect(db_path) as c:
            before = queries.session_insights(c)
            assert any(e["flag"] is not None for e in before["endings"])
            c.execute("DROP INDEX sessions_by_ending")
            c.execute("ALTER TABLE sessions DROP COLUMN last_flag")
            assert queries.session_insights(c) == before
        c.close()

    def test_without_flagged_index(self, db_path: Path) -> None:
        """A file made before the tasks_flagged index gives the same insights."""
        with sqlite3.connect(db_path) as c:
            before = queries.session_insights(c)
            c.execute("DROP INDEX tasks_flagged")
            assert queries.session_insights(c) == before
