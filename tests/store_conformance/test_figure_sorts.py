"""Sessions and tasks sorted by the analyzer's ``tokens`` (input + output) and ``cost``
(``store.api.SESSION_ANALYSIS_SORTS``, ``TASK_ANALYSIS_SORTS``), both ways, paged by
cursor: on SQLite every row once, in the order of the figures, rows without one as -1,
ties by id, also through the event and evaluation indexes; a backend that cannot sort by
them (ClickHouse) refuses with ``BadRequest`` naming the sort, before any query; and over
HTTP, the same order as the JSON figures, and 400 with the message where refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from phospho_otel.errors import BadRequest
from phospho_otel.model.analysis import (
    DetectedEvent,
    Evaluation,
    SessionAnalysis,
    TaskAnalysis,
    Usage,
)
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store.api import (
    SESSION_ANALYSIS_SORTS,
    TASK_ANALYSIS_SORTS,
    AnalysisUpdate,
    Listing,
    Page,
    SessionFilter,
    Store,
    TaskFilter,
)
from phospho_otel.store.sqlite import SQLiteStore
from tests.support.oracle import write
from tests.support.otlp import make_request, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S
TASKS = {  # task -> (session, usage)
    "t0": ("s0", Usage(100, 20, 0.5, "gpt-4o")),
    "t1": ("s0", Usage(10, None, None)),
    "t2": ("s1", None),
    "t3": ("s1", Usage(None, None, 2.0)),
    "t4": ("s2", Usage(400, 100, 0.25, "gpt-4o-mini")),
    "t5": ("s3", Usage(100, 20, 0.5)),  # ties t0 on tokens and cost: by id
    "t6": ("s3", Usage(None, None, None, "gpt-4o")),  # a model and no figure: -1
}
SESSIONS = {  # session -> usage of its analysis (s4 has tasks, no analysis)
    "s0": Usage(110, 20, 0.5, "gpt-4o"), "s1": Usage(None, None, 2.0),
    "s2": Usage(400, 100, 0.25), "s3": Usage(100, 20, 0.5),
}
EVENT = "thanks"
"""An event on the even tasks (the list by event walks ``task_events``)."""


def _fill(store: Store) -> None:
    spans = [task_span(t, session_id=s, user_id="u", start_ns=T0 + i * S)
             for i, (t, (s, _)) in enumerate(TASKS.items())]
    spans.append(task_span("t7", session_id="s4", user_id="u", start_ns=T0 + 20 * S))
    write(store, make_request(spans))
    if not isinstance(store, SQLiteStore):
        return  # refused before any analysis is read
    tasks = [TaskAnalysis(t, s, "u", T0 + i * S, None,
                          Evaluation("success" if i % 3 else "failure", 0.5, "test", "test"),
                          (DetectedEvent(EVENT, "keywords", 1.0, "input"),) if i % 2 == 0
                          else (), None, None, T0, False, usage)
             for i, (t, (s, usage)) in enumerate(TASKS.items())]
    sessions = [SessionAnalysis(s, "u", "active", None, None, (), 0, None, {}, T0, usage)
                for s, usage in SESSIONS.items()]
    store.write_analysis(AnalysisUpdate(tasks=tasks, sessions=sessions))


def _figure(sort: str, usage: Usage | None) -> float:
    if usage is None:
        return -1
    if sort == "tokens":
        return (usage.input_tokens or 0) + (usage.output_tokens or 0) or -1
    return usage.cost if usage.cost is not None else -1


def _walk(listing: Callable[[Page], Listing[Any]], sort: str, descending: bool,
          key: Callable[[Any], str]) -> list[str]:
    got: list[str] = []
    page = Page(sort, descending, limit=2)
    while True:
        found = listing(page)
        got += [key(item) for item in found.items]
        if found.next_cursor is None:
            return got
        page = Page(sort, descending, limit=2, cursor=found.next_cursor)


def _expected(figures: Mapping[str, Usage | None], ids: list[str], sort: str,
              descending: bool) -> list[str]:
    return sorted(ids, key=lambda i: (_figure(sort, figures.get(i)), i), reverse=descending)


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", SESSION_ANALYSIS_SORTS)
def test_sessions_by_figure(store: Store, sort: str, descending: bool) -> None:
    _fill(store)
    with store.read() as r:
        def listing(page: Page) -> Listing[Any]:
            return r.list_sessions(SessionFilter(), page)

        if not isinstance(store, SQLiteStore):
            with pytest.raises(BadRequest, match=f"sessions sorted by {sort}"):
                listing(Page(sort, descending))
            return
        got = _walk(listing, sort, descending, lambda s: s.session_id)
        assert listing(Page(sort, descending)).total == 5
    assert got == _expected(SESSIONS, ["s0", "s1", "s2", "s3", "s4"], sort, descending)


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", TASK_ANALYSIS_SORTS)
def test_tasks_by_figure(store: Store, sort: str, descending: bool) -> None:
    _fill(store)
    usages = {t: u for t, (_, u) in TASKS.items()}
    every = [*TASKS, "t7"]
    with store.read() as r:
        if not isinstance(store, SQLiteStore):
            with pytest.raises(BadRequest, match=f"tasks sorted by {sort}"):
                r.list_tasks(TaskFilter(), Page(sort, descending))
            return
        for where, ids in [
            (TaskFilter(), every),
            (TaskFilter(session_id="s0"), ["t0", "t1"]),
            (TaskFilter(event=EVENT), [t for i, t in enumerate(TASKS) if i % 2 == 0]),
            (TaskFilter(evaluation="failure"), [t for i, t in enumerate(TASKS) if i % 3 == 0]),
        ]:
            got = _walk(lambda p, w=where: r.list_tasks(w, p), sort, descending,  # type: ignore[misc]
                        lambda t: t.task.task_id)
            assert got == _expected(usages, ids, sort, descending), where


def test_over_http(tmp_path: Path) -> None:
    """``/api/sessions`` and ``/api/tasks`` by ``tokens`` and ``cost`` on a real server:
    the order of the JSON figures; an unknown sort is a 400 naming the choices."""
    store = SQLiteStore(tmp_path / "h.db")
    _fill(store)
    store.close()
    settings = ServerSettings(store=str(tmp_path / "h.db"), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)  # the analyses as written above
    with AggregatorServer(settings) as srv, \
            httpx.Client(base_url=srv.http_url, timeout=10, trust_env=False) as client:
        tasks = client.get("/api/tasks", params={"sort": "cost", "limit": 100}).json()
        costs = [(t["usage"] or {}).get("cost") for t in tasks["items"]]
        assert [c if c is not None else -1 for c in costs] == sorted(
            (c if c is not None else -1 for c in costs), reverse=True)
        assert tasks["items"][0]["usage"] == {"input_tokens": None, "output_tokens": None,
                                              "cost": 2.0, "model": None}
        sessions = client.get("/api/sessions", params={"sort": "tokens", "order": "asc"})
        assert [s["session_id"] for s in sessions.json()["items"]] == [
            "s1", "s4", "s3", "s0", "s2"]
        assert sessions.json()["items"][3]["usage"]["model"] == "gpt-4o"
        bad = client.get("/api/tasks", params={"sort": "model"})
        assert bad.status_code == 400 and "tokens" in bad.text and "cost" in bad.text
