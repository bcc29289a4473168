"""The view reads of the store API (``ViewReader``: sessions, users, tasks by id and as
pages) over the scripted data set (``tests/support/dataset``: figures known in advance),
on every backend."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from phospho_otel.errors import BadRequest
from phospho_otel.model.records import TaskFeedback
from phospho_otel.model.rollup import SessionRollup, UserRollup
from phospho_otel.store.api import (
    SESSION_ANALYSIS_SORTS,
    SESSION_SORTS,
    TASK_ANALYSIS_SORTS,
    TASK_SORTS,
    USER_SORTS,
    Listing,
    Page,
    SessionFilter,
    Store,
    StoreReader,
    TaskFilter,
    UserFilter,
)
from tests.support.dataset import write_scripted
from tests.support.otlp import SEC, iso_ns

ROLLUP_SESSION_SORTS = [s for s in SESSION_SORTS if s not in SESSION_ANALYSIS_SORTS]
ROLLUP_TASK_SORTS = [s for s in TASK_SORTS if s not in TASK_ANALYSIS_SORTS]


@pytest.fixture
def filled(store: Store) -> Store:
    """The store under test holding the scripted data set."""
    write_scripted(store)
    return store


def session_ids(listing: Listing[SessionRollup]) -> list[str]:
    return [s.session_id for s in listing.items]


def walk(fetch: Callable[[Page], Listing[Any]], sort: str, descending: bool,
         item_id: Callable[[Any], str]) -> list[str]:
    """Every item id of a list, following next_cursor one item at a time."""
    seen: list[str] = []
    cursor = None
    while True:
        listing = fetch(Page(sort, descending=descending, limit=1, cursor=cursor))
        assert len(listing.items) <= 1
        seen += [item_id(x) for x in listing.items]
        if listing.next_cursor is None:
            return seen
        cursor = listing.next_cursor


class TestSessions:
    def test_list_figures(self, filled: Store) -> None:
        """Each session's counts, times, inputs and feedback come out as scripted."""
        with filled.read() as r:
            result = r.list_sessions(SessionFilter(), Page("start_time"))
        assert result.total == 3
        assert result.next_cursor is None
        by_id = {s.session_id: s for s in result.items}
        assert session_ids(result) == ["s3", "s2", "s1"]
        assert by_id["s1"] == SessionRollup(
            session_id="s1", user_id="alice", task_count=3,
            start_ns=iso_ns("2026-01-10T10:00:00Z"), end_ns=iso_ns("2026-01-10T10:05:10Z"),
            first_task_id="a1", first_start_ns=iso_ns("2026-01-10T10:00:00Z"),
            first_input="hello", last_task_id="a3",
            last_start_ns=iso_ns("2026-01-10T10:05:00Z"), last_input="thanks",
            last_output="bye", last_status="ok", success_count=2, failure_count=0,
            error_count=0, last_flag="success",
        )
        s1 = by_id["s1"]
        assert s1.end_ns is not None and s1.start_ns is not None
        assert s1.end_ns - s1.start_ns == 310 * SEC
        s2, s3 = by_id["s2"], by_id["s3"]
        assert (s2.failure_count, s2.error_count, s2.last_flag) == (1, 1, "failure")
        assert s3.end_ns is not None and s3.start_ns is not None
        assert s3.end_ns - s3.start_ns == 4 * SEC
        assert (s3.last_task_id, s3.last_flag) == ("b2", None)

    def test_filters_and_sorts(self, filled: Store) -> None:
        """Time range, user filter and every sort key select and order as documented."""
        day11 = iso_ns("2026-01-11")
        with filled.read() as r:
            def ids(page: Page, **where: Any) -> list[str]:
                return session_ids(r.list_sessions(SessionFilter(**where), page))

            assert ids(Page("start_time"), from_ns=day11) == ["s3", "s2"]
            assert ids(Page("start_time"), to_ns=day11) == ["s1"]
            assert ids(Page("start_time"), user_id="bob") == ["s3"]
            assert ids(Page("start_time"), user_id="alice", from_ns=day11) == ["s2"]
            assert ids(Page("duration_s")) == ["s1", "s2", "s3"]
            assert ids(Page("task_count", descending=False)) == ["s2", "s3", "s1"]
            assert ids(Page("end_time")) == ["s3", "s2", "s1"]
            assert ids(Page("session_id", descending=False)) == ["s1", "s2", "s3"]
            filtered = r.list_sessions(SessionFilter(from_ns=day11), Page("start_time"))
        assert filtered.total == 2

    def test_cursor_pages(self, filled: Store) -> None:
        """Following next_cursor visits every session once, in order, for each sort key."""
        with filled.read() as r:
            for sort in ROLLUP_SESSION_SORTS:  # the figures': test_figure_sorts.py
                for descending in (True, False):
                    seen = walk(lambda p: r.list_sessions(SessionFilter(), p), sort,
                                descending, lambda s: s.session_id)
                    full = r.list_sessions(SessionFilter(), Page(sort, descending=descending))
                    assert seen == session_ids(full), sort
                    assert sorted(seen) == ["s1", "s2", "s3"], sort

    def test_offset(self, filled: Store) -> None:
        """offset skips rows; the total stays the filtered count."""
        with filled.read() as r:
            result = r.list_sessions(SessionFilter(), Page("start_time", limit=1, offset=1))
        assert session_ids(result) == ["s2"]
        assert result.total == 3
        assert result.next_cursor is not None

    def test_bad_sort(self, filled: Store) -> None:
        """An unknown sort key raises BadRequest."""
        with filled.read() as r:
            with pytest.raises(BadRequest):
                r.list_sessions(SessionFilter(), Page("input"))
            with pytest.raises(BadRequest):
                r.list_users(UserFilter(), Page("duration_s"))
            with pytest.raises(BadRequest):
                r.list_tasks(TaskFilter(), Page("task_id"))

    def test_detail_positions(self, filled: Store) -> None:
        """A session's tasks come in (start, task_id) order with positions and is_last."""
        with filled.read() as r:
            s3 = r.get_session("s3")
            assert s3 is not None and s3.task_count == 2
            tasks = r.session_tasks("s3", 100)
            assert [(t.task.task_id, t.position, t.is_last) for t in tasks] == [
                ("b1", 1, False), ("b2", 2, True)]
            s1 = r.session_tasks("s1", 1, offset=1)
            assert [(t.task.task_id, t.position, t.is_last) for t in s1] == [("a2", 2, False)]
            assert r.get_session("nope") is None
            assert r.session_tasks("nope", 100) == []


