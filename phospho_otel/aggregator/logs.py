"""Decoded OTLP logs -> span annotations (``model.records.SpanAnnotationRecord``). Pure
functions, no I/O.

Log records are read for what they say of a span (their ``trace_id`` / ``span_id``), by
their event name (``event_name``, else the older ``event.name`` attribute):

* **GenAI content** (OpenTelemetry GenAI with
  ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only``): the
  ``gen_ai.client.inference.operation.details`` event's ``gen_ai.input.messages``,
  ``gen_ai.output.messages`` and ``gen_ai.system_instructions`` attributes (strings, or
  structured values, which become their JSON text) are the span attributes they stand
  for; the older per-message events ``gen_ai.system.message``, ``gen_ai.user.message``,
  ``gen_ai.assistant.message``, ``gen_ai.tool.message`` (input, their body a message) and
  ``gen_ai.choice`` (output, its body ``{"index", "finish_reason", "message"}``) are
  messages, put in order by ``aggregator.annotations`` into those attributes. An
  annotation of kind ``content``.
* **GenAI evaluation results** (``gen_ai.evaluation.result``): feedback on the task the
  evaluated span is or belongs to, with source ``genai:<gen_ai.evaluation.name>``, its
  flag from ``gen_ai.evaluation.score.label`` else ``gen_ai.evaluation.score.value``
  (``flags.flag_of``), notes saying the name, label or score, and
  ``gen_ai.evaluation.explanation``. An evaluation that maps to no flag is counted
  (``evaluations_skipped_unmapped``) and skipped: a feedback record has a flag.

Other log records, and those of these events without a valid span context, are accepted
and counted (``log_records_unused``, ``log_records_unlinked``), not stored. An
annotation's id is a hash of its log record's bytes, so a record sent again is stored
once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from phospho_otel.aggregator.extract import MAX_TIME_NS, any_value_to_python
from phospho_otel.aggregator.flags import feedback_body, flag_of
from phospho_otel.model.records import Extraction, SpanAnnotationRecord

__all__ = [
    "CONTENT_ATTRIBUTES",
    "DETAILS_EVENT",
    "EVALUATION_EVENT",
    "INPUT_MESSAGE_EVENTS",
    "OUTPUT_MESSAGE_EVENT",
    "count_log_records",
    "extract_logs",
]

DETAILS_EVENT = "gen_ai.client.inference.operation.details"
EVALUATION_EVENT = "gen_ai.evaluation.result"
CONTENT_ATTRIBUTES = ("gen_ai.input.messages", "gen_ai.output.messages",
                      "gen_ai.system_instructions")
"""The attributes of ``DETAILS_EVENT`` that stand for its span's."""
INPUT_MESSAGE_EVENTS = {"gen_ai.system.message": "system", "gen_ai.user.message": "user",
                        "gen_ai.assistant.message": "assistant",
                        "gen_ai.tool.message": "tool"}
"""The older per-message events of the input -> the role of their message."""
OUTPUT_MESSAGE_EVENT = "gen_ai.choice"

_EVENT_NAME_ATTRIBUTE = "event.name"
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
_VALUE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
"""A structured attribute's JSON text: its keys in their order, compact, as the GenAI
instrumentation writes the same value on a span."""


def count_log_records(request: ExportLogsServiceRequest) -> int:
    """Number of log records in a request."""
    return sum(len(scope_logs.log_records) for resource_logs in request.resource_logs
               for scope_logs in resource_logs.scope_logs)


def _text(value: AnyValue) -> str:
    """A string value as is, any other as its JSON text."""
    if value.WhichOneof("value") == "string_value":
        return value.string_value
    return _VALUE_JSON.encode(any_value_to_python(value))


def _event_name(record: LogRecord, attrs: dict[str, AnyValue]) -> str:
    if record.event_name:
        return record.event_name
    value = attrs.get(_EVENT_NAME_ATTRIBUTE)
    if value is not None and value.WhichOneof("value") == "string_value":
        return value.string_value
    return ""


