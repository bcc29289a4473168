"""The SQLite backend's analysis filters (``store.sqlite.views``): sessions by state and end
reason, tasks by event and evaluation. Their pages walk an index and their totals count
the smaller side; both must give what the filters mean, checked here against the
definition computed in Python, including an ended session whose session is gone (a
replaced task emptied it) and sessions not analysed yet (active)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.model.analysis import (
    DetectedEvent,
    Evaluation,
    SessionAnalysis,
    TaskAnalysis,
)
from phospho_otel.model.records import Extraction, TaskRecord
from phospho_otel.store.api import AnalysisUpdate, Page, SessionFilter, TaskFilter
from phospho_otel.store.sqlite import SQLiteStore, views
from phospho_otel.store.sqlite.views import session_where

SEC = 1_000_000_000
BASE = 1_764_000_000 * SEC
REASONS = ("resolved", "frustrated", "other")
LABELS = ("success", "failure", "unknown")


def _task(n: int, session: str | None, user: str, start: int) -> TaskRecord:
    return TaskRecord(
        task_id=f"t{n:03d}", trace_id=n.to_bytes(16, "big"), span_id=n.to_bytes(8, "big"),
        session_id=session, user_id=user, name="chat", service_name="test",
        convention="phospho", input=f"q{n}", output=f"a{n}", raw_input=None, raw_output=None,
        metadata="{}", start_ns=start, end_ns=start + SEC, status="ok")


def _extraction(tasks: list[TaskRecord]) -> Extraction:
    return Extraction(groups=[], tasks=tasks, feedback=[], span_count=0, rejected_spans=0,
                      counters={}, problems=[], rollup=None)


class _Data:
    """What the store was given: session ids still in ``sessions``, their analyses, and
    each task's label and events."""

    sessions: dict[str, tuple[str, int]]  # id -> (user, start)
    analyses: dict[str, SessionAnalysis]
    labels: dict[str, str]
    events: dict[str, set[str]]
    starts: dict[str, int]
    users: dict[str, str]


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[SQLiteStore, _Data]]:
    """40 sessions of 3 tasks (4 users) and 5 tasks without a session; 30 sessions
    analysed (every third active, the others ended with a reason in turn), 10 not; then
    the tasks of the ended session s001 are logged again in session s039, which empties
    s001 (its analysis stays)."""
    store = SQLiteStore(tmp_path / "phospho.db", synchronous="NORMAL")
    data = _Data()
    data.sessions, data.analyses, data.labels, data.events = {}, {}, {}, {}
    data.starts, data.users = {}, {}
    tasks: list[TaskRecord] = []
    analyses: list[TaskAnalysis] = []
    counter = itertools.count()
    for s in range(40):
        sid, user, start = f"s{s:03d}", f"u{s % 4}", BASE + s * 100 * SEC
        data.sessions[sid] = (user, start)
        for k in range(3):
            n = next(counter)
            task = _task(n, sid, user, start + k * 10 * SEC)
            tasks.append(task)
            label = LABELS[n % 3]
            events = {"thanks"} if n % 4 == 0 else ({"rare"} if n == 7 else set())
            data.labels[task.task_id], data.events[task.task_id] = label, events
            data.starts[task.task_id], data.users[task.task_id] = task.start_ns, user
            analyses.append(TaskAnalysis(
                task.task_id, sid, user, task.start_ns, k + 1,
                Evaluation(label, 0.5, "heuristic:test", "test"),
                tuple(DetectedEvent(e, "keywords", 1.0, "input") for e in sorted(events)),
                None, None, BASE))
    for n in range(200, 205):  # without a session (nor a position)
        task = _task(n, None, "u0", BASE + n * SEC)
        tasks.append(task)
        label = LABELS[n % 3]
        data.labels[task.task_id], data.events[task.task_id] = label, set()
        data.starts[task.task_id], data.users[task.task_id] = task.start_ns, "u0"
        analyses.append(TaskAnalysis(task.task_id, None, "u0", task.start_ns, None,
                                     Evaluation(label, 0.5, "heuristic:test", "test"), (),
                                     None, None, BASE))
    store.write([_extraction(tasks)])
    sessions = []
    for s in range(30):
        sid = f"s{s:03d}"
        ended = s % 3 != 0
        sessions.append(SessionAnalysis(
            sid, data.sessions[sid][0], "ended" if ended else "active",
            BASE if ended else None, REASONS[s % len(REASONS)] if ended else None, (), SEC,
            Evaluation(LABELS[s % 3], 0.5, "heuristic:session", "test") if ended else None,
            {"thanks": 1} if s % 5 == 0 else ({"rare": 2} if s == 7 else {}), BASE))
    store.write_analysis(AnalysisUpdate(tasks=analyses, sessions=sessions))
    data.analyses = {a.session_id: a for a in sessions}
    assert data.analyses["s001"].state == "ended"
    # s001's tasks move to the end of s039: s001 is gone from sessions, its ended analysis
    # stays (their own analyses too: the tasks are the same)
    later = 4000 * SEC
    moved = [t._replace(session_id="s039", user_id="u3", start_ns=t.start_ns + later,
                        end_ns=t.end_ns + later) for t in tasks if t.session_id == "s001"]
    store.write([_extraction(moved)])
    del data.sessions["s001"]
    for t in moved:
        data.starts[t.task_id] = t.start_ns - later  # task_analysis still says so
        data.users[t.task_id] = "u3"
    yield store, data
    store.close()


