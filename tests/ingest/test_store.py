"""SQLiteStore.write: spans kept, tasks and feedback extracted, rollups merged in any order."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from ingest_helpers import (
    BASE_NS,
    check_rollups,
    dump,
    feedback_span,
    make_request,
    make_span,
    task_span,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator import extract
from phospho_otel.store import SQLiteStore, Store

SEC = 1_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    s = SQLiteStore(tmp_path / "store.db")
    yield s
    s.close()


def workload(seed: int) -> list[Span]:
    """Tasks over several users and sessions, some unsessioned, some logged twice, with
    feedback (some of it on tasks that are only logged later), plus plain spans."""
    rng = random.Random(seed)
    spans: list[Span] = []
    task_ids: list[str] = []
    for u in range(6):
        for s in range(3):
            session = f"s{u}-{s}" if s < 2 else None
            for t in range(5):
                task_id = f"u{u}-s{s}-t{t}"
                task_ids.append(task_id)
                start = BASE_NS + rng.randrange(1000) * SEC
                spans.append(
                    task_span(
                        task_id,
                        session_id=session,
                        user_id=f"user{u}" if t != 4 else None,
                        input=f"in {task_id}",
                        output=f"out {task_id}",
                        start_ns=start,
                        end_ns=start + rng.randrange(1, 5) * SEC,
                        status_code=2 if t == 3 else 1,
                        metadata={"k": t},
                        rng=rng,
                    )
                )
    # A task logged again later with more output, and once more with an earlier end.
    spans.append(
        task_span("u0-s0-t0", session_id="s0-0", user_id="user0", input="in u0-s0-t0",
                  output="final", start_ns=BASE_NS, end_ns=BASE_NS + 5000 * SEC, rng=rng)
    )
    spans.append(
        task_span("u1-s1-t1", session_id="s9-9", user_id="user9", input="moved",
                  start_ns=BASE_NS - SEC, end_ns=BASE_NS + 6000 * SEC, rng=rng)
    )
    spans.append(task_span("u2-s0-t2", session_id="s2-0", start_ns=BASE_NS, end_ns=BASE_NS + 1,
                           rng=rng))
    for i, task_id in enumerate(rng.sample(task_ids, 25)):
        spans.append(
            feedback_span(task_id, rng.choice(["success", "failure"]),
                          time_ns=BASE_NS + (2000 + i) * SEC, rng=rng)
        )
    spans.append(feedback_span("not-logged-yet", "success", time_ns=BASE_NS, rng=rng))
    for _ in range(10):
        spans.append(make_span({"http.method": "GET"}, rng=rng))
    return spans


def deliver(store: SQLiteStore, spans: list[Span], seed: int) -> None:
    """Write the spans shuffled, in random batch sizes, some delivered twice."""
    rng = random.Random(seed)
    spans = spans[:]
    rng.shuffle(spans)
    i = 0
    while i < len(spans):
        n = rng.randint(1, 17)
        batch = spans[i : i + n]
        if rng.random() < 0.3:
            batch = batch + spans[max(0, i - 5) : i]  # a retry overlapping earlier spans
        store.write(make_request(batch))
        i += n


class TestBasics:
    """One task, its session and user; counters; the Store protocol."""

    def test_is_a_store(self, store: SQLiteStore) -> None:
        """SQLiteStore satisfies the narrow Store protocol."""
        assert isinstance(store, Store)

    def test_task_session_user(self, store: SQLiteStore) -> None:
        """A task span makes a task row, its session and its user; the span is kept."""
        span = task_span("t1", session_id="s1", user_id="u1", input="q", output="a",
                         metadata={"model": "m", "n": 3, "ok": True})
        result = store.write(make_request([span]))
        assert (result.spans_stored, result.tasks_new, result.rejected_spans) == (1, 1, 0)
        with store.reader() as conn:
            task = conn.execute("SELECT * FROM tasks").fetchone()
            assert task["task_id"] == "t1"
            assert (task["session_id"], task["user_id"]) == ("s1", "u1")
            assert (task["input"], task["output"], task["convention"]) == ("q", "a", "phospho")
            assert task["metadata"] == '{"model":"m","n":3,"ok":true}'
            assert task["service_name"] == "test-app"
            row = conn.execute("SELECT span, session_id FROM spans").fetchone()
            assert Span.FromString(row["span"]) == span
            assert row["session_id"] == "s1"
            origin = conn.execute("SELECT service_name FROM origins").fetchone()
            assert origin[0] == "test-app"
            session = conn.execute("SELECT * FROM sessions").fetchone()
            assert (session["user_id"], session["task_count"]) == ("u1", 1)
            assert session["first_input"] == session["last_input"] == "q"
            user = conn.execute("SELECT * FROM users").fetchone()
            assert (user["task_count"], user["session_count"]) == (1, 1)
            check_rollups(conn)
        counters = store.counters()
        assert counters["spans_received"] == 1
        assert counters["tasks_new"] == 1

    def test_task_without_session_counts_for_user(self, store: SQLiteStore) -> None:
        """A task without session belongs to no session but counts for its user."""
        store.write(make_request([task_span("t1", user_id="u1")]))
        with store.reader() as conn:
            assert conn.execute("SELECT count(*) FROM sessions").fetchone()[0] == 0
            user = conn.execute("SELECT task_count, session_count FROM users").fetchone()
            assert tuple(user) == (1, 0)

    def test_reopen_keeps_data(self, tmp_path: Path) -> None:
        """Data written and acknowledged is there after reopening the file."""
        store = SQLiteStore(tmp_path / "x.db")
        store.write(make_request([task_span("t1", session_id="s")]))
        store.close()
        store = SQLiteStore(tmp_path / "x.db")
        with store.reader() as conn:
            assert conn.execute("SELECT task_count FROM sessions").fetchone()[0] == 1
        store.close()

    def test_bad_arguments(self, tmp_path: Path) -> None:
        """An unknown synchronous level or an in-memory database is refused."""
        with pytest.raises(ValueError):
            SQLiteStore(tmp_path / "x.db", synchronous="OFF")
        with pytest.raises(ValueError):
            SQLiteStore(":memory:")

    def test_wal_checkpointed_in_background(self, tmp_path: Path) -> None:
        """Past CHECKPOINT_WAL_BYTES the background checkpointer copies the WAL into the
        database, and writes go on meanwhile."""
        from phospho_otel.store import sqlite as store_module

        store = SQLiteStore(tmp_path / "w.db")
        spans = [task_span(f"w{i}", session_id=f"s{i % 10}", input="x" * 2000)
                 for i in range(4000)]
        for i in range(0, 4000, 500):
            store.write(make_request(spans[i : i + 500]))
        assert os.path.getsize(store.path + "-wal") >= store_module.CHECKPOINT_WAL_BYTES // 2
        deadline = time.monotonic() + 20
        while os.path.getsize(store.path) < 8 * 1024 * 1024:  # pages reached the database
            assert time.monotonic() < deadline, "no background checkpoint"
            time.sleep(0.05)
        store.write(make_request([task_span("after")]))
        with store.reader() as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 4001
            check_rollups(conn)
        store.close()

    def test_wal_bounded_under_sustained_writes(self, tmp_path: Path) -> None:
        """Back-to-back writes (no pause for a passive checkpoint to finish) still keep
        the WAL near max_wal_bytes: the writer restarts it."""
        store = SQLiteStore(tmp_path / "b.db", checkpoint_wal_bytes=128 * 1024,
                            max_wal_bytes=1024 * 1024)
        biggest = 0
        for batch in range(30):
            store.write(make_request([
                task_span(f"b{batch}-{i}", session_id=f"s{i % 20}", input="y" * 1000)
                for i in range(300)
            ]))
            biggest = max(biggest, os.path.getsize(store.path + "-wal"))
        assert biggest < 4 * 1024 * 1024  # without the restart: over 8 MB
        with store.reader() as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 9000
        store.close()

    def test_readers_are_not_shared(self, store: SQLiteStore) -> None:
        """Concurrent readers get distinct connections; reads work from other threads."""
        with store.reader() as a, store.reader() as b:
            assert a is not b
        seen: list[int] = []

        def read() -> None:
            with store.reader() as conn:
                seen.append(conn.execute("SELECT count(*) FROM spans").fetchone()[0])

        threads = [threading.Thread(target=read) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert seen == [0, 0, 0, 0]

    def test_readers_are_read_only(self, store: SQLiteStore) -> None:
        """A reader connection cannot write."""
        import sqlite3

        with store.reader() as conn, pytest.raises(sqlite3.OperationalError):
            conn.execute("DELETE FROM spans")


class TestDuplicates:
    """A span delivered twice counts once."""

    def test_same_request_twice(self, store: SQLiteStore) -> None:
        """Re-sending a whole request changes nothing but the duplicate counter."""
        request = make_request(
            [task_span("t1", session_id="s", user_id="u"),
             feedback_span("t1", "success", time_ns=BASE_NS + SEC),
             make_span({"a": 1})]
        )
        store.write(request)
        before = dump(store)
        result = store.write(request)
        assert (result.spans_stored, result.spans_duplicate, result.tasks_new) == (0, 3, 0)
        assert dump(store) == before
        assert store.counters()["spans_duplicate"] == 3

    def test_partial_overlap(self, store: SQLiteStore) -> None:
        """A request mixing new and already-stored spans stores only the new ones."""
        a = task_span("a", session_id="s", user_id="u")
        b = task_span("b", session_id="s", user_id="u", start_ns=BASE_NS + SEC)
        store.write(make_request([a]))
        result = store.write(make_request([a, b, a]))
        assert (result.spans_stored, result.spans_duplicate, result.tasks_new) == (1, 2, 1)
        with store.reader() as conn:
            assert conn.execute("SELECT task_count FROM sessions").fetchone()[0] == 2
            check_rollups(conn)


    def test_span_repeated_in_one_request(self, store: SQLiteStore) -> None:
        """A request carrying the same span twice stores and counts it once."""
        task = task_span("rep", session_id="s")
        fb = feedback_span("rep", "success", time_ns=BASE_NS)
        result = store.write(make_request([task, fb, task, fb]))
        assert (result.spans_stored, result.spans_duplicate) == (2, 2)
        assert (result.tasks_new, result.feedback_new) == (1, 1)
        with store.reader() as conn:
            assert conn.execute("SELECT success_count FROM sessions").fetchone()[0] == 1
            check_rollups(conn)

    def test_big_retry(self, store: SQLiteStore) -> None:
        """A retried 3000-span batch with 1000 new spans adds exactly those 1000."""
        spans = [task_span(f"r{i}", session_id=f"s{i % 50}", user_id=f"u{i % 7}",
                           start_ns=BASE_NS + i) for i in range(3000)]
        store.write(make_request(spans[:2000]))
        result = store.write(make_request(spans))
        assert (result.spans_stored, result.spans_duplicate, result.tasks_new) == (1000, 2000, 1000)
        with store.reader() as conn:
            assert conn.execute("SELECT sum(task_count) FROM sessions").fetchone()[0] == 3000
            check_rollups(conn)


class TestOrder:
    """Any arrival order, batching and retries give the same tables."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_permutations_agree(self, tmp_path: Path, seed: int) -> None:
        """Three shuffled deliveries of one workload give identical views."""
        spans = workload(seed)
        dumps = []
        for order in range(3):
            store = SQLiteStore(tmp_path / f"{seed}-{order}.db")
            deliver(store, spans, seed * 100 + order)
            with store.reader() as conn:
                check_rollups(conn)
            dumps.append(dump(store))
            store.close()
        assert dumps[0] == dumps[1] == dumps[2]
        assert len(dumps[0]["spans"]) == len({(s.trace_id, s.span_id) for s in spans})

    def test_last_task_first(self, store: SQLiteStore) -> None:
        """The last task of a session arriving first still ends up last."""
        store.write(make_request([task_span("t2", session_id="s", input="second",
                                            output="bye", start_ns=BASE_NS + 10 * SEC)]))
        store.write(make_request([task_span("t1", session_id="s", input="first",
                                            start_ns=BASE_NS)]))
        with store.reader() as conn:
            s = conn.execute("SELECT * FROM sessions").fetchone()
            assert (s["first_task_id"], s["first_input"]) == ("t1", "first")
            assert (s["last_task_id"], s["last_input"], s["last_output"]) == ("t2", "second", "bye")
            assert s["start_ns"] == BASE_NS
            assert s["end_ns"] == BASE_NS + 10 * SEC + 1_000_000

    def test_tie_on_start_breaks_by_task_id(self, store: SQLiteStore) -> None:
        """Two tasks starting at the same time: first/last by task id."""
        store.write(make_request([task_span("b", session_id="s")]))
        store.write(make_request([task_span("a", session_id="s")]))
        with store.reader() as conn:
            s = conn.execute("SELECT first_task_id, last_task_id FROM sessions").fetchone()
            assert tuple(s) == ("a", "b")


