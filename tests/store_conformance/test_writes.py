"""Writes: spans kept once, tasks and feedback applied, rollups merged, in any order, any
number of deliveries; checked against the oracle (``tests/support/oracle``) through the
store API only."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator.extract import extract
from phospho_otel.insights import session_insights
from phospho_otel.model.records import TaskFeedback
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.api import Store, StoreWriter, TaskRow
from tests.support.oracle import check_store, read_state, write
from tests.support.otlp import BASE_NS, SEC, feedback_span, make_request, make_span, task_span


def session(store: Store, session_id: str) -> SessionRollup:
    with store.read() as reader:
        found = reader.get_session(session_id)
    assert found is not None, session_id
    return found


def user(store: Store, user_id: str) -> UserRollup:
    with store.read() as reader:
        found = reader.get_user(user_id)
    assert found is not None, user_id
    return found.rollup


def task(store: Store, task_id: str) -> TaskRow:
    with store.read() as reader:
        found = reader.get_task(task_id)
    assert found is not None, task_id
    return found


def sent_spans(requests: Sequence[ExportTraceServiceRequest]) -> dict[tuple[bytes, bytes],
                                                                    tuple[str, Span]]:
    """The spans a store must keep from these requests: (trace id, span id) -> (service,
    span), spans with valid ids only, the first delivery of each."""
    out: dict[tuple[bytes, bytes], tuple[str, Span]] = {}
    for request in requests:
        for rs in request.resource_spans:
            service = next(kv.value.string_value for kv in rs.resource.attributes
                           if kv.key == "service.name")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if (len(span.trace_id) == 16 and len(span.span_id) == 8
                            and any(span.trace_id) and any(span.span_id)):
                        out.setdefault((span.trace_id, span.span_id), (service, span))
    return out


def stored_spans(store: Store, requests: Sequence[ExportTraceServiceRequest]
                 ) -> dict[tuple[bytes, bytes], tuple[str, Span]]:
    """The stored spans of the requests' traces, read through the store API, in the
    shape of ``sent_spans``; a span stored twice fails."""
    trace_ids = sorted({span.trace_id for request in requests for rs in request.resource_spans
                        for ss in rs.scope_spans for span in ss.spans})
    with store.read() as reader:
        traces = reader.get_traces(trace_ids)
    out: dict[tuple[bytes, bytes], tuple[str, Span]] = {}
    for trace in traces:
        for stored in trace.spans:
            key = (stored.span.trace_id, stored.span.span_id)
            assert key not in out, f"span {key} stored twice"
            out[key] = (stored.origin.service_name, stored.span)
    return out


def workload(seed: int) -> list[Span]:
    """Tasks over several users and sessions, some unsessioned, some logged twice, with
    feedback (some of it on tasks that are only logged later), plus plain spans."""
    rng = random.Random(seed)
    spans: list[Span] = []
    task_ids: list[str] = []
    for u in range(6):
        for s in range(3):
            session_id = f"s{u}-{s}" if s < 2 else None
            for t in range(5):
                task_id = f"u{u}-s{s}-t{t}"
                task_ids.append(task_id)
                start = BASE_NS + rng.randrange(1000) * SEC
                spans.append(task_span(
                    task_id, session_id=session_id, user_id=f"user{u}" if t != 4 else None,
                    input=f"in {task_id}", output=f"out {task_id}", start_ns=start,
                    end_ns=start + rng.randrange(1, 5) * SEC, status_code=2 if t == 3 else 1,
                    metadata={"k": t}, rng=rng,
                ))
    # A task logged again later with more output, and once more with an earlier end.
    spans.append(task_span("u0-s0-t0", session_id="s0-0", user_id="user0", input="in u0-s0-t0",
                           output="final", start_ns=BASE_NS, end_ns=BASE_NS + 5000 * SEC,
                           rng=rng))
    spans.append(task_span("u1-s1-t1", session_id="s9-9", user_id="user9", input="moved",
                           start_ns=BASE_NS - SEC, end_ns=BASE_NS + 6000 * SEC, rng=rng))
    spans.append(task_span("u2-s0-t2", session_id="s2-0", start_ns=BASE_NS,
                           end_ns=BASE_NS + 1, rng=rng))
    for i, task_id in enumerate(rng.sample(task_ids, 25)):
        spans.append(feedback_span(task_id, rng.choice(["success", "failure"]),
                                   time_ns=BASE_NS + (2000 + i) * SEC, rng=rng))
    spans.append(feedback_span("not-logged-yet", "success", time_ns=BASE_NS, rng=rng))
    for _ in range(10):
        spans.append(make_span({"http.method": "GET"}, rng=rng))
    return spans


def deliver(store: StoreWriter, spans: list[Span], seed: int, *,
            max_batch: int = 17, repeat: int = 5) -> list[ExportTraceServiceRequest]:
    """Write the spans shuffled, in random batch sizes, some delivered twice (a retry
    overlapping earlier spans); returns the requests written."""
    rng = random.Random(seed)
    spans = spans[:]
    rng.shuffle(spans)
    requests = []
    i = 0
    while i < len(spans):
        n = rng.randint(1, max_batch)
        batch = spans[i : i + n]
        if rng.random() < 0.3:
            batch = batch + spans[max(0, i - repeat) : i]
        requests.append(make_request(batch))
        i += n
    write(store, *requests)
    return requests


class TestBasics:
    """One task, its session and user; counters; the Store protocol."""

    def test_is_a_store(self, store: Store) -> None:
        """The backend satisfies the Store protocol."""
        assert isinstance(store, Store)

    def test_task_session_user(self, store: Store) -> None:
        """A task span makes a task, its session and its user; the span is kept."""
        span = task_span("t1", session_id="s1", user_id="u1", input="q", output="a",
                         metadata={"model": "m", "n": 3, "ok": True})
        (result,) = write(store, make_request([span]))
        assert (result.spans_stored, result.tasks_new, result.rejected_spans) == (1, 1, 0)
        row = task(store, "t1")
        t = row.task
        assert (t.session_id, t.user_id) == ("s1", "u1")
        assert (t.input, t.output, t.convention) == ("q", "a", "phospho")
        assert t.metadata == '{"model":"m","n":3,"ok":true}'
        assert t.service_name == "test-app"
        assert (row.position, row.is_last) == (1, True)
        s = session(store, "s1")
        assert (s.user_id, s.task_count) == ("u1", 1)
        assert s.first_input == s.last_input == "q"
        u = user(store, "u1")
        assert (u.task_count, u.session_count) == (1, 1)
        assert stored_spans(store, [make_request([span])]) == {
            (span.trace_id, span.span_id): ("test-app", span)}
        check_store(store, [make_request([span])])
        counters = store.counters()
        assert counters["spans_received"] == 1
        assert counters["tasks_new"] == 1

    def test_task_without_session_counts_for_user(self, store: Store) -> None:
        """A task without session belongs to no session but counts for its user."""
        requests = [make_request([task_span("t1", user_id="u1")])]
        write(store, *requests)
        state = check_store(store, requests)
        assert state.sessions == {}
        u = user(store, "u1")
        assert (u.task_count, u.session_count) == (1, 0)
        assert task(store, "t1").position is None

    def test_data_version_moves_with_writes(self, store: Store) -> None:
        """data_version changes with every write, and only then."""
        with store.read() as reader:
            before = reader.data_version()
        with store.read() as reader:
            assert reader.data_version() == before
        write(store, make_request([task_span("t1")]))
        with store.read() as reader:
            assert reader.data_version() != before

    def test_snapshot_is_consistent(self, store: Store) -> None:
        """A reader sees one state: a write in between is not seen by it."""
        write(store, make_request([task_span("t1", session_id="s")]))
        with store.read() as reader:
            first = reader.get_session("s")
            write(store, make_request([task_span("t2", session_id="s")]))
            assert reader.get_session("s") == first
        assert session(store, "s").task_count == 2


class TestDuplicates:
    """A span delivered twice counts once."""

    def test_same_request_twice(self, store: Store) -> None:
        """Re-sending a whole request changes nothing but the duplicate counter."""
        request = make_request([task_span("t1", session_id="s", user_id="u"),
                                feedback_span("t1", "success", time_ns=BASE_NS + SEC),
                                make_span({"a": 1})])
        write(store, request)
        before = read_state(store), stored_spans(store, [request])
        (result,) = write(store, request)
        assert (result.spans_stored, result.spans_duplicate, result.tasks_new) == (0, 3, 0)
        assert (read_state(store), stored_spans(store, [request])) == before
        assert before[1] == sent_spans([request])
        assert store.counters()["spans_duplicate"] == 3

    def test_partial_overlap(self, store: Store) -> None:
        """A request mixing new and already-stored spans stores only the new ones."""
        a = task_span("a", session_id="s", user_id="u")
        b = task_span("b", session_id="s", user_id="u", start_ns=BASE_NS + SEC)
        requests = [make_request([a]), make_request([a, b, a])]
        results = write(store, *requests)
        assert (results[1].spans_stored, results[1].spans_duplicate,
                results[1].tasks_new) == (1, 2, 1)
        assert session(store, "s").task_count == 2
        check_store(store, requests)

    def test_span_repeated_in_one_request(self, store: Store) -> None:
        """A request carrying the same span twice stores and counts it once."""
        t = task_span("rep", session_id="s")
        fb = feedback_span("rep", "success", time_ns=BASE_NS)
        requests = [make_request([t, fb, t, fb])]
        (result,) = write(store, *requests)
        assert (result.spans_stored, result.spans_duplicate) == (2, 2)
        assert (result.tasks_new, result.feedback_new) == (1, 1)
        assert session(store, "s").success_count == 1
        check_store(store, requests)

    def test_big_retry(self, store: Store) -> None:
        """A retried 3000-span batch with 1000 new spans adds exactly those 1000."""
        spans = [task_span(f"r{i}", session_id=f"s{i % 50}", user_id=f"u{i % 7}",
                           start_ns=BASE_NS + i) for i in range(3000)]
        requests = [make_request(spans[:2000]), make_request(spans)]
        results = write(store, *requests)
        assert (results[1].spans_stored, results[1].spans_duplicate,
                results[1].tasks_new) == (1000, 2000, 1000)
        state = check_store(store, requests)
        assert sum(s.task_count for s in state.sessions.values()) == 3000


class TestOrder:
    """Any arrival order, batching and retries give the same views."""

    @pytest.mark.parametrize("seed", [1, 2, 3])
    def test_permutations_agree(self, new_store: Callable[[str], Store], seed: int) -> None:
        """Three shuffled deliveries of one workload give the oracle's views."""
        spans = workload(seed)
        states = []
        for order in range(3):
            store = new_store(f"{seed}-{order}")
            requests = deliver(store, spans, seed * 100 + order)
            check_store(store, requests)
            states.append((read_state(store), stored_spans(store, requests)))
        assert states[0] == states[1] == states[2]
        assert states[0][1] == sent_spans([make_request(spans)])
        assert len(states[0][1]) == len({(s.trace_id, s.span_id) for s in spans})

    def test_last_task_first(self, store: Store) -> None:
        """The last task of a session arriving first still ends up last."""
        write(store, make_request([task_span("t2", session_id="s", input="second",
                                             output="bye", start_ns=BASE_NS + 10 * SEC)]))
        write(store, make_request([task_span("t1", session_id="s", input="first",
                                             start_ns=BASE_NS)]))
        s = session(store, "s")
        assert (s.first_task_id, s.first_input) == ("t1", "first")
        assert (s.last_task_id, s.last_input, s.last_output) == ("t2", "second", "bye")
        assert s.start_ns == BASE_NS
        assert s.end_ns == BASE_NS + 10 * SEC + 1_000_000

    def test_tie_on_start_breaks_by_task_id(self, store: Store) -> None:
        """Two tasks starting at the same time: first/last by task id."""
        write(store, make_request([task_span("b", session_id="s")]))
        write(store, make_request([task_span("a", session_id="s")]))
        s = session(store, "s")
        assert (s.first_task_id, s.last_task_id) == ("a", "b")
        assert [(t.task.task_id, t.position) for t in (task(store, "a"), task(store, "b"))] == [
            ("a", 1), ("b", 2)]


