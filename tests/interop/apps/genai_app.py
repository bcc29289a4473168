"""An app instrumented with the official OpenTelemetry GenAI instrumentation
(``opentelemetry-instrumentation-openai-v2``, latest experimental conventions, message
content on the spans), its conversation and user ids set the generic OpenTelemetry way:
W3C baggage (``gen_ai.conversation.id``, ``enduser.id``) copied onto every span by the
``BaggageSpanProcessor``."""

from __future__ import annotations

import os

os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "span_only")

from opentelemetry import baggage, context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
from opentelemetry.processor.baggage import (
    ALLOW_ALL_BAGGAGE_KEYS,
    BaggageSpanProcessor,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.interop.apps.conversation import (
    Messages,
    Turn,
    chat,
    client,
    hold_conversation,
)

provider = TracerProvider(resource=Resource.create({"service.name": "interop-genai"}))
provider.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
provider.add_span_processor(BatchSpanProcessor(
    OTLPSpanExporter(endpoint=os.environ["OTLP_TRACES_URL"])))
OpenAIInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]
api = client()


def turn(t: Turn, messages: Messages) -> str:
    ctx = baggage.set_baggage("gen_ai.conversation.id", t.session_id)
    ctx = baggage.set_baggage("enduser.id", t.user_id, context=ctx)
    token = context.attach(ctx)
    try:
        return chat(api, messages, t.stream)
    finally:
        context.detach(token)


hold_conversation(turn)
provider.shutdown()