class TestFeedback:
    """Feedback before or after its task; latest feedback wins."""

    def test_feedback_before_task(self, store: SQLiteStore) -> None:
        """Feedback stored first is applied when the task arrives."""
        store.write(make_request([feedback_span("t1", "failure", time_ns=BASE_NS, notes="bad")]))
        with store.reader() as conn:
            assert conn.execute("SELECT count(*) FROM tasks").fetchone()[0] == 0
        store.write(make_request([task_span("t1", session_id="s", user_id="u")]))
        with store.reader() as conn:
            t = conn.execute("SELECT flag, notes, flag_source FROM tasks").fetchone()
            assert tuple(t) == ("failure", "bad", "user")
            assert conn.execute("SELECT failure_count FROM sessions").fetchone()[0] == 1
            assert conn.execute("SELECT failure_count FROM users").fetchone()[0] == 1
            check_rollups(conn)

    def test_latest_feedback_wins_in_any_order(self, store: SQLiteStore) -> None:
        """A later flag replaces an earlier one even when it arrives first; counts move."""
        store.write(make_request([task_span("t1", session_id="s", user_id="u")]))
        store.write(make_request([feedback_span("t1", "success", time_ns=BASE_NS + 2 * SEC,
                                                source="owner")]))
        store.write(make_request([feedback_span("t1", "failure", time_ns=BASE_NS + SEC)]))
        with store.reader() as conn:
            t = conn.execute("SELECT flag, flag_source, flag_time_ns FROM tasks").fetchone()
            assert tuple(t) == ("success", "owner", BASE_NS + 2 * SEC)
            s = conn.execute("SELECT success_count, failure_count FROM sessions").fetchone()
            assert tuple(s) == (1, 0)
            check_rollups(conn)
        store.write(make_request([feedback_span("t1", "failure", time_ns=BASE_NS + 3 * SEC)]))
        with store.reader() as conn:
            s = conn.execute("SELECT success_count, failure_count FROM users").fetchone()
            assert tuple(s) == (0, 1)
            check_rollups(conn)

    def test_feedback_and_task_in_one_request(self, store: SQLiteStore) -> None:
        """Feedback in the same request as its task (either order) is applied."""
        store.write(make_request([feedback_span("t1", "success", time_ns=BASE_NS),
                                  task_span("t1", session_id="s")]))
        with store.reader() as conn:
            assert conn.execute("SELECT flag FROM tasks").fetchone()[0] == "success"
            assert conn.execute("SELECT success_count FROM sessions").fetchone()[0] == 1