class TestFeedback:
    """Feedback before or after its task; latest feedback wins."""

    def test_feedback_before_task(self, store: Store) -> None:
        """Feedback stored first is applied when the task arrives."""
        requests = [make_request([feedback_span("t1", "failure", time_ns=BASE_NS,
                                                notes="bad")])]
        write(store, requests[0])
        with store.read() as reader:
            assert reader.get_task("t1") is None
        assert read_state(store).tasks == {}
        requests.append(make_request([task_span("t1", session_id="s", user_id="u")]))
        write(store, requests[1])
        assert task(store, "t1").feedback == TaskFeedback("failure", BASE_NS, "bad", "user")
        assert session(store, "s").failure_count == 1
        assert user(store, "u").failure_count == 1
        check_store(store, requests)

    def test_latest_feedback_wins_in_any_order(self, store: Store) -> None:
        """A later flag replaces an earlier one even when it arrives first; counts move."""
        requests = [
            make_request([task_span("t1", session_id="s", user_id="u")]),
            make_request([feedback_span("t1", "success", time_ns=BASE_NS + 2 * SEC,
                                        source="owner")]),
            make_request([feedback_span("t1", "failure", time_ns=BASE_NS + SEC)]),
        ]
        write(store, *requests)
        assert task(store, "t1").feedback == TaskFeedback("success", BASE_NS + 2 * SEC, None,
                                                          "owner")
        s = session(store, "s")
        assert (s.success_count, s.failure_count, s.last_flag) == (1, 0, "success")
        check_store(store, requests)
        requests.append(make_request([feedback_span("t1", "failure",
                                                    time_ns=BASE_NS + 3 * SEC)]))
        write(store, requests[-1])
        u = user(store, "u")
        assert (u.success_count, u.failure_count) == (0, 1)
        check_store(store, requests)

    def test_feedback_and_task_in_one_request(self, store: Store) -> None:
        """Feedback in the same request as its task (either order) is applied."""
        write(store, make_request([feedback_span("t1", "success", time_ns=BASE_NS),
                                   task_span("t1", session_id="s")]))
        feedback = task(store, "t1").feedback
        assert feedback is not None and feedback.flag == "success"
        assert session(store, "s").success_count == 1


