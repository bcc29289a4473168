"""One task per turn whatever the order the turn's spans arrive in (``aggregator.extract``,
"One task per turn"; ``aggregator.annotations``' deferred candidates), through the real
aggregator (``Ingestor``) on each backend: an LLM span with ids and input/output under
plain spans that arrive in later requests becomes the task once its ancestry is stored;
under a task (ours, or a candidate) it stays a step, in every order, sent again or not."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator.extract import foreign_task_id
from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.store.api import Page, Store, TaskFilter
from tests.support.otlp import BASE_NS, ids_for, make_request, make_span, task_span


@pytest.fixture
def ingestor(store: Store) -> Iterator[Ingestor]:
    ingestor = Ingestor(store)
    yield ingestor
    ingestor.close()


def llm(trace: str, name: str, parent: bytes, session: str) -> Span:
    """An OpenInference LLM span: ids, the user's words and the reply."""
    trace_id, _ = ids_for(trace)
    _, span_id = ids_for(f"{trace}/{name}")
    return make_span({"openinference.span.kind": "LLM", "session.id": session,
                      "user.id": "u", "llm.input_messages.0.message.role": "user",
                      "llm.input_messages.0.message.content": f"question {trace}",
                      "llm.output_messages.0.message.role": "assistant",
                      "llm.output_messages.0.message.content": f"answer {trace}"},
                     trace_id=trace_id, span_id=span_id, parent_span_id=parent, name=name,
                     start_ns=BASE_NS + 10, end_ns=BASE_NS + 20)


def plain(trace: str, name: str, parent: bytes = b"") -> Span:
    """A span without ids (a web server's, a framework's)."""
    trace_id, _ = ids_for(trace)
    _, span_id = ids_for(f"{trace}/{name}")
    return make_span({"http.route": "/chat"}, trace_id=trace_id, span_id=span_id,
                     parent_span_id=parent, name=name, kind=Span.SPAN_KIND_SERVER,
                     start_ns=BASE_NS, end_ns=BASE_NS + 30)


def send(ingestor: Ingestor, *spans: Span) -> None:
    request = ExportTraceServiceRequest.FromString(make_request(list(spans)).SerializeToString())
    ingestor.ingest_blocking(request, 30)


def tasks_of(store: Store, session: str) -> list[str]:
    with store.read() as reader:
        listing = reader.list_tasks(TaskFilter(session_id=session), Page("start_time", limit=50))
        rollup = reader.get_session(session)
    ids = sorted(row.task.task_id for row in listing.items)
    assert (rollup.task_count if rollup is not None else 0) == len(ids)
    return ids


def three_level(trace: str, session: str) -> dict[str, Span]:
    """server (plain, root) > handler (plain) > llm (a candidate)."""
    server = plain(trace, "server")
    handler = plain(trace, "handler", parent=server.span_id)
    return {"server": server, "handler": handler,
            "llm": llm(trace, "llm", handler.span_id, session)}


@pytest.mark.parametrize("order", list(itertools.permutations(("server", "handler", "llm"))))
def test_candidate_under_plain_spans_is_the_task_in_every_order(
        store: Store, ingestor: Ingestor, order: tuple[str, ...]) -> None:
    """Each span in its own request, in every order: no task until the ancestry is all
    stored, then exactly the LLM span's; sending everything again changes nothing."""
    session = "s-" + "-".join(order)
    spans = three_level(session, session)
    for i, name in enumerate(order):
        send(ingestor, spans[name])
        if i < len(order) - 1 and "llm" in order[:i + 1]:
            assert tasks_of(store, session) == [], f"a task before {order[i + 1]} arrived"
    expected = [foreign_task_id(spans["llm"].trace_id, spans["llm"].span_id)]
    assert tasks_of(store, session) == expected
    for name in order:
        send(ingestor, spans[name])
    send(ingestor, *spans.values())
    assert tasks_of(store, session) == expected
    with store.read() as reader:
        row = reader.get_task(expected[0])
    assert row is not None and row.task.input == f"question {session}"
    assert row.task.output == f"answer {session}"


@pytest.mark.parametrize("child_first", [True, False])
def test_candidate_under_our_task_stays_a_step(store: Store, ingestor: Ingestor,
                                               child_first: bool) -> None:
    """An instrumented LLM call inside ``phospho.task`` (the README's pattern), the two in
    separate requests either way round: one task, ours."""
    session = f"ours-{child_first}"
    trace_id, span_id = ids_for(session)
    ours = task_span("turn-1", session_id=session, user_id="u", trace_id=trace_id,
                     span_id=span_id)
    child = llm(session, "llm", span_id, session)
    for span in ((child, ours) if child_first else (ours, child)):
        send(ingestor, span)
    send(ingestor, child)
    assert tasks_of(store, session) == ["turn-1"]


def test_candidate_under_a_candidate_stays_a_step(store: Store, ingestor: Ingestor) -> None:
    """An LLM span under a CHAIN span with ids and input (a candidate too), the chain in
    a later request below a plain root that comes last: one task, the chain's."""
    session = "chain"
    server = plain(session, "server")
    trace_id, _ = ids_for(session)
    _, chain_id = ids_for(f"{session}/chain")
    chain = make_span({"openinference.span.kind": "CHAIN", "session.id": session,
                       "user.id": "u", "input.value": "question chain"},
                      trace_id=trace_id, span_id=chain_id, parent_span_id=server.span_id,
                      name="chain")
    child = llm(session, "llm", chain_id, session)
    send(ingestor, child)
    send(ingestor, chain)
    assert tasks_of(store, session) == []
    send(ingestor, server)
    assert tasks_of(store, session) == [foreign_task_id(trace_id, chain_id)]
    with store.read() as reader:
        assert reader.get_task(foreign_task_id(trace_id, child.span_id)) is None
