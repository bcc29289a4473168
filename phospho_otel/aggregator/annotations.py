"""Span annotations meet their spans: GenAI content events become their span's task,
deferred task candidates are decided on their whole stored trace, evaluations and Logfire
annotations become feedback on the task their span is or belongs to. Runs in the ingest
writer thread, after each write (``ingest.Ingestor``).

An annotation (``model.records.SpanAnnotationRecord``) is stored as it arrives, whether
its span is stored or not. After each write, every trace the write touched (its
annotations' traces, and its spans' traces once the store has any annotation) that has
annotations is *resolved* (``resolve``) from what is stored, and what that yields is
written as a ``derived`` extraction before the requests are acknowledged:

* **Content**: the stored trace is extracted again (``extract.extract``, the trace as one
  request) with each annotated span carrying the attributes its content events stand for
  (``gen_ai.input.messages``, ``gen_ai.output.messages``, ``gen_ai.system_instructions``;
  the older per-message events assembled into the first two, in time order). The tasks
  of annotated spans that come out are written: exactly the task the span would have
  been with the content on it, under the rule of ``extract`` (one task per turn: an
  annotated span under a task or a candidate stays a step of it). A task already stored
  is replaced by the new version (its content may have grown: a task replaces a stored
  version of the same ``(end_ns, span_id)`` in a derived write).
* **Deferred candidates** (kind ``candidate``: a foreign span with ids and input or
  output whose ancestry was not all in its request, ``extract`` "One task per turn"): the
  same extraction of the stored trace decides them; one that comes out a task (its
  ancestry is stored up to a local root, all plain) is written, one under a task or
  candidate is a step and yields nothing, one whose ancestry is still incomplete waits.
* **Feedback** (kind ``feedback``): the task of the annotated span is the first of the
  span, its parent, its parent's parent... that is a stored task (or one derived now),
  else, for a span above tasks (an app's span wrapping a turn), the one stored task
  below it when there is exactly one; a ``FeedbackRecord`` on it, its ``span_id`` the
  annotation's id. An annotation whose
  span, or whose task, is not stored yet waits: it is resolved again when its trace is
  next written to.

Whatever the order (content or feedback before or after the spans, in one request or
several, sent again), the same records come out once all has arrived, and writing them
again changes nothing. What it does not do: a candidate *below* a span that becomes a
task by its content stays the task it was made (a GenAI LLM span is a leaf in practice).

Flags come from the peers' values by ``aggregator.flags``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans, Span

from phospho_otel.aggregator.extract import extract
from phospho_otel.model.records import (
    Extraction,
    FeedbackRecord,
    SpanAnnotationRecord,
    TaskFeedback,
    TaskRecord,
)
from phospho_otel.store.api import StoredTrace, StoreReader

__all__ = ["content_attributes", "resolve"]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def content_attributes(annotations: Iterable[SpanAnnotationRecord]) -> dict[str, str]:
    """The span attributes one span's ``content`` annotations stand for: the attributes
    of details events (later ones win), and the older per-message events as
    ``gen_ai.input.messages`` / ``gen_ai.output.messages`` arrays in time order."""
    attributes: dict[str, str] = {}
    inputs: list[tuple[int, int, Any]] = []
    outputs: list[tuple[int, int, int, Any]] = []
    for a in sorted(annotations, key=lambda a: (a.time_ns, a.annotation_id)):
        body = json.loads(a.body)
        seq = body.get("seq", 0)
        if "attributes" in body:
            attributes.update(body["attributes"])
        elif "input" in body:
            inputs.append((a.time_ns, seq, body["input"]))
        elif "output" in body:
            outputs.append((body.get("index", 0), a.time_ns, seq, body["output"]))
    if inputs and "gen_ai.input.messages" not in attributes:
        attributes["gen_ai.input.messages"] = _JSON.encode(
            [m for *_, m in sorted(inputs, key=lambda i: i[:2])])
    if outputs and "gen_ai.output.messages" not in attributes:
        attributes["gen_ai.output.messages"] = _JSON.encode(
            [m for *_, m in sorted(outputs, key=lambda o: o[:3])])
    return attributes


def _request(trace: StoredTrace, overlays: dict[bytes, dict[str, str]]
             ) -> ExportTraceServiceRequest:
    """The stored trace as one export request, the annotated spans carrying their
    content attributes (after their own: they win)."""
    request = ExportTraceServiceRequest()
    groups: dict[int, ScopeSpans] = {}
    for stored in trace.spans:
        origin = stored.origin
        scope_spans = groups.get(origin.id)
        if scope_spans is None:
            resource_spans = request.resource_spans.add(
                schema_url=origin.resource_schema_url)
            resource_spans.resource.CopyFrom(origin.resource)
            scope_spans = resource_spans.scope_spans.add(schema_url=origin.scope_schema_url)
            scope_spans.scope.CopyFrom(origin.scope)
            groups[origin.id] = scope_spans
        span: Span = scope_spans.spans.add()
        span.CopyFrom(stored.span)
        for key, text in overlays.get(stored.span.span_id, {}).items():
            span.attributes.append(KeyValue(key=key, value=AnyValue(string_value=text)))
    return request


def _ancestors(span_id: bytes, parents: dict[bytes, bytes]) -> Iterator[bytes]:
    """``span_id`` and its stored ancestors, nearest first (a cycle of ids ends it)."""
    current: bytes | None = span_id
    for _ in range(len(parents) + 1):
        if current is None or current not in parents:
            return
        yield current
        current = parents[current] or None


def _task_of(span_id: bytes, parents: dict[bytes, bytes], tasks: dict[bytes, str],
             stored: Mapping[str, object]) -> str | None:
    """The task of ``span_id``: the first of it and its ancestors that is a stored task,
    else the one stored task below it, if there is exactly one (a span wrapping a turn)."""
    for ancestor in _ancestors(span_id, parents):
        task_id = tasks.get(ancestor)
        if task_id is not None and task_id in stored:
            return task_id
    below = {task_id for task_span, task_id in tasks.items() if task_id in stored
             and task_span != span_id and span_id in _ancestors(task_span, parents)}
    return below.pop() if len(below) == 1 else None


def _resolve_trace(reader: StoreReader, trace: StoredTrace,
                   annotations: list[SpanAnnotationRecord],
                   tasks_out: list[TaskRecord], feedback_out: list[FeedbackRecord]) -> None:
    by_span: dict[bytes, list[SpanAnnotationRecord]] = {}
    for a in annotations:
        if a.annotation_kind == "content":
            by_span.setdefault(a.span_id, []).append(a)
    overlays = {span_id: content_attributes(found) for span_id, found in by_span.items()}
    deferred = {a.span_id for a in annotations if a.annotation_kind == "candidate"}
    extraction = extract(_request(trace, overlays))
    feedback = [a for a in annotations if a.annotation_kind == "feedback"]
    tasks: dict[bytes, str] = {}
    stored: dict[str, TaskFeedback | None] = {}
    for task in extraction.tasks:
        derived = task.span_id in overlays or task.span_id in deferred
        if not derived and not feedback:
            continue
        tasks[task.span_id] = task.task_id
        row = reader.get_task(task.task_id)
        if row is not None:
            stored[task.task_id] = row.feedback
        if derived:
            if row is None or row.task != task:  # else: written already, unchanged
                tasks_out.append(task)
            stored.setdefault(task.task_id, None)
    parents = {s.span.span_id: s.span.parent_span_id for s in trace.spans}
    for a in feedback:
        task_id = _task_of(a.span_id, parents, tasks, stored)
        if task_id is None:
            continue  # its span or its task is not stored yet
        body = json.loads(a.body)
        record = FeedbackRecord(a.trace_id, a.annotation_id, task_id, body["flag"],
                                body.get("notes"), body.get("source") or "user", a.time_ns)
        latest = stored[task_id]
        if latest is not None and (latest.time_ns > record.time_ns or latest == TaskFeedback(
                record.flag, record.time_ns, record.notes, record.source)):
            continue  # written already, or a later feedback decides the flag anyway
        feedback_out.append(record)


def resolve(reader: StoreReader, trace_ids: Iterable[bytes]) -> Extraction | None:
    """The tasks and feedback the stored annotations of these traces yield, as a derived
    extraction (None when they yield nothing); see the module doc."""
    annotations = reader.span_annotations(trace_ids)
    if not annotations:
        return None
    by_trace: dict[bytes, list[SpanAnnotationRecord]] = {}
    for a in annotations:
        by_trace.setdefault(a.trace_id, []).append(a)
    tasks: list[TaskRecord] = []
    feedback: list[FeedbackRecord] = []
    for trace in reader.get_traces(list(by_trace)):
        _resolve_trace(reader, trace, by_trace[trace.trace_id], tasks, feedback)
    if not tasks and not feedback:
        return None
    return Extraction([], tasks, feedback, 0, 0, {}, [], derived=True)