class TestTaskLoggedTwice:
    """One task id logged by several spans counts once; the latest version is kept."""

    def test_later_version_replaces(self, store: Store) -> None:
        """A later-ending version updates the task; counts stay at one."""
        requests = [
            make_request([task_span("t1", session_id="s", user_id="u", output=None)]),
            make_request([task_span("t1", session_id="s", user_id="u", output="done",
                                    end_ns=BASE_NS + SEC)]),
        ]
        (_, result) = write(store, *requests)
        assert (result.tasks_new, result.tasks_updated) == (0, 1)
        assert task(store, "t1").task.output == "done"
        assert (session(store, "s").task_count, user(store, "u").task_count) == (1, 1)
        assert session(store, "s").last_output == "done"
        check_store(store, requests)

    def test_earlier_version_ignored(self, store: Store) -> None:
        """An earlier-ending version arriving later changes nothing."""
        write(store, make_request([task_span("t1", session_id="s", output="done",
                                             end_ns=BASE_NS + SEC)]))
        (result,) = write(store, make_request([task_span("t1", session_id="s", output=None)]))
        assert (result.tasks_new, result.tasks_updated) == (0, 0)
        assert task(store, "t1").task.output == "done"
        assert store.counters()["tasks_superseded"] == 1

    def test_recompute_breaks_ties_by_task_id(self, store: Store) -> None:
        """Rebuilding a session after a re-logged task keeps first/last by (start, task
        id), ties included."""
        requests = [
            make_request([task_span(t, session_id="s", user_id="u", input=t) for t in "bca"]),
            make_request([task_span("b", session_id="s", user_id="u", input="b2",
                                    end_ns=BASE_NS + SEC)]),
        ]
        write(store, *requests)
        s = session(store, "s")
        assert (s.first_task_id, s.last_task_id, s.last_input) == ("a", "c", "c")
        check_store(store, requests)

    def test_moving_session_and_user(self, store: Store) -> None:
        """A newer version in another session and user moves the task between rollups."""
        requests = [
            make_request([task_span("t1", session_id="a", user_id="ua"),
                          task_span("t2", session_id="a", user_id="ua")]),
            make_request([task_span("t1", session_id="b", user_id="ub", end_ns=BASE_NS + SEC)]),
        ]
        write(store, *requests)
        state = check_store(store, requests)
        assert {k: (s.user_id, s.task_count) for k, s in state.sessions.items()} == {
            "a": ("ua", 1), "b": ("ub", 1)}
        requests.append(make_request([task_span("t2", user_id="ua", end_ns=BASE_NS + SEC)]))
        write(store, requests[-1])
        state = check_store(store, requests)
        assert list(state.sessions) == ["b"]
        u = user(store, "ua")
        assert (u.task_count, u.session_count) == (1, 0)


