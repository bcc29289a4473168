"""A task's steps (``?steps=true`` on ``/api/tasks/{id}`` and ``/api/sessions/{id}``):
the spans under the task span, sent over OTLP/HTTP to a real aggregator, with their kind,
model, tokens and cost read from each convention's attributes, and summed without
counting a wrapper's usage twice."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from phospho_otel.server import AggregatorServer, ServerSettings
from tests.support.otlp import make_request, make_span, task_span

MS = 1_000_000
T0 = 1_780_000_000 * 1_000_000_000


@pytest.fixture
def client(tmp_path: Path) -> Iterator[httpx.Client]:
    settings = ServerSettings(store=str(tmp_path / "steps.db"), http_port=0, grpc_port=0,
                              analyzer_interval_s=0, jaeger_ui_url="http://jaeger.local:16686")
    with AggregatorServer(settings) as srv, httpx.Client(
            base_url=srv.http_url, timeout=10, trust_env=False) as c:
        yield c


def _send(client: httpx.Client) -> None:
    task = task_span("t1", session_id="s1", user_id="u1", start_ns=T0, end_ns=T0 + 900 * MS)
    tid, sid = task.trace_id, task.span_id
    agent = make_span({"openinference.span.kind": "AGENT", "llm.token_count.prompt": 999},
                      trace_id=tid, span_id=b"\x02" * 8, parent_span_id=sid, name="agent",
                      start_ns=T0 + 10 * MS, end_ns=T0 + 800 * MS)
    retrieval = make_span({"openinference.span.kind": "RETRIEVER"}, trace_id=tid,
                          span_id=b"\x03" * 8, parent_span_id=agent.span_id, name="search",
                          start_ns=T0 + 20 * MS, end_ns=T0 + 120 * MS)
    llm = make_span({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-x",
                     "gen_ai.response.model": "gpt-x-2026", "gen_ai.usage.input_tokens": 120,
                     "gen_ai.usage.output_tokens": 30, "llm.cost.total": 0.0025},
                    trace_id=tid, span_id=b"\x04" * 8, parent_span_id=agent.span_id,
                    name="chat gpt-x", start_ns=T0 + 130 * MS, end_ns=T0 + 700 * MS,
                    status_code=2)
    langfuse = make_span({"langfuse.observation.type": "generation",
                          "langfuse.observation.usage_details": '{"input": 5, "output": 7}',
                          "langfuse.observation.cost_details": '{"total": 0.001}'},
                         trace_id=tid, span_id=b"\x05" * 8, parent_span_id=agent.span_id,
                         name="generation", start_ns=T0 + 710 * MS, end_ns=T0 + 790 * MS)
    unrelated = make_span({}, trace_id=tid, span_id=b"\x06" * 8, name="other root",
                          start_ns=T0, end_ns=T0 + MS)
    body = make_request([task, agent, retrieval, llm, langfuse, unrelated]).SerializeToString()
    r = client.post("/v1/traces", content=body,
                    headers={"Content-Type": "application/x-protobuf"})
    assert r.status_code == 200, r.text


def test_a_task_answers_its_steps(client: httpx.Client) -> None:
    _send(client)
    plain = client.get("/api/tasks/t1").json()
    assert "steps" not in plain
    task = client.get("/api/tasks/t1", params={"steps": "true"}).json()
    steps = task["steps"]
    assert [(s["name"], s["kind"], s["depth"]) for s in steps["steps"]] == [
        ("task", "span", 0), ("agent", "agent", 1), ("search", "retrieval", 2),
        ("chat gpt-x", "llm", 2), ("generation", "llm", 2)]
    chat = steps["steps"][3]
    assert chat["model"] == "gpt-x-2026" and chat["status"] == "error"
    assert (chat["offset_ms"], chat["duration_ms"]) == (130.0, 570.0)
    assert (chat["input_tokens"], chat["output_tokens"], chat["cost"]) == (120, 30, 0.0025)
    # the agent's own 999 prompt tokens are not added to its children's
    assert steps["tokens"] == {"input": 125, "output": 37}
    assert steps["cost"] == pytest.approx(0.0035)
    assert steps["trace_url"] == f"http://jaeger.local:16686/trace/{task['trace_id']}"

    session = client.get("/api/sessions/s1", params={"steps": "true"}).json()
    assert session["tasks"][0]["steps"] == steps
    bad = client.get("/api/tasks/t1", params={"steps": "yes"})
    assert bad.status_code == 400 and "steps" in bad.json()["error"]["message"]
