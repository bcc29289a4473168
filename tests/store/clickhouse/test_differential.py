"""The differential test: one workload (3,000 tasks over 150 users, each task a trace
with a child span in another service; tasks logged again, some moved to another session;
feedback before and after its task; requests shuffled, some delivered twice) written to
SQLite and to ClickHouse, then every view, insight and trace answer read through the
store API from both and compared equal (and the views checked against the oracle); then
the analyzer run over both, and every answer on its results compared equal."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import extract
from phospho_otel.insights import session_insights, user_insights
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.insights.sessions import session_outcomes
from phospho_otel.insights.users import user_class_counts, user_retention
from phospho_otel.model.analysis import USER_CLASSES
from phospho_otel.store import open_store
from phospho_otel.store.api import (
    SESSION_ANALYSIS_SORTS,
    SESSION_SORTS,
    TASK_ANALYSIS_SORTS,
    TASK_SORTS,
    USER_ANALYSIS_SORTS,
    USER_SORTS,
    Listing,
    Page,
    SessionFilter,
    Store,
    StoredTrace,
    StoreReader,
    TaskFilter,
    TraceQuery,
    UserFilter,
)
from tests.store.clickhouse.workload import DAY, TASKS, workload
from tests.support.clickhouse import open_clickhouse_store
from tests.support.oracle import check_store, read_state
from tests.support.otlp import BASE_NS, SEC


def _walk(fetch: Callable[[Page], Any], sort: str, descending: bool, pages: int = 2,
          limit: int = 40) -> list[Any]:
    """A few pages by cursor, then one page by offset."""
    out: list[Any] = []
    cursor = None
    for _ in range(pages):
        listing = fetch(Page(sort, descending=descending, limit=limit, cursor=cursor))
        out.append((listing.items, listing.total, listing.next_cursor))
        cursor = listing.next_cursor
        if cursor is None:
            break
    out.append(fetch(Page(sort, descending=descending, limit=7, offset=33)))
    return out


def _rounded(value: Any) -> Any:
    """``value`` with every float rounded to 12 significant digits: averages agree to
    that, not to the last bit (SQLite's ``avg`` sums in floating point, the ClickHouse
    backend divides exact integer sums)."""
    if isinstance(value, float):
        return float(f"{value:.12g}")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,
                *(_rounded(getattr(value, f.name)) for f in dataclasses.fields(value)))
    if isinstance(value, (list, tuple)):
        return [type(value).__name__, *(_rounded(v) for v in value)]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _trace(t: StoredTrace) -> tuple[Any, ...]:
    """A trace, its spans in a backend-neutral order, with their origins (less the
    backend's own origin id)."""
    spans = sorted((s.span.start_time_unix_nano, s.span.span_id, s.span.SerializeToString(),
                     s.origin.service_name, s.origin.resource_bytes,
                     s.origin.scope.SerializeToString(), s.origin.resource_schema_url,
                     s.origin.scope_schema_url) for s in t.spans)
    return t.trace_id, t.truncated, spans


def answers(r: StoreReader, ids: dict[str, list[str]]) -> Iterator[tuple[str, Any]]:
    """Every answer of the store API over the workload, each with its name."""
    windows = [(None, None), (BASE_NS + 2 * DAY, BASE_NS + 6 * DAY), (BASE_NS + 9 * DAY, None)]
    for lo, hi in windows:
        for user in (None, ids["users"][0]):
            sf = SessionFilter(from_ns=lo, to_ns=hi, user_id=user)
            uf = UserFilter(from_ns=lo, to_ns=hi, user_id=user)
            tf = TaskFilter(from_ns=lo, to_ns=hi, user_id=user)
            unfiltered = lo is None and user is None  # every sort; the others one each
            directions = (True, False) if unfiltered else (True,)
            session_sorts = [s for s in SESSION_SORTS if s not in SESSION_ANALYSIS_SORTS]
            for sort in session_sorts if unfiltered else session_sorts[:1]:
                for desc in directions:
                    yield (f"sessions {sf} {sort} {desc}",
                           _walk(partial(r.list_sessions, sf), sort, desc))
            user_sorts = [s for s in USER_SORTS if s not in USER_ANALYSIS_SORTS]  # insights
            for sort in user_sorts if unfiltered else user_sorts[:1]:
                for desc in directions:
                    yield (f"users {uf} {sort} {desc}",
                           _walk(partial(r.list_users, uf), sort, desc))
            for sort in [s for s in TASK_SORTS if s not in TASK_ANALYSIS_SORTS]:
                for desc in directions:
                    yield (f"tasks {tf} {sort} {desc}",
                           _walk(partial(r.list_tasks, tf), sort, desc))
            yield f"session insights {sf}", session_insights(r, where=sf)
            yield f"user insights {uf}", user_insights(r, where=uf)
            yield f"endings {sf}", sorted(r.session_endings(sf), key=repr)
            yield f"per day {sf}", r.sessions_per_day(sf)
            yield f"top users {uf}", r.top_users(uf, 15)
    for session_id in ids["sessions"]:
        yield f"session {session_id}", (r.get_session(session_id),
                                        r.session_tasks(session_id, 100),
                                        r.session_tasks(session_id, 2, 1))
        yield (f"tasks of session {session_id}",
               r.list_tasks(TaskFilter(session_id=session_id), Page("start_time")))
        yield f"traces of session {session_id}", r.find_trace_ids(
            TraceQuery(tags={"session.id": session_id}, limit=50))
    for user_id in ids["users"]:
        yield f"user {user_id}", (r.get_user(user_id), r.user_sessions(user_id, 10),
                                  r.user_tasks(user_id, 10))
        yield f"traces of user {user_id}", r.find_trace_ids(
            TraceQuery(tags={"user.id": user_id}, limit=100))
    for task_id in ids["tasks"]:
        yield f"task {task_id}", r.get_task(task_id)
    yield "services", r.services()
    for service in ("app", "llm", "missing"):
        yield f"operations {service}", r.operations(service)
    yield "dependencies", r.dependencies(BASE_NS, BASE_NS + 12 * DAY)
    yield "dependencies window", r.dependencies(BASE_NS + DAY, BASE_NS + 3 * DAY)
    searches = [
        TraceQuery(service="app"),
        TraceQuery(service="llm", operation="llm.call", limit=50),
        TraceQuery(service="llm", tags={"llm.model": "gpt-b"}, limit=30, max_candidates=500),
        TraceQuery(service="llm", tags={"llm.model": "gpt-a"}, max_candidates=5),
        TraceQuery(service="app", duration_min_ns=20 * SEC, limit=40),
        TraceQuery(service="app", start_min_ns=BASE_NS + DAY, start_max_ns=BASE_NS + 2 * DAY,
                   limit=100),
        TraceQuery(service="llm", tags={"span.kind": "client", "session.id": ids["sessions"][0]}),
        TraceQuery(tags={"session.id": ids["sessions"][1], "user.id": ids["users"][1]}),
    ]
    found: set[bytes] = set()
    for query in searches:
        trace_ids = r.find_trace_ids(query)
        found.update(trace_ids)
        yield f"search {query}", trace_ids
    some = [*sorted(found)[:60], b"\x00" * 16]
    yield "traces", [_trace(t) for t in r.get_traces(some)]
    yield "traces budget", [_trace(t) for t in r.get_traces(some, max_total_spans=7)]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[Store, Store, list[ExportTraceServiceRequest],
                               dict[str, list[str]]]]:
    """The workload written to SQLite (one request per write) and to ClickHouse (four
    per write, as the Ingestor groups them); the write results must agree."""
    requests, ids = workload(13)
    path: Path = tmp_path_factory.mktemp("differential") / "store.db"
    sqlite = open_store(str(path), synchronous="NORMAL")
    clickhouse = open_clickhouse_store("differential")
    try:
        extractions = [extract(r) for r in requests]
        want = [sqlite.write([x])[0] for x in extractions]
        got = []
        for i in range(0, len(extractions), 4):
            got += clickhouse.write(extractions[i : i + 4])
        assert got == want
        yield sqlite, clickhouse, requests, ids
    finally:
        sqlite.close()
        clickhouse.close()