class TestSessionUser:
    """A session's user and the users' session counts stay consistent."""

    def test_user_arrives_after_session(self, store: Store) -> None:
        """A session first seen without a user gets one, and the user counts it."""
        requests = [make_request([task_span("t1", session_id="s")]),
                    make_request([task_span("t2", session_id="s", user_id="u")])]
        write(store, *requests)
        assert session(store, "s").user_id == "u"
        assert user(store, "u").session_count == 1
        check_store(store, requests)

    def test_conflicting_users_pick_smallest(self, store: Store) -> None:
        """Tasks of one session with different users: the smallest id, in any order."""
        requests = [make_request([task_span("t1", session_id="s", user_id="bob")]),
                    make_request([task_span("t2", session_id="s", user_id="alice")])]
        write(store, *requests)
        assert session(store, "s").user_id == "alice"
        state = check_store(store, requests)
        assert {k: u.session_count for k, u in state.users.items()} == {"alice": 1, "bob": 0}


class TestBadSpans:
    """Bad spans never fail the batch."""

    def test_invalid_task_attributes(self, store: Store) -> None:
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
        (result,) = write(store, make_request(spans))
        assert (result.spans_stored, result.tasks_new, result.skipped_invalid) == (7, 1, 5)
        assert "phospho.task.id is missing" in result.error_message
        counters = store.counters()
        assert counters["tasks_skipped_invalid"] == 4
        assert counters["feedback_skipped_invalid"] == 1
        assert counters["spans_unknown_type"] == 1

    def test_invalid_ids_rejected(self, store: Store) -> None:
        """Spans with bad ids are rejected (partial success); the others are stored."""
        spans = [make_span({}, trace_id=b"short"), make_span({}, span_id=bytes(8)),
                 task_span("good")]
        (result,) = write(store, make_request(spans))
        assert (result.rejected_spans, result.spans_stored, result.tasks_new) == (2, 1, 1)
        assert "invalid trace_id or span_id" in result.error_message
        assert store.counters()["spans_rejected"] == 2

    def test_batch_is_one_write(self, store: Store) -> None:
        """A batch of requests answers one result per request, in order."""
        results = store.write([extract(make_request([task_span("a")])),
                               extract(make_request([task_span("a", end_ns=BASE_NS + 1),
                                                     task_span("b")]))])
        assert [(r.tasks_new, r.tasks_updated) for r in results] == [(1, 0), (1, 0)]


