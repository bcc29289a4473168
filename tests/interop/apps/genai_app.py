"""An app instrumented with the official OpenTelemetry GenAI instrumentation
(``opentelemetry-instrumentation-openai-v2``, latest experimental conventions), its
conversation and user ids set the generic OpenTelemetry way: W3C baggage
(``gen_ai.conversation.id``, ``enduser.id``) copied onto every span by the
``BaggageSpanProcessor``.

Arguments (any of):

* ``event_only``: message content as log events
  (``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=event_only``), exported over
  OTLP/HTTP to ``OTLP_LOGS_URL``; without it, content on the spans (``span_only``);
* ``evaluate``: after each turn in ``EVALUATED``, a ``gen_ai.evaluation.result`` event
  on that turn's LLM span, emitted with the OTel logs API as an app's evaluator would;
* ``grpc``: logs and traces exported over OTLP/gRPC to ``OTLP_GRPC_ENDPOINT``.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                      "event_only" if "event_only" in sys.argv[1:] else "span_only")

from opentelemetry import baggage, context, trace
from opentelemetry._logs import LogRecord
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.processor.baggage import (
    ALLOW_ALL_BAGGAGE_KEYS,
    BaggageSpanProcessor,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.interop.apps.conversation import (
    Messages,
    Turn,
    chat,
    client,
    hold_conversation,
)

MODES = set(sys.argv[1:])
EVALUATED = {("alice-session-0", 0): ("pass", 0.9), ("bob-session-1", 2): ("fail", 0.1)}
"""(session, turn position) -> the evaluation's (label, score)."""

resource = Resource.create({"service.name": "interop-genai"})
if "grpc" in MODES:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    endpoint = os.environ["OTLP_GRPC_ENDPOINT"]
    span_exporter = OTLPSpanExporter(endpoint=endpoint, insecure=True)
    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True)
else:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import (  # type: ignore[assignment]
        OTLPLogExporter,
    )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (  # type: ignore[assignment]
        OTLPSpanExporter,
    )

    span_exporter = OTLPSpanExporter(endpoint=os.environ["OTLP_TRACES_URL"])
    log_exporter = OTLPLogExporter(endpoint=os.environ.get("OTLP_LOGS_URL", ""))


class LastLLMSpan(SpanProcessor):
    """Remembers the last GenAI span that ended (what the app evaluates)."""

    last: ReadableSpan | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if span.attributes and "gen_ai.operation.name" in span.attributes:
            self.last = span


provider = TracerProvider(resource=resource)
provider.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
provider.add_span_processor(BatchSpanProcessor(span_exporter))
last_llm = LastLLMSpan()
provider.add_span_processor(last_llm)
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
OpenAIInstrumentor().instrument(  # type: ignore[no-untyped-call]
    tracer_provider=provider, logger_provider=logger_provider)
evaluator = logger_provider.get_logger("interop.evaluator")
api = client()


def evaluate(label: str, score: float) -> None:
    span = last_llm.last
    assert span is not None and span.context is not None
    ctx = trace.set_span_in_context(trace.NonRecordingSpan(span.context))
    evaluator.emit(LogRecord(
        event_name="gen_ai.evaluation.result", context=ctx,
        attributes={"gen_ai.evaluation.name": "relevance",
                    "gen_ai.evaluation.score.label": label,
                    "gen_ai.evaluation.score.value": score,
                    "gen_ai.evaluation.explanation": f"judged {label}"}))


def turn(t: Turn, messages: Messages) -> str:
    ctx = baggage.set_baggage("gen_ai.conversation.id", t.session_id)
    ctx = baggage.set_baggage("enduser.id", t.user_id, context=ctx)
    token = context.attach(ctx)
    try:
        reply = chat(api, messages, t.stream)
    finally:
        context.detach(token)
    evaluation = EVALUATED.get((t.session_id, t.position))
    if "evaluate" in MODES and evaluation is not None:
        evaluate(*evaluation)
    return reply


hold_conversation(turn)
provider.shutdown()
logger_provider.shutdown()
