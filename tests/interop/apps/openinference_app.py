"""An app instrumented with OpenInference (``openinference-instrumentation-openai``), its
session and user set with ``using_attributes``. Modes (argv[1]):

* ``plain``: the LLM span is the turn;
* ``chain``: each turn is a function decorated with ``@tracer.chain`` (OpenInference's
  ``TracerProvider``), the LLM span its child;
* ``phoenix``: ``phoenix.otel.register(...)`` exporting to ``PHOENIX_TRACES_URL``, then
  ``phospho_otel.init()`` on the same provider (our aggregator at ``OTLP_TRACES_URL``),
  turns as in ``chain``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from openinference.instrumentation import TracerProvider, using_attributes
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from tests.interop.apps.conversation import Messages, Turn, chat, client, hold_conversation

mode = sys.argv[1]
if mode == "phoenix":
    import phoenix.otel

    import phospho_otel

    provider: Any = phoenix.otel.register(
        endpoint=os.environ["PHOENIX_TRACES_URL"], project_name="interop-openinference",
        batch=True, set_global_tracer_provider=True, verbose=False)
    phospho_otel.init(endpoint=os.environ["OTLP_TRACES_URL"].removesuffix("/v1/traces"))
else:
    provider = TracerProvider(resource=Resource.create({"service.name": "interop-openinference"}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=os.environ["OTLP_TRACES_URL"])))
OpenAIInstrumentor().instrument(tracer_provider=provider)
tracer = provider.get_tracer("interop-app")
api = client()


def _answer(question: str, messages: Messages, stream: bool) -> str:
    return chat(api, messages, stream)


answer = tracer.chain(_answer)  # OpenInference's @tracer.chain decorator


def turn(t: Turn, messages: Messages) -> str:
    with using_attributes(session_id=t.session_id, user_id=t.user_id):
        if mode == "plain":
            return chat(api, messages, t.stream)
        return str(answer(t.text, messages, t.stream))


hold_conversation(turn)
if mode == "phoenix":
    phospho_otel.shutdown()
provider.shutdown()