class TestFailedWrite:
    """A failed write leaves nothing behind, and writing the same extraction again (the
    Ingestor's retry, request by request) counts it once."""

    def test_extraction_written_again_after_failure(
            self, new_store: Callable[[str], Store]) -> None:
        """The precomputed rollup of a request is not consumed by a failed write."""
        request = make_request([
            task_span("a", session_id="s", user_id="u"),
            task_span("b", session_id="s", user_id="u", start_ns=BASE_NS + SEC),
            task_span("c", session_id="s2", user_id="u"),
        ])
        good = extract(request)
        assert good.rollup is not None
        broken = extract(make_request([task_span("d", session_id="s3")]))
        # name=None is deliberately invalid: it makes the write fail
        bad_task = broken.tasks[0]._replace(name=None)  # type: ignore[arg-type]
        broken = broken._replace(tasks=[bad_task])
        store = new_store("retried")
        with pytest.raises(Exception):  # noqa: B017 - each backend has its own error
            store.write([good, broken])
        assert read_state(store).tasks == {}
        assert stored_spans(store, [request]) == {}
        store.write([good])
        assert stored_spans(store, [request]) == sent_spans([request])
        state = check_store(store, [request])
        assert (state.users["u"].task_count, state.users["u"].session_count) == (3, 2)