class _LogExtractor:
    __slots__ = ("annotations", "counters", "problems", "seq")

    def __init__(self) -> None:
        self.annotations: list[SpanAnnotationRecord] = []
        self.counters: dict[str, int] = {}
        self.problems: list[str] = []
        self.seq = 0

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def record(self, record: LogRecord) -> None:
        self.count("log_records_received")
        self.seq += 1
        attrs = {kv.key: kv.value for kv in record.attributes}
        name = _event_name(record, attrs)
        if name == DETAILS_EVENT:
            content = {key: _text(attrs[key]) for key in CONTENT_ATTRIBUTES if key in attrs}
            if not content:
                self.count("log_records_unused")
                return
            body: dict[str, Any] | None = {"attributes": content}
            kind = "content"
        elif name in INPUT_MESSAGE_EVENTS or name == OUTPUT_MESSAGE_EVENT:
            body = self.message_body(name, record)
            kind = "content"
        elif name == EVALUATION_EVENT:
            body = self.evaluation_body(attrs)
            kind = "feedback"
        else:
            self.count("log_records_unused")
            return
        if body is None:
            return
        trace_id, span_id = record.trace_id, record.span_id
        if (len(trace_id) != 16 or len(span_id) != 8 or trace_id == _ZERO_TRACE
                or span_id == _ZERO_SPAN):
            self.count("log_records_unlinked")
            if len(self.problems) < 5:
                self.problems.append(f"{name} log record not used: it names no span "
                                     "(trace_id and span_id of 16 and 8 bytes)")
            return
        time_ns = record.time_unix_nano or record.observed_time_unix_nano
        time_ns = min(time_ns, MAX_TIME_NS)
        if kind == "content":
            body["seq"] = self.seq
        digest = hashlib.blake2b(record.SerializeToString(deterministic=True),
                                 digest_size=8).digest()
        self.annotations.append(SpanAnnotationRecord(
            trace_id, span_id, digest, kind, _JSON.encode(body), time_ns))
        self.count("annotations_received")

    def message_body(self, name: str, record: LogRecord) -> dict[str, Any] | None:
        """``{"input"|"output": message}`` of an older per-message event."""
        body = any_value_to_python(record.body) if record.HasField("body") else None
        if name == OUTPUT_MESSAGE_EVENT:
            message = body.get("message") if isinstance(body, dict) else None
            if not isinstance(message, dict):
                self.count("log_records_unused")
                return None
            message = {"role": "assistant", **message}
            index = body.get("index", 0) if isinstance(body, dict) else 0
            return {"output": message, "index": index if isinstance(index, int) else 0}
        if not isinstance(body, dict):
            body = {} if body is None else {"content": body}
        return {"input": {**body, "role": body.get("role") or INPUT_MESSAGE_EVENTS[name]}}

    def evaluation_body(self, attrs: dict[str, AnyValue]) -> dict[str, Any] | None:
        values = {key: any_value_to_python(value) for key, value in attrs.items()}
        name = values.get("gen_ai.evaluation.name")
        label = values.get("gen_ai.evaluation.score.label")
        score = values.get("gen_ai.evaluation.score.value")
        explanation = values.get("gen_ai.evaluation.explanation")
        name = name if isinstance(name, str) and name else "evaluation"
        flag = flag_of(label if label is not None else score)
        if flag is None and label is not None:
            flag = flag_of(score)
        if flag is None:
            self.count("evaluations_skipped_unmapped")
            return None
        said = [str(v) for v in (label, score) if v is not None]
        notes = f"{name}: {' '.join(said)}" if said else name
        if isinstance(explanation, str) and explanation:
            notes += f" ({explanation})"
        return feedback_body(flag, notes, f"genai:{name}")


def extract_logs(request: ExportLogsServiceRequest) -> Extraction:
    """The span annotations of one logs request (see the module doc), with its counters.
    Never raises on bad records: they are counted."""
    out = _LogExtractor()
    for resource_logs in request.resource_logs:
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                out.record(record)
    return Extraction([], [], [], 0, 0, out.counters, out.problems,
                      annotations=tuple(out.annotations))
