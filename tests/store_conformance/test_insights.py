"""The insight primitives of the store API (``InsightReader``) and the figures
``phospho_otel.insights`` composes from them, over the scripted data set
(``tests/support/dataset``), filtered and not, on every backend; and every view read is
the same whatever order the data arrived in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from phospho_otel.insights import EndingGroup, session_insights, user_insights
from phospho_otel.store.api import (
    Ending,
    Page,
    SessionFilter,
    SessionTotals,
    Store,
    StoreReader,
    TaskFilter,
    UserFilter,
    UserTotals,
)
from tests.support.dataset import scripted_requests, write_scripted
from tests.support.oracle import check_store
from tests.support.otlp import SEC, iso_ns

NS_PER_DAY = 86_400 * SEC
DAY10 = iso_ns("2026-01-10") // NS_PER_DAY
DAY11 = iso_ns("2026-01-11") // NS_PER_DAY


@pytest.fixture
def filled(store: Store) -> Store:
    """The store under test holding the scripted data set."""
    write_scripted(store)
    return store


class TestSessionPrimitives:
    def test_totals(self, filled: Store) -> None:
        """Counts and averages over the sessions of a filter (durations 4, 30, 310 s)."""
        with filled.read() as r:
            totals = r.session_totals(SessionFilter())
            assert totals.avg_duration_ns == pytest.approx(344 * SEC / 3)
            assert totals == SessionTotals(
                session_count=3, task_count=6, avg_duration_ns=totals.avg_duration_ns,
                avg_tasks=2.0, success_count=2, failure_count=1, error_count=1)
            alice = r.session_totals(SessionFilter(user_id="alice"))
            assert (alice.session_count, alice.task_count, alice.avg_duration_ns,
                    alice.avg_tasks) == (2, 4, 170 * SEC, 2.0)
            empty = r.session_totals(SessionFilter(from_ns=iso_ns("2030-01-01")))
        assert empty == SessionTotals(0, 0, None, None, 0, 0, 0)

    def test_lengths_and_duration_ranks(self, filled: Store) -> None:
        """Lengths 1, 2, 3 once each; durations by rank, ranks past the end left out."""
        with filled.read() as r:
            assert r.session_lengths(SessionFilter()) == [(1, 1), (2, 1), (3, 1)]
            assert r.session_lengths(SessionFilter(user_id="alice")) == [(1, 1), (3, 1)]
            assert r.session_durations_at(SessionFilter(), [0, 1, 2, 3]) == [
                4 * SEC, 30 * SEC, 310 * SEC]
            assert r.session_durations_at(SessionFilter(), [2]) == [310 * SEC]
            assert r.session_durations_at(SessionFilter(), []) == []
            assert r.session_durations_at(SessionFilter(user_id="bob"), [0, 1]) == [4 * SEC]
            assert r.session_durations_at(SessionFilter(to_ns=iso_ns("2026-01-01")), [0]) == []

    def test_duration_counts(self, filled: Store) -> None:
        """Durations 4, 30 and 310 s counted in the buckets that hold them, the last
        bucket open-ended; the insights' histogram keeps the non-empty buckets."""
        with filled.read() as r:
            edges = [0, 5 * SEC, 60 * SEC, 300 * SEC]
            assert r.session_duration_counts(SessionFilter(), edges) == [1, 1, 0, 1]
            assert r.session_duration_counts(SessionFilter(user_id="alice"), edges) == [
                0, 1, 0, 1]
            assert r.session_duration_counts(SessionFilter(user_id="alice"),
                                             [0, 30 * SEC, 31 * SEC]) == [0, 1, 1]
            assert r.session_duration_counts(SessionFilter(from_ns=iso_ns("2030-01-01")),
                                             edges) == [0, 0, 0, 0]
            figures = session_insights(r)
        assert figures.duration_histogram == [(4 * SEC, 8 * SEC - 1, 1),
                                              (16 * SEC, 32 * SEC - 1, 1),
                                              (256 * SEC, 512 * SEC - 1, 1)]

    def test_per_day_and_endings(self, filled: Store) -> None:
        """One session on 2026-01-10, two on the 11th; each session ended by its last
        task's (flag, status, input)."""
        with filled.read() as r:
            assert r.sessions_per_day(SessionFilter()) == [(DAY10, 1), (DAY11, 2)]
            assert r.sessions_per_day(SessionFilter(from_ns=iso_ns("2026-01-11T10:00:00Z"))) \
                == [(DAY11, 1)]
            assert r.sessions_per_day(SessionFilter(from_ns=iso_ns("2030-01-01"))) == []
            assert sorted(r.session_endings(SessionFilter()), key=repr) == sorted([
                Ending("success", "ok", "thanks", 1), Ending("failure", "error", "refund?", 1),
                Ending(None, "ok", "hello", 1)], key=repr)
            assert r.session_endings(SessionFilter(user_id="bob")) == [
                Ending(None, "ok", "hello", 1)]


class TestUserPrimitives:
    def test_totals_counts_and_top(self, filled: Store) -> None:
        """Users with 4, 2 and 1 tasks; the top users by tasks, ties by id."""
        with filled.read() as r:
            totals = r.user_totals(UserFilter())
            assert totals.avg_tasks == pytest.approx(7 / 3)
            assert totals == UserTotals(user_count=3, avg_tasks=totals.avg_tasks,
                                        avg_sessions=1.0, success_count=2, failure_count=1)
            assert r.user_task_counts(UserFilter()) == [1, 2, 4]
            assert [u.rollup.user_id for u in r.top_users(UserFilter(), 2)] == ["alice", "bob"]
            later = UserFilter(from_ns=iso_ns("2026-01-11T10:00:00Z"))
            assert r.user_task_counts(later) == [1, 2]
            assert r.user_totals(later).user_count == 2
            top = r.top_users(later, 10)
        assert [u.rollup.user_id for u in top] == ["bob", "carol"]
        assert (top[0].avg_session_duration_ns, top[1].avg_session_duration_ns) == (
            4 * SEC, None)