def _expected_sessions(data: _Data, f: SessionFilter) -> list[str]:
    out = []
    for sid, (user, start) in data.sessions.items():
        a = data.analyses.get(sid)
        if f.user_id is not None and user != f.user_id:
            continue
        if f.from_ns is not None and start < f.from_ns:
            continue
        if f.to_ns is not None and start >= f.to_ns:
            continue
        if f.state == "ended" and (a is None or a.state != "ended"):
            continue
        if f.state == "active" and a is not None and a.state == "ended":
            continue
        if f.end_reason is not None and (a is None or a.end_reason != f.end_reason):
            continue
        if f.evaluation is not None and (a is None or a.evaluation is None
                                         or a.evaluation.label != f.evaluation):
            continue
        if f.event is not None and (a is None or not a.event_counts.get(f.event)):
            continue
        out.append(sid)
    return sorted(out, key=lambda sid: (data.sessions[sid][1], sid), reverse=True)


SESSION_FILTERS = [
    SessionFilter(state="ended"),
    SessionFilter(state="active"),
    SessionFilter(end_reason="frustrated"),
    SessionFilter(end_reason="resolved", state="ended"),
    SessionFilter(end_reason="resolved", state="active"),
    SessionFilter(state="ended", user_id="u1"),
    SessionFilter(state="active", from_ns=BASE + 1000 * SEC, to_ns=BASE + 3000 * SEC),
    SessionFilter(end_reason="other", from_ns=BASE + 1000 * SEC),
    SessionFilter(evaluation="failure"),
    SessionFilter(evaluation="success", state="ended", user_id="u2"),
    SessionFilter(event="thanks"),
    SessionFilter(event="rare", state="ended"),
    SessionFilter(event="thanks", state="active"),
    SessionFilter(event="none of them"),
    SessionFilter(),
]