def test_views_match_the_oracle(stores: tuple[Store, Store, list[ExportTraceServiceRequest],
                                              dict[str, list[str]]]) -> None:
    """Both stores hold exactly the oracle's tasks, sessions and users."""
    sqlite, clickhouse, requests, _ = stores
    state = check_store(clickhouse, requests)
    assert read_state(sqlite) == state
    assert len(state.tasks) == TASKS and len(state.users) > 100
    assert sum(1 for t in state.tasks.values() if t.feedback is not None) > 500
    assert sqlite.counters() == clickhouse.counters()


def test_every_answer_is_the_same(stores: tuple[Store, Store, list[ExportTraceServiceRequest],
                                                dict[str, list[str]]]) -> None:
    """Every view, insight and trace answer of the store API is equal on both (floats
to 12 significant digits)."""
    sqlite, clickhouse, _, ids = stores
    with sqlite.read() as a, clickhouse.read() as b:
        want = list(answers(a, ids))
        got = list(answers(b, ids))
    assert [name for name, _ in got] == [name for name, _ in want]
    differences = [name for (name, x), (_, y) in zip(want, got, strict=True)
                   if _rounded(x) != _rounded(y)]
    assert not differences, f"{len(differences)} answers differ: {differences[:10]}"
    assert any(x for name, x in want if name.startswith("search")), "searches found nothing"
    assert any(x for name, x in want if name == "dependencies")