class TestTaskLoggedTwice:
    """One task id logged by several spans counts once; the latest version is kept."""

    def test_later_version_replaces(self, store: SQLiteStore) -> None:
        """A later-ending version updates the task; counts stay at one."""
        store.write(make_request([task_span("t1", session_id="s", user_id="u", output=None)]))
        result = store.write(make_request([task_span("t1", session_id="s", user_id="u",
                                                     output="done", end_ns=BASE_NS + SEC)]))
        assert (result.tasks_new, result.tasks_updated) == (0, 1)
        with store.reader() as conn:
            assert conn.execute("SELECT output FROM tasks").fetchone()[0] == "done"
            assert conn.execute("SELECT task_count FROM sessions").fetchone()[0] == 1
            assert conn.execute("SELECT task_count FROM users").fetchone()[0] == 1
            assert conn.execute("SELECT last_output FROM sessions").fetchone()[0] == "done"
            check_rollups(conn)

    def test_earlier_version_ignored(self, store: SQLiteStore) -> None:
        """An earlier-ending version arriving later changes nothing."""
        store.write(make_request([task_span("t1", session_id="s", output="done",
                                            end_ns=BASE_NS + SEC)]))
        result = store.write(make_request([task_span("t1", session_id="s", output=None)]))
        assert (result.tasks_new, result.tasks_updated) == (0, 0)
        with store.reader() as conn:
            assert conn.execute("SELECT output FROM tasks").fetchone()[0] == "done"
        assert store.counters()["tasks_superseded"] == 1

    def test_moving_session_and_user(self, store: SQLiteStore) -> None:
        """A newer version in another session and user moves the task between rollups."""
        store.write(make_request([task_span("t1", session_id="a", user_id="ua"),
                                  task_span("t2", session_id="a", user_id="ua")]))
        store.write(make_request([task_span("t1", session_id="b", user_id="ub",
                                            end_ns=BASE_NS + SEC)]))
        with store.reader() as conn:
            rows = conn.execute("SELECT session_id, user_id, task_count FROM sessions "
                                "ORDER BY session_id").fetchall()
            assert [tuple(r) for r in rows] == [("a", "ua", 1), ("b", "ub", 1)]
            check_rollups(conn)
        store.write(make_request([task_span("t2", user_id="ua", end_ns=BASE_NS + SEC)]))
        with store.reader() as conn:
            assert [r[0] for r in conn.execute("SELECT session_id FROM sessions")] == ["b"]
            u = conn.execute("SELECT task_count, session_count FROM users WHERE user_id='ua'")
            assert tuple(u.fetchone()) == (1, 0)
            check_rollups(conn)


