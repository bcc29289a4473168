"""The analyzer's usage over a real SQLite store: tasks whose traces hold OpenTelemetry
GenAI, OpenInference and Langfuse LLM spans (written as OTLP, extracted as the aggregator
does) get their tokens and cost; their sessions and users the sums; the API answers them
in each task's, session's and user's ``usage``; traces larger than a read's bound are
read in several calls with the same result."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.insights import analyzer as analyzer_module
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.model.analysis import Usage
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import Store
from tests.support.oracle import write
from tests.support.otlp import make_request, make_span, task_span

S = 1_000_000_000
T0 = 1_780_000_000 * S
MINUTE = 60 * S


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(str(tmp_path / "usage.db"))
    yield s
    s.close()


def turn(task_id: str, session: str, user: str, minute: int,
         calls: list[dict[str, object]], wrapper: dict[str, object] | None = None) -> list[Span]:
    """A task span and, under it, one LLM call span per ``calls`` entry (attributes),
    under a wrapper span with ``wrapper``'s attributes when given."""
    start = T0 + minute * MINUTE
    task = task_span(task_id, session_id=session, user_id=user, input=f"question {task_id}",
                     output="answer", start_ns=start, end_ns=start + 5 * S, key=task_id)
    parent = task
    spans = [task]
    if wrapper is not None:
        parent = make_span(wrapper, trace_id=task.trace_id, span_id=b"w" + task.span_id[1:],
                           parent_span_id=task.span_id, name="agent", start_ns=start + 1,
                           end_ns=start + 4 * S)
        spans.append(parent)
    for n, attributes in enumerate(calls):
        spans.append(make_span(attributes, trace_id=task.trace_id,
                               span_id=bytes([n + 1]) + task.span_id[1:],
                               parent_span_id=parent.span_id, name=f"call {n}",
                               start_ns=start + (n + 2) * S // 10, end_ns=start + 3 * S))
    return spans


def genai(tokens_in: int, tokens_out: int, cost: float | None = None) -> dict[str, object]:
    out: dict[str, object] = {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m",
                              "gen_ai.usage.input_tokens": tokens_in,
                              "gen_ai.usage.output_tokens": tokens_out}
    if cost is not None:
        out["gen_ai.usage.cost"] = cost
    return out


def openinference(prompt: int, completion: int, cost: float) -> dict[str, object]:
    return {"openinference.span.kind": "LLM", "llm.token_count.prompt": prompt,
            "llm.token_count.completion": completion, "llm.cost.total": cost}


def workload() -> list[Span]:
    """u1: s1 (a1: a GenAI call; a2: an OpenInference agent repeating its two calls'
    tokens) and s2 (b1: a Langfuse generation); u2: s3 (c1: no LLM call at all)."""
    return [
        *turn("a1", "s1", "u1", 0, [genai(100, 20, 0.001)]),
        *turn("a2", "s1", "u1", 1, [openinference(200, 30, 0.002), openinference(50, 5, 0.0005)],
              wrapper={"openinference.span.kind": "AGENT", "llm.token_count.prompt": 250,
                       "llm.token_count.completion": 35}),
        *turn("b1", "s2", "u1", 10, [{
            "langfuse.observation.type": "generation",
            "langfuse.observation.usage_details": '{"input": 7, "output": 3}'}]),
        *turn("c1", "s3", "u2", 0, []),
    ]


EXPECTED_TASKS = {"a1": Usage(100, 20, 0.001), "a2": Usage(250, 35, 0.0025),
                  "b1": Usage(7, 3, None), "c1": None}
EXPECTED_SESSIONS = {"s1": Usage(350, 55, 0.0035), "s2": Usage(7, 3, None), "s3": None}
EXPECTED_USERS = {"u1": Usage(357, 58, 0.0035), "u2": None}


def close(got: Usage | None, expected: Usage | None) -> bool:
    """Equal, the cost to 1e-12."""
    if got is None or expected is None:
        return got is expected
    if (got.cost is None) != (expected.cost is None):
        return False
    return got[:2] == expected[:2] and (got.cost is None or expected.cost is None
                                        or abs(got.cost - expected.cost) < 1e-12)


def usages(store: Store) -> tuple[dict[str, Usage | None], dict[str, Usage | None],
                                  dict[str, Usage | None]]:
    with store.read() as r:
        tasks = {k: a.usage for k, a in r.task_analyses(EXPECTED_TASKS).items()}
        sessions = {k: a.usage for k, a in r.session_analyses(EXPECTED_SESSIONS).items()}
        users = {k: a.usage for k, a in r.user_analyses(EXPECTED_USERS).items()}
    return tasks, sessions, users


def check(store: Store) -> None:
    tasks, sessions, users = usages(store)
    for got, expected in ((tasks, EXPECTED_TASKS), (sessions, EXPECTED_SESSIONS),
                          (users, EXPECTED_USERS)):
        assert set(got) == set(expected)
        wrong = {k: (got[k], v) for k, v in expected.items() if not close(got[k], v)}
        assert not wrong, wrong


def drain(analyzer: Analyzer) -> None:
    while analyzer.run_once():
        pass


def test_tasks_sessions_and_users_get_their_usage(store: Store) -> None:
    write(store, make_request(workload()))
    analyzer = Analyzer(store, InsightsConfig(), clock=lambda: T0 + 30 * MINUTE,
                        classify_every_s=0)
    drain(analyzer)
    check(store)
    # a re-analysis reads the same traces again and changes nothing
    assert analyzer.reanalyze() == len(EXPECTED_TASKS)
    check(store)


def test_a_later_task_updates_the_sums(store: Store) -> None:
    """A task added to s1 later: s1 and u1 add its tokens; its predecessor keeps its own."""
    write(store, make_request(workload()))
    analyzer = Analyzer(store, InsightsConfig(), clock=lambda: T0 + 3 * MINUTE,
                        classify_every_s=0)
    drain(analyzer)
    write(store, make_request(turn("a3", "s1", "u1", 2, [genai(1, 1)])))
    drain(analyzer)
    analyzer.reanalyze(T0 + 2 * MINUTE, T0 + 3 * MINUTE)  # classes (and user sums) now
    tasks, sessions, users = usages(store)
    assert close(tasks["a2"], EXPECTED_TASKS["a2"])
    with store.read() as r:
        assert r.task_analyses(["a3"])["a3"].usage == Usage(1, 1, None, "m")
    assert close(sessions["s1"], Usage(351, 56, 0.0035))
    assert close(users["u1"], Usage(358, 59, 0.0035))


def test_traces_over_the_bound_are_read_in_several_calls(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a bound of one span per read, every trace is still read (a read each, past
    the first trace's) and the results are the same."""
    monkeypatch.setattr(analyzer_module, "USAGE_SPANS_PER_READ", 1)
    write(store, make_request(workload()))
    analyzer = Analyzer(store, InsightsConfig(), clock=lambda: T0 + 30 * MINUTE,
                        classify_every_s=0)
    drain(analyzer)
    check(store)


def test_the_api_answers_usage(tmp_path: Path) -> None:
    """A real server: the usage objects of /api/tasks, /api/sessions, /api/users, equal to
    the steps' totals of each task."""
    settings = ServerSettings(store=str(tmp_path / "api.db"), http_port=0, grpc_port=0,
                              analyzer_interval_s=0)
    with AggregatorServer(settings) as srv, httpx.Client(
            base_url=srv.http_url, timeout=10, trust_env=False) as client:
        body = make_request(workload()).SerializeToString()
        r = client.post("/v1/traces", content=body,
                        headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 200, r.text
        assert srv.store is not None
        analyzer = Analyzer(srv.store, InsightsConfig(), clock=lambda: T0 + 30 * MINUTE,
                            classify_every_s=0)
        drain(analyzer)
        analyzer.stop()
        tasks = {t["task_id"]: t for t in client.get("/api/tasks").json()["items"]}
        assert tasks["a2"]["usage"] == {"input_tokens": 250, "output_tokens": 35,
                                        "cost": 0.0025, "model": None}
        assert tasks["a1"]["usage"]["model"] == "m"
        assert tasks["c1"]["usage"] is None
        for task_id, task in tasks.items():
            steps = client.get(f"/api/tasks/{task_id}", params={"steps": "true"}).json()
            totals = steps["steps"]
            if task["usage"] is None:
                assert totals["tokens"] == {"input": None, "output": None}, task_id
                continue
            assert (task["usage"]["input_tokens"], task["usage"]["output_tokens"],
                    task["usage"]["cost"]) == (totals["tokens"]["input"],
                                               totals["tokens"]["output"], totals["cost"])
        sessions = {s["session_id"]: s for s in client.get("/api/sessions").json()["items"]}
        assert sessions["s1"]["usage"] == {"input_tokens": 350, "output_tokens": 55,
                                           "cost": 0.0035, "model": "m"}
        assert sessions["s2"]["usage"] == {"input_tokens": 7, "output_tokens": 3, "cost": None,
                                           "model": None}
        assert sessions["s3"]["usage"] is None
        users = {u["user_id"]: u for u in client.get("/api/users").json()["items"]}
        assert users["u1"]["usage"] == {"input_tokens": 357, "output_tokens": 58,
                                        "cost": 0.0035, "model": None}
        assert users["u2"]["usage"] is None
        assert client.get("/api/users/u1").json()["usage"] == users["u1"]["usage"]
