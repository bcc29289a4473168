"""OTLP log records -> span annotations (``aggregator.logs``), and peer values -> flags
(``aggregator.flags``)."""

from __future__ import annotations

import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord

from phospho_otel.aggregator.annotations import content_attributes
from phospho_otel.aggregator.flags import flag_of
from phospho_otel.aggregator.logs import extract_logs
from tests.support.otlp import any_value, ids_for

TRACE, SPAN = ids_for("logs")


def request(*records: LogRecord) -> ExportLogsServiceRequest:
    out = ExportLogsServiceRequest()
    out.resource_logs.add().scope_logs.add().log_records.extend(records)
    return out


def record(event: str, attributes: dict[str, object] | None = None, *, linked: bool = True,
           old_style: bool = False, time_ns: int = 10) -> LogRecord:
    out = LogRecord(time_unix_nano=time_ns,
                    attributes=[KeyValue(key=k, value=any_value(v))
                                for k, v in (attributes or {}).items()])
    if old_style:
        out.attributes.add(key="event.name").value.string_value = event
    else:
        out.event_name = event
    if linked:
        out.trace_id, out.span_id = TRACE, SPAN
    return out


def test_details_event_is_content() -> None:
    structured = AnyValue()
    message = structured.array_value.values.add().kvlist_value
    message.values.add(key="role").value.string_value = "user"
    message.values.add(key="content").value.string_value = "hi"
    details = record("gen_ai.client.inference.operation.details",
                     {"gen_ai.output.messages": '[{"role":"assistant","content":"yo"}]',
                      "gen_ai.request.model": "m"})
    details.attributes.add(key="gen_ai.input.messages").value.CopyFrom(structured)
    x = extract_logs(request(details))
    (a,) = x.annotations
    assert (a.trace_id, a.span_id, a.annotation_kind, a.time_ns) == (TRACE, SPAN, "content", 10)
    assert content_attributes([a]) == {
        "gen_ai.input.messages": '[{"role":"user","content":"hi"}]',
        "gen_ai.output.messages": '[{"role":"assistant","content":"yo"}]'}
    assert x.counters == {"log_records_received": 1, "annotations_received": 1}
    assert extract_logs(request(details)).annotations == x.annotations, "same id when resent"


def test_other_records_counted() -> None:
    x = extract_logs(request(
        record("app.log"), LogRecord(body=AnyValue(string_value="plain line")),
        record("gen_ai.client.inference.operation.details",
               {"gen_ai.input.messages": "[]"}, linked=False),
        record("gen_ai.client.inference.operation.details", {"unrelated": 1})))
    assert x.annotations == ()
    assert x.counters == {"log_records_received": 4, "log_records_unused": 2 + 1,
                          "log_records_unlinked": 1}
    assert x.problems and "names no span" in x.problems[0]


def test_evaluation_event_name_attribute() -> None:
    """The older ``event.name`` attribute names the event too."""
    x = extract_logs(request(record("gen_ai.evaluation.result", {
        "gen_ai.evaluation.name": "accuracy", "gen_ai.evaluation.score.label": "unsure",
        "gen_ai.evaluation.score.value": 0.75,
        "gen_ai.evaluation.explanation": "mostly right"}, old_style=True)))
    (a,) = x.annotations
    assert json.loads(a.body) == {"flag": "success", "source": "genai:accuracy",
                                  "notes": "accuracy: unsure 0.75 (mostly right)"}


@pytest.mark.parametrize(("value", "flag"), [
    (True, "success"), (False, "failure"), ("Pass", "success"), ("thumbs-down", "failure"),
    ("Not Relevant", None), (1, "success"), (0, "failure"), (0.5, "success"),
    (0.49, "failure"), (4, None), (-0.1, None), ("meh", None), (None, None)])
def test_flag_of(value: object, flag: str | None) -> None:
    assert flag_of(value) == flag