class TestSessionUser:
    """sessions.user_id and users.session_count stay consistent."""

    def test_user_arrives_after_session(self, store: SQLiteStore) -> None:
        """A session first seen without a user gets one, and the user counts it."""
        store.write(make_request([task_span("t1", session_id="s")]))
        store.write(make_request([task_span("t2", session_id="s", user_id="u")]))
        with store.reader() as conn:
            assert conn.execute("SELECT user_id FROM sessions").fetchone()[0] == "u"
            assert conn.execute("SELECT session_count FROM users").fetchone()[0] == 1
            check_rollups(conn)

    def test_conflicting_users_pick_smallest(self, store: SQLiteStore) -> None:
        """Tasks of one session with different users: the smallest id, in any order."""
        store.write(make_request([task_span("t1", session_id="s", user_id="bob")]))
        store.write(make_request([task_span("t2", session_id="s", user_id="alice")]))
        with store.reader() as conn:
            assert conn.execute("SELECT user_id FROM sessions").fetchone()[0] == "alice"
            counts = dict(conn.execute("SELECT user_id, session_count FROM users").fetchall())
            assert counts == {"alice": 1, "bob": 0}
            check_rollups(conn)


class TestBadSpans:
    """Bad spans never fail the batch."""

    def test_invalid_task_attributes(self, store: SQLiteStore) -> None:
        """Task spans with missing or mistyped attributes are stored, skipped, counted."""
        spans = [
            make_span({"phospho.span.type": "task", "input.value": "x"}),  # no task id
            make_span({"phospho.span.type": "task", "phospho.task.id": 5, "input.value": "x"}),
            make_span({"phospho.span.type": "task", "phospho.task.id": "t"}),  # no input
            make_span({"phospho.span.type": "task", "phospho.task.id": "t", "input.value": "x",
                       "session.id": 3}),
            make_span({"phospho.span.type": "feedback", "phospho.task.id": "t",
                       "phospho.feedback.flag": "meh"}),
            make_span({"phospho.span.type": "other"}),
            task_span("good", session_id="s"),
        ]
        result = store.write(make_request(spans))
        assert (result.spans_stored, result.tasks_new, result.skipped_invalid) == (7, 1, 5)
        assert "phospho.task.id is missing" in result.error_message
        counters = store.counters()
        assert counters["tasks_skipped_invalid"] == 4
        assert counters["feedback_skipped_invalid"] == 1
        assert counters["spans_unknown_type"] == 1

    def test_invalid_ids_rejected(self, store: SQLiteStore) -> None:
        """Spans with bad ids are rejected (partial success); the others are stored."""
        spans = [
            make_span({}, trace_id=b"short"),
            make_span({}, span_id=bytes(8)),
            task_span("good"),
        ]
        result = store.write(make_request(spans))
        assert (result.rejected_spans, result.spans_stored, result.tasks_new) == (2, 1, 1)
        assert "invalid trace_id or span_id" in result.error_message
        assert store.counters()["spans_rejected"] == 2

    def test_write_many_is_one_transaction(self, store: SQLiteStore) -> None:
        """write_many returns one result per request, in order."""
        results = store.write_many(
            [
                make_request([task_span("a")]),
                make_request([task_span("a", end_ns=BASE_NS + 1), task_span("b")]),
            ]
        )
        assert [(r.tasks_new, r.tasks_updated) for r in results] == [(1, 0), (1, 0)]