class TestInsights:
    def test_sessions(self, filled: Store) -> None:
        """Session figures: durations 4, 30, 310 s; lengths 1, 2, 3; what ended each."""
        with filled.read() as r:
            x = session_insights(r)
        assert (x.session_count, x.task_count) == (3, 6)
        assert x.avg_duration_ns == pytest.approx(114.666667 * SEC)
        assert x.median_duration_ns == 30 * SEC
        assert x.p90_duration_ns == 254 * SEC
        assert x.avg_tasks_per_session == 2.0
        assert (x.success_count, x.failure_count, x.error_count) == (2, 1, 1)
        assert x.length_histogram == [(1, 1), (2, 1), (3, 1)]
        assert x.sessions_per_day == [(DAY10, 1), (DAY11, 2)]
        endings = {(g.flag, g.status): g for g in x.endings}
        assert set(endings) == {("success", "ok"), ("failure", "error"), (None, "ok")}
        assert endings[("failure", "error")] == EndingGroup("failure", "error", 1,
                                                            [("refund?", 1)])
        assert endings[(None, "ok")].top_inputs == [("hello", 1)]

    def test_sessions_filtered(self, filled: Store) -> None:
        """Filters apply to every figure."""
        with filled.read() as r:
            alice = session_insights(r, where=SessionFilter(user_id="alice"))
            empty = session_insights(r, where=SessionFilter(from_ns=iso_ns("2030-01-01")))
            top0 = session_insights(r, top_inputs=0)
        assert (alice.session_count, alice.median_duration_ns) == (2, 170 * SEC)
        assert alice.sessions_per_day == [(DAY10, 1), (DAY11, 1)]
        assert {(g.flag, g.status) for g in alice.endings} == {("success", "ok"),
                                                              ("failure", "error")}
        assert (empty.session_count, empty.median_duration_ns, empty.p90_duration_ns,
                empty.avg_duration_ns, empty.endings, empty.length_histogram) == (
            0, None, None, None, [], [])
        assert all(g.top_inputs == [] for g in top0.endings) and len(top0.endings) == 3

    def test_users(self, filled: Store) -> None:
        """User figures: task counts 1, 2, 4."""
        with filled.read() as r:
            x = user_insights(r)
        assert x.user_count == 3
        assert x.avg_tasks_per_user == pytest.approx(2.333333)
        assert x.median_tasks_per_user == 2
        assert x.p90_tasks_per_user == pytest.approx(3.6)
        assert x.avg_sessions_per_user == 1.0
        assert x.success_rate == pytest.approx(2 / 3)
        assert x.tasks_per_user == [(1, 1, 1), (2, 3, 1), (4, 7, 1)]
        assert [u.rollup.user_id for u in x.top_users] == ["alice", "bob", "carol"]

    def test_users_filtered(self, filled: Store) -> None:
        """The time range applies to every user figure; top limits the top users."""
        with filled.read() as r:
            later = user_insights(r, where=UserFilter(from_ns=iso_ns("2026-01-11T10:00:00Z")),
                                  top=1)
            empty = user_insights(r, where=UserFilter(to_ns=iso_ns("2020-01-01")))
        assert (later.user_count, later.median_tasks_per_user, later.success_rate) == (
            2, 1.5, None)
        assert later.tasks_per_user == [(1, 1, 1), (2, 3, 1)]
        assert [u.rollup.user_id for u in later.top_users] == ["bob"]
        assert (empty.user_count, empty.avg_tasks_per_user, empty.median_tasks_per_user,
                empty.success_rate, empty.tasks_per_user, empty.top_users) == (
            0, None, None, None, [], [])


def every_view(r: StoreReader) -> tuple[Any, ...]:
    """What each view read answers over the data set."""
    pages = [Page(sort) for sort in ("start_time", "duration_s", "session_id")]
    return (
        [r.list_sessions(SessionFilter(), p) for p in pages],
        [r.list_users(UserFilter(), Page(sort)) for sort in ("user_id", "task_count")],
        r.list_tasks(TaskFilter(), Page("start_time")),
        [(r.get_session(s), r.session_tasks(s, 100)) for s in ("s1", "s2", "s3")],
        [(r.get_user(u), r.user_sessions(u, 100), r.user_tasks(u, 100))
         for u in ("alice", "bob", "carol")],
        [r.get_task(t) for t in ("a1", "a2", "a3", "a4", "b1", "b2", "c1")],
        session_insights(r),
        session_insights(r, where=SessionFilter(user_id="alice")),
        user_insights(r),
        sorted(r.session_endings(SessionFilter()), key=repr),
    )


class TestOrderIndependence:
    def test_any_arrival_order(self, new_store: Callable[[str], Store]) -> None:
        """Whatever order the spans arrive in, every view is the same."""
        outputs = []
        for seed in (1, 2, 3):
            store = new_store(f"order-{seed}")
            write_scripted(store, seed)
            check_store(store, scripted_requests(seed))
            with store.read() as r:
                outputs.append(every_view(r))
        assert scripted_requests(1) != scripted_requests(2)  # really another order
        assert outputs[0] == outputs[1] == outputs[2]

    def test_delivered_twice(self, new_store: Callable[[str], Store]) -> None:
        """The data set delivered twice, in two orders, gives the same views as once."""
        once, twice = new_store("once"), new_store("twice")
        write_scripted(once)
        write_scripted(twice, 4)
        write_scripted(twice, 5)
        with once.read() as a, twice.read() as b:
            assert every_view(a) == every_view(b)