# ----------------------------------------------------------------------------- last flag


def _last_flags(store: Store) -> dict[str, tuple[str | None, str | None]]:
    """session id -> (last task id, last flag)."""
    return {k: (s.last_task_id, s.last_flag) for k, s in read_state(store).sessions.items()}


def flag_workload(rng: random.Random) -> tuple[list[Span], dict[str, Any]]:
    """Sessions of three tasks (t0, t1, t2 by start) in six cases, and each session's
    expected (last task, last flag)."""
    spans: list[Span] = []
    expected: dict[str, tuple[str, str | None]] = {}

    def add_task(session_id: str, t: int, start_s: int, end_s: float | None = None) -> None:
        start = BASE_NS + start_s * SEC
        end = start + SEC // 2 if end_s is None else BASE_NS + int(end_s * SEC)
        spans.append(task_span(f"{session_id}-t{t}", session_id=session_id, user_id="u",
                               input=f"in {t}", start_ns=start, end_ns=end, rng=rng))

    def add_feedback(session_id: str, t: int, flag: str, time_s: int) -> None:
        spans.append(feedback_span(f"{session_id}-t{t}", flag,
                                   time_ns=BASE_NS + time_s * SEC, rng=rng))

    for i in range(24):
        s = f"s{i:02d}"
        for t in range(3):
            add_task(s, t, 10 * t)
        case = i % 6
        if case == 0:  # no feedback
            expected[s] = (f"{s}-t2", None)
        elif case == 1:  # feedback on the last task
            add_feedback(s, 2, "success", 100)
            expected[s] = (f"{s}-t2", "success")
        elif case == 2:  # two feedbacks on the last task: the latest by time wins
            add_feedback(s, 2, "success", 200)
            add_feedback(s, 2, "failure", 100)
            expected[s] = (f"{s}-t2", "success")
        elif case == 3:  # feedback on an earlier task only
            add_feedback(s, 0, "failure", 100)
            expected[s] = (f"{s}-t2", None)
        elif case == 4:  # the flagged last task re-logged earlier: t1 becomes last
            add_feedback(s, 2, "failure", 100)
            add_feedback(s, 1, "success", 100)
            add_task(s, 2, 5, end_s=60)
            expected[s] = (f"{s}-t1", "success")
        else:  # a flagged earlier task re-logged later: it becomes last
            add_feedback(s, 0, "failure", 100)
            add_task(s, 0, 30, end_s=60)
            add_task(s, 0, 40, end_s=40.5)  # ends before the version above: ignored
            expected[s] = (f"{s}-t0", "failure")
    return spans, expected