class TestTasks:
    def test_task_view(self, filled: Store) -> None:
        """A task carries its payloads, metadata, latest flag, notes and position."""
        with filled.read() as r:
            a3 = r.get_task("a3")
            a1 = r.get_task("a1")
        assert a3 is not None
        assert a3.feedback == TaskFeedback("success", iso_ns("2026-01-10T10:07:00Z"), "great",
                                           "user")
        assert (a3.position, a3.is_last) == (3, True)
        assert a1 is not None
        t = a1.task
        assert json.loads(t.metadata) == {"model": "gpt-x", "tokens": 12}
        assert t.raw_input is not None and json.loads(t.raw_input) == {"messages": []}
        assert (a1.position, a1.is_last, t.status, a1.feedback) == (1, False, "ok", None)
        assert (t.input, t.output, t.name, t.service_name) == ("hello", "hi", "chat", "chat-app")
        assert t.start_ns == iso_ns("2026-01-10T10:00:00Z")
        assert t.end_ns - t.start_ns == 2 * SEC

    def test_unsessioned(self, filled: Store) -> None:
        """A task without a session has no position; unknown ids give None."""
        with filled.read() as r:
            c1 = r.get_task("c1")
            assert c1 is not None
            assert (c1.task.session_id, c1.task.user_id, c1.position, c1.is_last) == (
                None, "carol", None, None)
            assert r.get_task("zzz") is None

    def test_list(self, filled: Store) -> None:
        """Task lists filter by user and session, newest first."""
        with filled.read() as r:
            found = r.list_tasks(TaskFilter(user_id="alice"), Page("start_time"))
            assert [t.task.task_id for t in found.items] == ["a4", "a3", "a2", "a1"]
            assert found.total == 4
            found = r.list_tasks(TaskFilter(session_id="s3"),
                                 Page("start_time", descending=False))
            assert [t.task.task_id for t in found.items] == ["b1", "b2"]
            assert [t.position for t in found.items] == [1, 2]
            assert r.list_tasks(TaskFilter(), Page("start_time")).total == 7
            day11 = iso_ns("2026-01-11")
            found = r.list_tasks(TaskFilter(from_ns=day11, to_ns=iso_ns("2026-01-12")),
                                 Page("start_time"))
            assert [t.task.task_id for t in found.items] == ["b2", "b1", "a4"]
            assert r.list_tasks(TaskFilter(), Page("start_time"), with_total=False).total is None

    def test_cursor_pages(self, filled: Store) -> None:
        """Following next_cursor visits every task once, in order, both ways."""
        with filled.read() as r:
            for sort in ROLLUP_TASK_SORTS:  # the figures': test_figure_sorts.py
                for descending in (True, False):
                    seen = walk(lambda p: r.list_tasks(TaskFilter(), p), sort, descending,
                                lambda t: t.task.task_id)
                    full = r.list_tasks(TaskFilter(), Page(sort, descending=descending))
                    assert seen == [t.task.task_id for t in full.items]
                    assert sorted(seen) == ["a1", "a2", "a3", "a4", "b1", "b2", "c1"]