ANALYSED_AT = BASE_NS + 40 * DAY
"""The analyzer's "now" on both stores: every session idle for long (ended)."""


ANALYSED_TASKS = 400
"""The analyzer's workload is smaller (the analyzer reads session by session: on
ClickHouse 18.16 about 0.1 s a session)."""


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Store, Store, dict[str, list[str]], list[Analyzer]]]:
    """A smaller workload written to both stores as above, then the analyzer run over
    each to the end of its work (passes of 150 tasks: on ClickHouse, ingest batches are
    then taken in parts), at the same fixed "now", and the users classified."""
    requests, ids = workload(29, ANALYSED_TASKS, 30)
    sqlite = open_store(str(tmp_path_factory.mktemp("analysed") / "store.db"),
                        synchronous="NORMAL")
    clickhouse = open_clickhouse_store("analysed")
    try:
        extractions = [extract(r) for r in requests]
        for x in extractions:
            sqlite.write([x])
        for i in range(0, len(extractions), 4):
            clickhouse.write(extractions[i : i + 4])
        yield sqlite, clickhouse, ids, _analyse(sqlite, clickhouse)
    finally:
        sqlite.close()
        clickhouse.close()


def _analyse(*stores: Store) -> list[Analyzer]:
    analyzers = []
    for store in stores:
        analyzer = Analyzer(store, InsightsConfig(), batch=150, classify_every_s=3600,
                            clock=lambda: ANALYSED_AT)
        while analyzer.run_once():
            pass
        analyzer._classify_if_due(ANALYSED_AT, force=True)
        assert analyzer.stats.errors == 0 and analyzer.stats.passes > 1
        analyzers.append(analyzer)
    return analyzers


