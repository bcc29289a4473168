"""An app instrumented with Pydantic Logfire (``logfire.instrument_openai``), sending to
our aggregator over OTLP (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, nothing to Logfire's
service), its session and user set with ``logfire.set_baggage`` (copied onto every span).

With the argument ``feedback``: after each turn in ``ANNOTATED``, feedback on that turn's
LLM span with ``logfire.experimental.annotations.record_feedback`` (an annotation span).
With the argument ``phospho``: ``phospho_otel.init()`` after ``logfire.configure`` (exporting
to ``PHOSPHO_ENDPOINT``)."""

from __future__ import annotations

import os
import sys

import logfire
from logfire.experimental.annotations import get_traceparent, record_feedback
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.trace import NonRecordingSpan

from tests.interop.apps.conversation import Messages, Turn, chat, client, hold_conversation

ANNOTATED: dict[tuple[str, int], tuple[bool | str, str]] = {
    ("alice-session-1", 2): (True, "spot on"),
    ("bob-session-0", 0): ("incorrect", "wrong city"),
}
"""(session, turn position) -> the feedback's (value, comment)."""


class LastLLMSpan(SpanProcessor):
    """Remembers the last OpenAI call span that ended (what the app annotates)."""

    last: ReadableSpan | None = None

    def on_end(self, span: ReadableSpan) -> None:
        if span.name.startswith("Chat Completion") and (span.attributes or {}).get(
                "logfire.span_type") == "span":
            self.last = span


last_llm = LastLLMSpan()
logfire.configure(send_to_logfire=False, service_name="interop-logfire", console=False,
                  additional_span_processors=[last_llm])
api = client()
logfire.instrument_openai(api)
if "phospho" in sys.argv[1:]:  # phospho_otel.init() on the provider the library set up
    import phospho_otel

    phospho_otel.init(endpoint=os.environ["PHOSPHO_ENDPOINT"])


def turn(t: Turn, messages: Messages) -> str:
    with logfire.set_baggage(**{"session.id": t.session_id, "user.id": t.user_id}):
        reply = chat(api, messages, t.stream)
    annotation = ANNOTATED.get((t.session_id, t.position))
    if "feedback" in sys.argv[1:] and annotation is not None:
        assert last_llm.last is not None and last_llm.last.context is not None
        value, comment = annotation
        record_feedback(get_traceparent(NonRecordingSpan(last_llm.last.context)),
                        "helpful", value, comment=comment)
    return reply


hold_conversation(turn)
if "phospho" in sys.argv[1:]:
    phospho_otel.shutdown()
logfire.shutdown()