class TestFailedWrite:
    """A failed transaction leaves nothing behind, and writing the same extraction again
    (the Ingestor's retry, request by request) counts it once."""

    def test_extraction_written_again_after_rollback(self, tmp_path: Path) -> None:
        """The precomputed rollup of a request is not consumed by a rolled-back write."""
        good = extract(
            make_request(
                [
                    task_span("a", session_id="s", user_id="u"),
                    task_span("b", session_id="s", user_id="u", start_ns=BASE_NS + SEC),
                    task_span("c", session_id="s2", user_id="u"),
                ]
            )
        )
        assert good.rollup is not None
        broken = extract(make_request([task_span("d", session_id="s3")]))
        broken = broken._replace(tasks=[broken.tasks[0]._replace(name=None)])
        store = SQLiteStore(tmp_path / "retried.db")
        fresh = SQLiteStore(tmp_path / "fresh.db")
        try:
            with pytest.raises(sqlite3.IntegrityError):
                store.write_extracted([good, broken])
            assert dump(store)["tasks"] == []
            store.write_extracted([good])
            fresh.write_extracted([good])
            assert dump(store) == dump(fresh)
            with store.reader() as conn:
                check_rollups(conn)
                assert tuple(
                    conn.execute("SELECT task_count, session_count FROM users").fetchone()
                ) == (3, 2)
        finally:
            store.close()
            fresh.close()