def analysis_answers(r: StoreReader) -> Iterator[tuple[str, Any]]:
    """Every answer of the store API on the analyzer's results, each with its name."""
    task_ids = [f"t{i:04d}" for i in range(ANALYSED_TASKS + 20)]
    sessions = _all(lambda p: r.list_sessions(SessionFilter(), p), "session_id")
    users = _all(lambda p: r.list_users(UserFilter(), p), "user_id")
    session_ids = [s.session_id for s in sessions]
    user_ids = [u.rollup.user_id for u in users]
    yield "pending", r.pending_analysis(100)[:2]
    yield "tasks", r.task_analyses(task_ids)
    yield "sessions", r.session_analyses([*session_ids, "missing"])
    yield "users", {k: v._replace(analyzed_ns=0)
                    for k, v in r.user_analyses([*user_ids, "missing"]).items()}
    yield "session events", [r.session_events(s) for s in session_ids[:20]]
    yield "idle", r.sessions_idle_since(ANALYSED_AT, 10_000)
    yield "judge", r.judge_pending(100)
    yield "facts", sorted(f._replace(event_counts=dict(f.event_counts))
                          for f in r.user_facts(BASE_NS + 5 * DAY))
    yield "latest activity", r.latest_activity_ns()
    yield "user days", sorted(r.user_days())
    yield "event days", r.event_days()
    yield "success by position", r.success_by_position(10)
    yield "class counts", user_class_counts(r)
    for period in (None, "day", "week"):
        yield f"retention {period}", user_retention(r, period=period)
    some = sorted(t.task.trace_id for t in r.list_tasks(TaskFilter(), Page(
        "start_time", limit=200)).items)
    yield "mentioning", r.traces_mentioning(some, ["llm.model", "gen_ai.usage.input_tokens"])
    windows = [(None, None), (BASE_NS + 2 * DAY, BASE_NS + 6 * DAY)]
    for lo, hi in windows:
        for user in (None, user_ids[3]):
            sf = SessionFilter(from_ns=lo, to_ns=hi, user_id=user)
            yield f"active durations {sf}", r.active_durations(sf)
    yield "outcomes", session_outcomes(r)
    reasons = sorted({s.end_reason for s in r.session_analyses(session_ids).values()
                      if s.end_reason})
    names = sorted({name for name, _, _ in r.event_days()})
    assert reasons and names, "the workload makes end reasons and events"
    filters = [SessionFilter(state="ended"), SessionFilter(state="active"),
               *(SessionFilter(end_reason=x) for x in reasons),
               *(SessionFilter(event=x) for x in names),
               *(SessionFilter(evaluation=x) for x in ("success", "failure", "unknown")),
               SessionFilter(state="ended", user_id=user_ids[0], event=names[0])]
    for n, sf in enumerate(filters):
        yield (f"sessions {sf}", _walk(partial(r.list_sessions, sf), "start_time", True, 1))
        if n % 3 == 0:  # (each is about 10 queries)
            yield f"session insights {sf}", session_insights(r, where=sf)
            yield f"outcomes {sf}", session_outcomes(r, where=sf)
    for tf in [*(TaskFilter(event=x) for x in names),
               *(TaskFilter(evaluation=x) for x in ("success", "failure", "unknown")),
               TaskFilter(event=names[0], evaluation="failure"),
               TaskFilter(evaluation="success", user_id=user_ids[1])]:
        yield f"tasks {tf}", _walk(partial(r.list_tasks, tf), "start_time", True, 1)
    for label in USER_CLASSES:
        uf = UserFilter(user_class=label)
        yield f"users {uf}", _walk(partial(r.list_users, uf), "user_id", False, 1)
    yield "user insights power", user_insights(r, where=UserFilter(user_class="power"))
    for sort in USER_ANALYSIS_SORTS:
        for desc in (True, False):
            yield f"users by {sort} {desc}", _walk(partial(r.list_users, UserFilter()), sort,
                                                   desc, limit=15)


def _all(fetch: Callable[[Page], Listing[Any]], sort: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        listing = fetch(Page(sort, descending=False, limit=500, cursor=cursor))
        items += listing.items
        cursor = listing.next_cursor
        if cursor is None:
            return items


def test_every_analysis_answer_is_the_same(
        analysed: tuple[Store, Store, dict[str, list[str]], list[Analyzer]]) -> None:
    """The analyzer over both stores concludes the same, and every answer on its results
    (by id, the work queue, figures, filters and sorts) is equal (floats to 12 digits)."""
    sqlite, clickhouse, _, analyzers = analysed
    assert analyzers[0].stats.tasks_analyzed > 0 and analyzers[1].stats.tasks_analyzed > 0
    with sqlite.read() as a, clickhouse.read() as b:
        want = list(analysis_answers(a))
        got = list(analysis_answers(b))
    assert [name for name, _ in got] == [name for name, _ in want]
    differences = [name for (name, x), (_, y) in zip(want, got, strict=True)
                   if _rounded(x) != _rounded(y)]
    assert not differences, f"{len(differences)} answers differ: {differences[:10]}"
    answers = dict(want)
    assert len(answers["tasks"]) == ANALYSED_TASKS and answers["pending"] == ([], [])
    assert answers["class counts"] and answers["event days"]