class TestLastFlag:
    """A session's ``last_flag`` is its last task's flag, whatever the arrival order."""

    @pytest.mark.parametrize("seed", [1, 2])
    def test_shuffled(self, new_store: Callable[[str], Store], seed: int) -> None:
        """Shuffled deliveries give the expected (last task, flag) of every session, and
        the endings insight counts them."""
        spans, expected = flag_workload(random.Random(seed))
        for order in range(3):
            store = new_store(f"{seed}-{order}")
            requests = deliver(store, spans, seed * 100 + order, max_batch=9, repeat=4)
            assert _last_flags(store) == expected
            check_store(store, requests)
            with store.read() as reader:
                endings = session_insights(reader).endings
            assert {e.flag: e.sessions for e in endings} == Counter(
                flag for _, flag in expected.values())

    def test_feedback_before_task(self, store: Store) -> None:
        """Feedback stored before its task is the session's flag once that task is last."""
        write(store, make_request([feedback_span("t2", "failure", time_ns=BASE_NS)]))
        write(store, make_request([task_span("t1", session_id="s", start_ns=BASE_NS)]))
        assert _last_flags(store) == {"s": ("t1", None)}
        write(store, make_request([task_span("t2", session_id="s", start_ns=BASE_NS + SEC)]))
        assert _last_flags(store) == {"s": ("t2", "failure")}

    def test_feedback_after_task(self, store: Store) -> None:
        """Feedback on the last task sets it; on another task or an old last task not."""
        steps = [
            ([task_span("t1", session_id="s", start_ns=BASE_NS),
              task_span("t2", session_id="s", start_ns=BASE_NS + SEC)], ("t2", None)),
            ([feedback_span("t1", "failure", time_ns=BASE_NS)], ("t2", None)),
            ([feedback_span("t2", "success", time_ns=BASE_NS)], ("t2", "success")),
            ([feedback_span("t2", "failure", time_ns=BASE_NS + SEC)], ("t2", "failure")),
            ([task_span("t3", session_id="s", start_ns=BASE_NS + 2 * SEC)], ("t3", None)),
            ([feedback_span("t2", "success", time_ns=BASE_NS + 2 * SEC)], ("t3", None)),
        ]
        requests = []
        for spans, last in steps:
            requests.append(make_request(spans))
            write(store, requests[-1])
            assert _last_flags(store) == {"s": last}
        check_store(store, requests)

    def test_relogged_last_task(self, store: Store) -> None:
        """A re-logged last task keeps its flag; moved to another session, the flag goes
        with it and the session takes its new last task's."""
        steps = [
            ([task_span("t1", session_id="s", start_ns=BASE_NS),
              task_span("t2", session_id="s", start_ns=BASE_NS + SEC),
              feedback_span("t2", "failure", time_ns=BASE_NS)], {"s": ("t2", "failure")}),
            ([task_span("t2", session_id="s", start_ns=BASE_NS + SEC,
                        end_ns=BASE_NS + 5 * SEC)], {"s": ("t2", "failure")}),
            ([task_span("t2", session_id="other", start_ns=BASE_NS + SEC,
                        end_ns=BASE_NS + 6 * SEC)],
             {"s": ("t1", None), "other": ("t2", "failure")}),
            ([task_span("t2", session_id="s", start_ns=BASE_NS + SEC,
                        end_ns=BASE_NS + 7 * SEC)], {"s": ("t2", "failure")}),
        ]
        requests = []
        for spans, last in steps:
            requests.append(make_request(spans))
            write(store, requests[-1])
            assert _last_flags(store) == last
        check_store(store, requests)
