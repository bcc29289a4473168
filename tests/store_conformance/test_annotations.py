"""Span annotations through the real aggregator (``Ingestor``: extraction, the store's
writes, ``aggregator.annotations``' resolution) on each backend: GenAI content before
or after its span, evaluations and Logfire annotations before or after their task, sent
again, split over requests; every order ends in the same views."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from phospho_otel.aggregator.extract import foreign_task_id
from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.model.records import (
    Extraction,
    SpanAnnotationRecord,
    TaskFeedback,
    TaskRecord,
)
from phospho_otel.store.api import Store
from tests.support.otlp import BASE_NS, any_value, ids_for, make_request, make_span, task_span

SYSTEM = "Be terse."


@pytest.fixture
def ingestor(store: Store) -> Iterator[Ingestor]:
    ingestor = Ingestor(store)
    yield ingestor
    ingestor.close()


def llm_span_request(key: str, *, parent: bytes = b"", session: str | None = "s") -> bytes:
    """A GenAI LLM span (ids, no content); serialized request."""
    attributes: dict[str, object] = {"gen_ai.operation.name": "chat"}
    if session is not None:
        attributes.update({"gen_ai.conversation.id": session, "enduser.id": "u"})
    span = make_span(attributes, key=key, name="chat fake", parent_span_id=parent)
    return make_request([span], scope="opentelemetry.instrumentation.openai_v2"
                        ).SerializeToString()


def log_request(*records: LogRecord) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.extend(records)
    return request


def value_of(value: object) -> AnyValue:
    """``any_value``, with dicts as key-value lists (log bodies)."""
    if isinstance(value, dict):
        out = AnyValue()
        out.kvlist_value.values.extend(KeyValue(key=k, value=value_of(v))
                                       for k, v in value.items())
        return out
    return any_value(value)


def record(key: str, event: str, attributes: dict[str, object] | None = None, *,
           body: object = None, time_ns: int = BASE_NS + 5) -> LogRecord:
    trace_id, span_id = ids_for(key)
    out = LogRecord(time_unix_nano=time_ns, trace_id=trace_id, span_id=span_id,
                    event_name=event,
                    attributes=[KeyValue(key=k, value=any_value(v))
                                for k, v in (attributes or {}).items()])
    if body is not None:
        out.body.CopyFrom(value_of(body))
    return out


def details(key: str, words: str, reply: str) -> LogRecord:
    """The details event, its messages structured (as the instrumentation emits them)."""
    messages = AnyValue()
    messages.array_value.values.add().kvlist_value.values.extend([
        KeyValue(key="role", value=AnyValue(string_value="user")),
        KeyValue(key="content", value=AnyValue(string_value=words))])
    rec = record(key, "gen_ai.client.inference.operation.details", {
        "gen_ai.output.messages": json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": reply}]}]),
        "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}])})
    rec.attributes.add(key="gen_ai.input.messages").value.CopyFrom(messages)
    return rec


def evaluation(key: str, label: str | None, score: float | None = None) -> LogRecord:
    attributes: dict[str, object] = {"gen_ai.evaluation.name": "relevance"}
    if label is not None:
        attributes["gen_ai.evaluation.score.label"] = label
    if score is not None:
        attributes["gen_ai.evaluation.score.value"] = score
    return record(key, "gen_ai.evaluation.result", attributes, time_ns=BASE_NS + 9)


def task(store: Store, key: str) -> tuple[TaskRecord, TaskFeedback | None] | None:
    with store.read() as reader:
        row = reader.get_task(foreign_task_id(*ids_for(key)))
    return None if row is None else (row.task, row.feedback)


def send_traces(ingestor: Ingestor, body: bytes) -> None:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )
    ingestor.ingest_blocking(ExportTraceServiceRequest.FromString(body), 30)


def send_logs(ingestor: Ingestor, request: ExportLogsServiceRequest) -> None:
    ingestor.submit_logs(request).result(30)


def test_every_order_converges(store: Store, ingestor: Ingestor) -> None:
    """Span, content and evaluation in each of the 6 orders, each then sent again: the
    same task (the turn's words, reply, system prompt) and flag every time."""
    seen = set()
    for n, order in enumerate(itertools.permutations(("span", "content", "eval"))):
        key = f"order-{n}"
        for step in (*order, *order):
            if step == "span":
                send_traces(ingestor, llm_span_request(key, session=f"s{n}"))
            elif step == "content":
                send_logs(ingestor, log_request(details(key, "hi", "hello")))
            else:
                send_logs(ingestor, log_request(evaluation(key, "Pass")))
        found = task(store, key)
        assert found is not None, order
        record_, feedback = found
        assert (record_.input, record_.output, record_.metadata) == (
            "hi", "hello", json.dumps({"system_prompt": SYSTEM}, separators=(",", ":")))
        assert feedback is not None and (feedback.flag, feedback.source) == (
            "success", "genai:relevance"), order
        seen.add((record_.input, record_.output, record_.raw_input, record_.raw_output,
                  record_.metadata, record_.convention, feedback.flag, feedback.notes))
        with store.read() as reader:
            rollup = reader.get_session(f"s{n}")
        assert rollup is not None and rollup.task_count == 1
        assert (rollup.last_input, rollup.last_output, rollup.success_count) == (
            "hi", "hello", 1)
    assert len(seen) == 1, seen


def test_content_without_ids_makes_no_task(store: Store, ingestor: Ingestor) -> None:
    send_logs(ingestor, log_request(details("no-ids", "hi", "hello")))
    send_traces(ingestor, llm_span_request("no-ids", session=None))
    assert task(store, "no-ids") is None


def test_step_of_a_task_stays_a_step(store: Store, ingestor: Ingestor) -> None:
    """Content of an LLM span under a task of ours changes nothing; an evaluation of
    that span, sent before either span, flags our task."""
    parent_trace, parent_span = ids_for("ours")
    ours = task_span("our-task", session_id="s-ours", input="my words", output="my reply")
    ours.trace_id, ours.span_id = parent_trace, parent_span
    child = make_span({"gen_ai.operation.name": "chat", "gen_ai.conversation.id": "s-ours"},
                      trace_id=parent_trace, span_id=ids_for("child")[1],
                      parent_span_id=parent_span)
    child_record = record("x", "gen_ai.evaluation.result", {
        "gen_ai.evaluation.name": "tone", "gen_ai.evaluation.score.label": "bad"})
    child_record.trace_id, child_record.span_id = parent_trace, child.span_id
    content = details("x", "llm words", "llm reply")
    content.trace_id, content.span_id = parent_trace, child.span_id
    send_logs(ingestor, log_request(child_record, content))
    send_traces(ingestor, make_request([child]).SerializeToString())
    send_traces(ingestor, make_request([ours]).SerializeToString())
    with store.read() as reader:
        row = reader.get_task("our-task")
        assert reader.get_task(foreign_task_id(parent_trace, child.span_id)) is None
        assert reader.get_session("s-ours").task_count == 1  # type: ignore[union-attr]
    assert row is not None and row.task.input == "my words"
    assert row.feedback is not None
    assert (row.feedback.flag, row.feedback.source) == ("failure", "genai:tone")


def test_older_message_events_split(store: Store, ingestor: Ingestor) -> None:
    """The older per-message events, the choice in a later request than the input: the
    task gets its output when the choice arrives (a revision of the same version)."""
    key = "legacy"
    send_traces(ingestor, llm_span_request(key, session="s-legacy"))
    send_logs(ingestor, log_request(
        record(key, "gen_ai.system.message", body={"content": SYSTEM}, time_ns=BASE_NS + 1),
        record(key, "gen_ai.user.message", body={"content": "old words"},
               time_ns=BASE_NS + 2)))
    first = task(store, key)
    assert first is not None and (first[0].input, first[0].output) == ("old words", None)
    send_logs(ingestor, log_request(record(key, "gen_ai.choice", body={
        "index": 0, "finish_reason": "stop",
        "message": {"role": "assistant", "content": "old reply"}}, time_ns=BASE_NS + 3)))
    second = task(store, key)
    assert second is not None
    assert (second[0].input, second[0].output) == ("old words", "old reply")
    assert '"system_prompt":"Be terse."' in second[0].metadata
    with store.read() as reader:
        rollup = reader.get_session("s-legacy")
    assert rollup is not None and (rollup.task_count, rollup.last_output) == (1, "old reply")


def test_unmapped_evaluation_counted(store: Store, ingestor: Ingestor) -> None:
    send_traces(ingestor, llm_span_request("unmapped", session="s-unmapped"))
    send_logs(ingestor, log_request(details("unmapped", "a", "b"),
                                    evaluation("unmapped", "meh", 7.5)))
    found = task(store, "unmapped")
    assert found is not None and found[1] is None
    assert store.counters()["evaluations_skipped_unmapped"] == 1


def test_score_maps(store: Store, ingestor: Ingestor) -> None:
    send_logs(ingestor, log_request(details("score", "a", "b"), evaluation("score", None, 0.2)))
    send_traces(ingestor, llm_span_request("score", session="s-score"))
    found = task(store, "score")
    assert found is not None and found[1] is not None and found[1].flag == "failure"


def test_logfire_annotation(store: Store, ingestor: Ingestor) -> None:
    """A Logfire annotation span, before its task's span: the task is flagged; the
    annotation is neither a task nor a step."""
    trace_id, span_id = ids_for("lf-task")
    annotation = make_span({"logfire.span_type": "annotation",
                            "logfire.feedback.name": "helpful", "helpful": True,
                            "logfire.feedback.comment": "nice", "session.id": "s-lf"},
                           trace_id=trace_id, span_id=ids_for("lf-annotation")[1],
                           parent_span_id=span_id, name="feedback: helpful")
    annotation.flags = 0x300
    turn = make_span({"logfire.span_type": "span", "session.id": "s-lf",
                      "gen_ai.input.messages": json.dumps([{"role": "user", "content": "q"}])},
                     trace_id=trace_id, span_id=span_id, name="Chat Completion")
    send_traces(ingestor, make_request([annotation], scope="logfire").SerializeToString())
    send_traces(ingestor, make_request([turn], scope="logfire").SerializeToString())
    found = task(store, "lf-task")
    assert found is not None and found[1] is not None
    assert (found[1].flag, found[1].notes, found[1].source) == ("success", "nice",
                                                              "logfire:helpful")
    with store.read() as reader:
        assert reader.get_session("s-lf").task_count == 1  # type: ignore[union-attr]


def test_annotations_stored_once(store: Store) -> None:
    trace_id, span_id = ids_for("store-api")
    a = SpanAnnotationRecord(trace_id, span_id, b"\1" * 8, "content",
                             '{"attributes":{}}', BASE_NS)
    x = Extraction([], [], [], 0, 0, {}, [], annotations=(a, a))
    store.write([x])
    store.write([x])
    with store.read() as reader:
        assert reader.span_annotations([trace_id, ids_for("other")[0]]) == [a]