@pytest.mark.parametrize("share", [1, 20, 10**9], ids=["by-id", "default", "walk"])
@pytest.mark.parametrize("where", SESSION_FILTERS, ids=repr)
def test_session_filters_page_and_total(filled: tuple[SQLiteStore, _Data],
                                        where: SessionFilter, share: int,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every page (followed by cursor) and the total are the filter's sessions, whichever
    way the list reads them (``SPARSE_SHARE`` 1: every filter is "few", by id)."""
    monkeypatch.setattr(views, "SPARSE_SHARE", share)
    store, data = filled
    expected = _expected_sessions(data, where)
    got: list[str] = []
    cursor = None
    with store.read() as reader:
        while True:
            listing = reader.list_sessions(where, Page("start_time", limit=4, cursor=cursor))
            assert listing.total == len(expected)
            got += [s.session_id for s in listing.items]
            if listing.next_cursor is None:
                break
            cursor = listing.next_cursor
    assert got == expected


@pytest.mark.parametrize("sparse", [False, True], ids=["walk", "by-id"])
@pytest.mark.parametrize("where", SESSION_FILTERS, ids=repr)
def test_session_where_both_forms(filled: tuple[SQLiteStore, _Data], where: SessionFilter,
                                  sparse: bool) -> None:
    """The walked (``EXISTS``) and the by-id (``IN``) forms of a filter keep the same
    sessions (the list chooses by the filter's share of the sessions)."""
    store, data = filled
    conditions, params = session_where(where, sparse=sparse)
    with store.read() as reader:
        got = {s for (s,) in reader.conn.execute(
            "SELECT session_id FROM sessions" + (" WHERE " + " AND ".join(conditions)
                                                  if conditions else ""), params)}
    assert got == set(_expected_sessions(data, where))


def _expected_tasks(data: _Data, f: TaskFilter) -> list[str]:
    out = [t for t in data.labels
           if (f.event is None or f.event in data.events[t])
           and (f.evaluation is None or data.labels[t] == f.evaluation)
           and (f.user_id is None or data.users[t] == f.user_id)]
    return sorted(out, key=lambda t: (data.starts[t], t), reverse=True)


@pytest.mark.parametrize("where", [
    TaskFilter(event="thanks"), TaskFilter(event="rare"), TaskFilter(evaluation="failure"),
    TaskFilter(evaluation="success"), TaskFilter(evaluation="unknown"),
    TaskFilter(event="thanks", evaluation="success"),
    TaskFilter(evaluation="unknown", user_id="u2"), TaskFilter(evaluation="failure", user_id="u3"),
], ids=repr)
def test_task_filters_page_and_total(filled: tuple[SQLiteStore, _Data],
                                     where: TaskFilter) -> None:
    store, data = filled
    expected = _expected_tasks(data, where)
    with store.read() as reader:
        listing = reader.list_tasks(where, Page("start_time", limit=500))
    assert listing.total == len(expected)
    assert [r.task.task_id for r in listing.items] == expected


def _plan(store: SQLiteStore, sql: str, params: list[object]) -> str:
    with store.read() as reader:
        return " | ".join(r[3] for r in reader.conn.execute("EXPLAIN QUERY PLAN " + sql, params))


def test_plans_walk_indexes(filled: tuple[SQLiteStore, _Data]) -> None:
    """A page of ended sessions walks the sort index, probing each session's analysis by
    its key (no list of every ended session first); the ended count merges two ordered
    indexes; the end-reason count starts from its index."""
    store, _ = filled
    conditions, params = session_where(SessionFilter(state="ended"))
    plan = _plan(store, "SELECT session_id FROM sessions WHERE " + " AND ".join(conditions)
                 + " ORDER BY start_ns DESC, session_id DESC LIMIT 51", params)
    assert "sessions_by_start" in plan and "LIST SUBQUERY" not in plan, plan
    assert "sqlite_autoindex_session_analysis_1" in plan, plan
    plan = _plan(store, "SELECT count(*) FROM (SELECT session_id FROM session_analysis"
                 " WHERE state = 'ended' EXCEPT SELECT session_id FROM sessions ORDER BY 1)", [])
    assert "MERGE (EXCEPT)" in plan and "session_analysis_by_state_id" in plan, plan
    plan = _plan(store, "SELECT count(*) FROM session_analysis a WHERE +a.state = 'ended'"
                 " AND a.end_reason = ? AND EXISTS (SELECT 1 FROM sessions s"
                 " WHERE s.session_id = a.session_id)", ["frustrated"])
    assert "session_analysis_by_reason" in plan, plan
    plan = _plan(store, "SELECT user_id, day FROM user_days WHERE tasks > 0 ORDER BY day", [])
    assert "COVERING INDEX user_days_by_day_tasks" in plan, plan
    plan = _plan(store, "SELECT active_duration_ns FROM session_analysis WHERE state = 'ended'"
                 " ORDER BY active_duration_ns", [])
    assert "COVERING INDEX session_analysis_by_active_duration" in plan, plan
    assert "TEMP B-TREE" not in plan, plan