def user_ids(reader: StoreReader, page: Page, **where: Any) -> list[str]:
    return [u.rollup.user_id for u in reader.list_users(UserFilter(**where), page).items]


class TestUsers:
    def test_figures(self, filled: Store) -> None:
        """Each user's counts, times, averages and feedback come out as scripted."""
        with filled.read() as r:
            found = r.list_users(UserFilter(), Page("task_count"))
        assert found.total == 3
        assert [u.rollup.user_id for u in found.items] == ["alice", "bob", "carol"]
        alice, bob, carol = found.items
        assert alice.rollup == UserRollup(
            user_id="alice", task_count=4, session_count=2,
            first_seen_ns=iso_ns("2026-01-10T10:00:00Z"),
            last_seen_ns=iso_ns("2026-01-11T09:00:30Z"),
            success_count=2, failure_count=1, error_count=1,
        )
        assert alice.avg_session_duration_ns == 170 * SEC
        assert alice.avg_tasks_per_session == 2.0
        assert (bob.rollup.session_count, bob.avg_session_duration_ns,
                bob.rollup.success_count, bob.rollup.failure_count) == (1, 4 * SEC, 0, 0)
        assert (carol.rollup.task_count, carol.rollup.session_count,
                carol.avg_session_duration_ns, carol.avg_tasks_per_session) == (
            1, 0, None, None)

    def test_activity(self, filled: Store) -> None:
        """Tasks per UTC day: alice's three on 2026-01-10 and one on the 11th."""
        day = 86_400 * SEC
        with filled.read() as r:
            assert r.user_activity("alice") == [(iso_ns("2026-01-10") // day, 3),
                                                 (iso_ns("2026-01-11") // day, 1)]
            assert r.user_activity("bob") == [(iso_ns("2026-01-11") // day, 2)]
            assert r.user_activity("nobody") == []

    def test_range_and_sorts(self, filled: Store) -> None:
        """The time range keeps users active in it; every sort key orders."""
        with filled.read() as r:
            by_id = Page("user_id", descending=False)
            assert user_ids(r, by_id, from_ns=iso_ns("2026-01-11T10:00:00Z")) == [
                "bob", "carol"]
            assert user_ids(r, by_id, to_ns=iso_ns("2026-01-11")) == ["alice"]
            assert user_ids(r, by_id, user_id="bob") == ["bob"]
            assert user_ids(r, Page("last_seen")) == ["carol", "bob", "alice"]
            assert user_ids(r, Page("first_seen", descending=False)) == [
                "alice", "bob", "carol"]
            assert user_ids(r, Page("session_count")) == ["alice", "bob", "carol"]
            assert user_ids(r, Page("user_id")) == ["carol", "bob", "alice"]

    def test_cursor_pages_and_offset(self, filled: Store) -> None:
        """Following next_cursor visits every user once, in order, for each sort key;
        offset skips rows."""
        with filled.read() as r:
            for sort in USER_SORTS:
                for descending in (True, False):
                    seen = walk(lambda p: r.list_users(UserFilter(), p), sort,
                                descending, lambda u: u.rollup.user_id)
                    assert seen == user_ids(r, Page(sort, descending=descending)), sort
                    assert sorted(seen) == ["alice", "bob", "carol"], sort
            page = r.list_users(UserFilter(), Page("task_count", limit=1, offset=1))
        assert [u.rollup.user_id for u in page.items] == ["bob"]
        assert page.total == 3

    def test_detail(self, filled: Store) -> None:
        """A user's detail lists their sessions and tasks, newest first."""
        with filled.read() as r:
            alice = r.get_user("alice")
            assert alice is not None
            assert (alice.rollup.task_count, alice.avg_session_duration_ns) == (4, 170 * SEC)
            assert [s.session_id for s in r.user_sessions("alice", 100)] == ["s2", "s1"]
            tasks = r.user_tasks("alice", 100)
            assert [t.task.task_id for t in tasks] == ["a4", "a3", "a2", "a1"]
            assert [t.position for t in tasks] == [1, 3, 2, 1]
            assert [t.task.task_id for t in r.user_tasks("alice", 2)] == ["a4", "a3"]
            assert r.user_sessions("carol", 100) == []
            assert r.get_user("dave") is None
