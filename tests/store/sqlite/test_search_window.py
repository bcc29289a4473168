"""Filters no index answers (metadata, text, flag) search a window of rows per page on
SQLite: a rare match yields pages of what the window held (maybe none) with
``searched_to`` and a cursor that goes on, and following the cursors finds every match,
once, in order; a window that covers the whole list counts the total exactly.

The windows are made small here (``TASK_WINDOW`` and the others are the backend's
constants, patched for the test) so that a few dozen tasks span several windows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from phospho_otel.store import open_store
from phospho_otel.store.api import Page, SessionFilter, Store, TaskFilter, UserFilter
from phospho_otel.store.sqlite import views
from tests.support.oracle import write
from tests.support.otlp import make_request, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setattr(views, "TASK_WINDOW", 7)
    monkeypatch.setattr(views, "SESSION_WINDOW", 3)
    monkeypatch.setattr(views, "USER_WINDOW", 2)
    s = open_store(str(tmp_path / "w.db"))
    spans = [task_span(f"t{i:02d}", session_id=f"s{i // 4}", user_id=f"u{i // 8}",
                       input="refund please" if i % 9 == 0 else f"question {i}",
                       metadata={"version": "rare" if i % 9 == 0 else "common"},
                       start_ns=T0 + i * S, end_ns=T0 + i * S + S // 2)
             for i in range(40)]
    write(s, make_request(spans))
    yield s
    s.close()


def walk(list_page: Any, where: Any, sort: str, descending: bool = True,
         limit: int = 2) -> tuple[list[Any], list[Any], list[Any]]:
    """Every id of every page, following the cursors; each page's searched_to and total."""
    ids: list[Any] = []
    searched: list[Any] = []
    totals: list[Any] = []
    page = Page(sort, descending, limit)
    for _ in range(100):
        found = list_page(where, page)
        ids += [getattr(i, "task", i) for i in found.items]
        searched.append(found.searched_to)
        totals.append(found.total)
        if found.next_cursor is None:
            return ids, searched, totals
        page = Page(sort, descending, limit, cursor=found.next_cursor)
    raise AssertionError("the cursors never ended")


def test_rare_text_in_windows(store: Store) -> None:
    with store.read() as r:
        tasks, searched, totals = walk(r.list_tasks, TaskFilter(text="REFUND"), "start_time")
    assert [t.task_id for t in tasks] == ["t36", "t27", "t18", "t09", "t00"]
    assert any(s is not None for s in searched)  # some pages stopped at a window
    assert all(t is None for t, s in zip(totals, searched, strict=True) if s is not None)
    with store.read() as r:
        up, _, _ = walk(r.list_tasks, TaskFilter(metadata=(("version", "rare"),)),
                        "start_time", descending=False)
    assert [t.task_id for t in up] == ["t00", "t09", "t18", "t27", "t36"]


def test_a_small_candidate_set_is_counted(store: Store) -> None:
    """Within one user's tasks (8, more than a window of 7, then 7 at most)..."""
    with store.read() as r:
        one_window = r.list_tasks(TaskFilter(user_id="u4", text="refund"),
                                  Page("start_time", limit=10))
        ranged = r.list_tasks(TaskFilter(from_ns=T0 + 30 * S, text="refund"),
                              Page("start_time", limit=10))
    assert [t.task.task_id for t in one_window.items] == ["t36"]
    assert one_window.total is None and one_window.searched_to is not None  # 8 > 7
    assert [t.task.task_id for t in ranged.items] == ["t36"]  # 10 candidates: two windows
    with store.read() as r:
        filled = r.list_tasks(TaskFilter(metadata=(("version", "common"),)),
                              Page("start_time", limit=3))
        few = r.list_tasks(TaskFilter(from_ns=T0 + 34 * S, text="refund"),
                           Page("start_time", limit=10))
    # a page filled inside a window: not stopped early, but not counted either
    assert ([t.task.task_id for t in filled.items], filled.total, filled.searched_to) == (
        ["t39", "t38", "t37"], None, None)
    assert ([t.task.task_id for t in few.items], few.total, few.searched_to, few.next_cursor) \
        == (["t36"], 1, None, None)


def test_sessions_and_users_by_metadata(store: Store) -> None:
    with store.read() as r:
        sessions, s_searched, _ = walk(
            r.list_sessions, SessionFilter(metadata=(("version", "rare"),)), "start_time")
        users, _, _ = walk(r.list_users, UserFilter(metadata=(("version", "rare"),)),
                           "user_id", descending=False, limit=1)
    # rare tasks t00 t09 t18 t27 t36: sessions s0 s2 s4 s6 s9, users u0 u1 u2 u3 u4
    assert [s.session_id for s in sessions] == ["s9", "s6", "s4", "s2", "s0"]
    assert any(s is not None for s in s_searched)
    assert [u.rollup.user_id for u in users] == ["u0", "u1", "u2", "u3", "u4"]
