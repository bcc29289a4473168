"""sessions.last_flag: the flag of the session's last task, whatever the arrival order."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from ingest_helpers import BASE_NS, check_rollups, feedback_span, make_request, task_span
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.store import SQLiteStore, queries

SEC = 1_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


def last_flags(store: SQLiteStore) -> dict[str, tuple[str, str | None]]:
    """session id -> (last task id, last flag)."""
    with store.reader() as conn:
        return {
            r[0]: (r[1], r[2])
            for r in conn.execute("SELECT session_id, last_task_id, last_flag FROM sessions")
        }


def workload(rng: random.Random) -> tuple[list[Span], dict[str, tuple[str, str | None]]]:
    """Sessions of three tasks (t0, t1, t2 by start) in six cases, and each session's
    expected (last task, last flag)."""
    spans: list[Span] = []
    expected: dict[str, tuple[str, str | None]] = {}

    def task(session: str, t: int, start_s: int, end_s: float | None = None) -> None:
        start = BASE_NS + start_s * SEC
        end = start + SEC // 2 if end_s is None else BASE_NS + int(end_s * SEC)
        spans.append(task_span(f"{session}-t{t}", session_id=session, user_id="u",
                               input=f"in {t}", start_ns=start, end_ns=end, rng=rng))

    def feedback(session: str, t: int, flag: str, time_s: int) -> None:
        spans.append(feedback_span(f"{session}-t{t}", flag, time_ns=BASE_NS + time_s * SEC,
                                   rng=rng))

    for i in range(24):
        s = f"s{i:02d}"
        for t in range(3):
            task(s, t, 10 * t)
        case = i % 6
        if case == 0:  # no feedback
            expected[s] = (f"{s}-t2", None)
        elif case == 1:  # feedback on the last task
            feedback(s, 2, "success", 100)
            expected[s] = (f"{s}-t2", "success")
        elif case == 2:  # two feedbacks on the last task: the latest by time wins
            feedback(s, 2, "success", 200)
            feedback(s, 2, "failure", 100)
            expected[s] = (f"{s}-t2", "success")
        elif case == 3:  # feedback on an earlier task only
            feedback(s, 0, "failure", 100)
            expected[s] = (f"{s}-t2", None)
        elif case == 4:  # the flagged last task re-logged earlier: t1 becomes last
            feedback(s, 2, "failure", 100)
            feedback(s, 1, "success", 100)
            task(s, 2, 5, end_s=60)
            expected[s] = (f"{s}-t1", "success")
        else:  # a flagged earlier task re-logged later: it becomes last
            feedback(s, 0, "failure", 100)
            task(s, 0, 30, end_s=60)
            task(s, 0, 40, end_s=40.5)  # ends before the version above: ignored
            expected[s] = (f"{s}-t0", "failure")
    return spans, expected


def deliver(store: SQLiteStore, spans: list[Span], rng: random.Random) -> None:
    """The spans shuffled, in random batches, some delivered twice."""
    spans = spans[:]
    rng.shuffle(spans)
    i = 0
    while i < len(spans):
        n = rng.randint(1, 9)
        batch = spans[i : i + n]
        if rng.random() < 0.3:
            batch = batch + spans[max(0, i - 4) : i]
        store.write(make_request(batch))
        i += n


class TestArrivalOrder:
    """The same last_flag for any arrival order, batching and duplicate delivery."""

    @pytest.mark.parametrize("seed", [1, 2])
    def test_shuffled(self, tmp_path: Path, seed: int) -> None:
        """Shuffled deliveries give the expected (last task, flag) of every session."""
        spans, expected = workload(random.Random(seed))
        for order in range(3):
            store = SQLiteStore(tmp_path / f"{seed}-{order}.db")
            deliver(store, spans, random.Random(seed * 100 + order))
            assert last_flags(store) == expected
            with store.reader() as conn:
                check_rollups(conn)
                endings = queries.session_insights(conn)["endings"]
            assert {e["flag"]: e["sessions"] for e in endings} == Counter(
                flag for _, flag in expected.values())
            store.close()


class TestDirected:
    """Each way last_flag changes, one step at a time."""

    def test_feedback_before_task(self, store: SQLiteStore) -> None:
        """Feedback stored before its task is the session's flag once that task is last."""
        store.write(make_request([feedback_span("t2", "failure", time_ns=BASE_NS)]))
        store.write(make_request([task_span("t1", session_id="s", start_ns=BASE_NS)]))
        assert last_flags(store) == {"s": ("t1", None)}
        store.write(make_request([task_span("t2", session_id="s", start_ns=BASE_NS + SEC)]))
        assert last_flags(store) == {"s": ("t2", "failure")}

    def test_feedback_after_task(self, store: SQLiteStore) -> None:
        """Feedback on the last task sets it; on another task or an old last task not."""
        store.write(make_request([task_span("t1", session_id="s", start_ns=BASE_NS),
                                  task_span("t2", session_id="s", start_ns=BASE_NS + SEC)]))
        store.write(make_request([feedback_span("t1", "failure", time_ns=BASE_NS)]))
        assert last_flags(store) == {"s": ("t2", None)}
        store.write(make_request([feedback_span("t2", "success", time_ns=BASE_NS)]))
        assert last_flags(store) == {"s": ("t2", "success")}
        store.write(make_request([feedback_span("t2", "failure", time_ns=BASE_NS + SEC)]))
        assert last_flags(store) == {"s": ("t2", "failure")}
        store.write(make_request([task_span("t3", session_id="s", start_ns=BASE_NS + 2 * SEC)]))
        assert last_flags(store) == {"s": ("t3", None)}
        store.write(make_request([feedback_span("t2", "success", time_ns=BASE_NS + 2 * SEC)]))
        assert last_flags(store) == {"s": ("t3", None)}
        with store.reader() as conn:
            check_rollups(conn)

    def test_relogged_last_task(self, store: SQLiteStore) -> None:
        """A re-logged last task keeps its flag; moved to another session, the flag goes
        with it and the session takes its new last task's."""
        store.write(make_request([task_span("t1", session_id="s", start_ns=BASE_NS),
                                  task_span("t2", session_id="s", start_ns=BASE_NS + SEC),
                                  feedback_span("t2", "failure", time_ns=BASE_NS)]))
        assert last_flags(store) == {"s": ("t2", "failure")}
        store.write(make_request([task_span("t2", session_id="s", start_ns=BASE_NS + SEC,
                                            end_ns=BASE_NS + 5 * SEC)]))
        assert last_flags(store) == {"s": ("t2", "failure")}
        store.write(make_request([task_span("t2", session_id="other", start_ns=BASE_NS + SEC,
                                            end_ns=BASE_NS + 6 * SEC)]))
        assert last_flags(store) == {"s": ("t1", None), "other": ("t2", "failure")}
        store.write(make_request([task_span("t2", session_id="s", start_ns=BASE_NS + SEC,
                                            end_ns=BASE_NS + 7 * SEC)]))
        assert last_flags(store) == {"s": ("t2", "failure")}
        with store.reader() as conn:
            check_rollups(conn)


class TestOldFile:
    """A file made before sessions.last_flag gets the column, filled, at open."""

    def test_column_added_and_filled(self, tmp_path: Path) -> None:
        """Drop the column (and its index) from a file; reopening restores both."""
        path = tmp_path / "old.db"
        spans, expected = workload(random.Random(7))
        store = SQLiteStore(path)
        store.write(make_request(spans))
        store.close()
        with sqlite3.connect(path) as c:
            c.execute("DROP INDEX sessions_by_ending")
            c.execute("ALTER TABLE sessions DROP COLUMN last_flag")
        c.close()
        store = SQLiteStore(path)
        try:
            assert last_flags(store) == expected
            with store.reader() as conn:
                indexes = {r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'index'")}
                assert "sessions_by_ending" in indexes
                check_rollups(conn)
        finally:
            store.close()
        store = SQLiteStore(path)  # opening again changes nothing
        try:
            assert last_flags(store) == expected
        finally:
            store.close()
