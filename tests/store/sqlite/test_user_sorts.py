"""The user list sorted by the analyzer's figures (``success_rate``, ``tokens``, ``cost``),
both ways, paged by cursor: every user once, in the order of the figures, users without
one as -1; and over HTTP, the same order as the JSON figures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phospho_otel.model.analysis import Evaluation, TaskAnalysis, Usage, UserAnalysis
from phospho_otel.store import open_store
from phospho_otel.store.api import AnalysisUpdate, Page, Store, UserFilter
from tests.support.oracle import write
from tests.support.otlp import make_request, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S
FIGURES = {  # user -> (success, failure, usage)
    "u0": (3, 1, Usage(100, 20, 0.5)),
    "u1": (0, 2, Usage(10, None, None)),
    "u2": (1, 1, None),
    "u3": (0, 0, Usage(None, None, 2.0)),
    "u4": (5, 0, Usage(400, 100, 0.25)),
    "u5": (2, 2, Usage(100, 20, 0.5)),  # ties u0 on tokens and cost: by id
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """Each user's tasks evaluated ``ok`` times success and ``bad`` times failure (the
    user's counts follow their tasks'), and the user's usage as classified."""
    s = open_store(str(tmp_path / "u.db"))
    spans, analyses = [], []
    for i, (user, (ok, bad, _)) in enumerate(FIGURES.items()):
        for k, label in enumerate(["success"] * ok + ["failure"] * bad + ["unknown"]):
            task_id, start = f"t{user}-{k}", T0 + (10 * i + k) * S
            spans.append(task_span(task_id, user_id=user, start_ns=start))
            analyses.append(TaskAnalysis(task_id, None, user, start, None,
                                         Evaluation(label, 0.5, "heuristic:test", "test"),
                                         (), None, None, T0))
    write(s, make_request(spans))
    s.write_analysis(AnalysisUpdate(tasks=analyses))  # type: ignore[attr-defined]
    s.write_analysis(AnalysisUpdate(users=[  # type: ignore[attr-defined]
        UserAnalysis(u, (), {}, ok, bad, T0, usage)
        for u, (ok, bad, usage) in FIGURES.items()]))
    yield s
    s.close()


def _key(sort: str, user: str) -> float:
    ok, bad, usage = FIGURES[user]
    if sort == "success_rate":
        return ok / (ok + bad) if ok + bad else -1
    if sort == "tokens":
        total = (usage.input_tokens or 0) + (usage.output_tokens or 0) if usage else 0
        return total or -1
    return usage.cost if usage and usage.cost is not None else -1


@pytest.mark.parametrize("descending", [True, False])
@pytest.mark.parametrize("sort", ["success_rate", "tokens", "cost"])
def test_sorted_and_paged(store: Store, sort: str, descending: bool) -> None:
    got: list[str] = []
    page = Page(sort, descending, limit=2)
    with store.read() as r:
        while True:
            found = r.list_users(UserFilter(), page)
            assert found.total == len(FIGURES)
            got += [u.rollup.user_id for u in found.items]
            if found.next_cursor is None:
                break
            page = Page(sort, descending, limit=2, cursor=found.next_cursor)
    expected = sorted(FIGURES, key=lambda u: (_key(sort, u), u), reverse=descending)
    assert got == expected
