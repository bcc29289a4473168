"""An app instrumented with OpenLLMetry (``traceloop-sdk``): each turn a ``@workflow``,
its session and user set with ``Traceloop.set_association_properties``. With the argument
``phospho``: ``phospho_otel.init()`` after ``Traceloop.init`` (exporting to
``PHOSPHO_ENDPOINT``)."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")  # traces only: no /v1/metrics here

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from traceloop.sdk import Traceloop
from traceloop.sdk.decorators import workflow

from tests.interop.apps.conversation import (
    Messages,
    Turn,
    chat,
    client,
    hold_conversation,
)

Traceloop.init(app_name="interop-traceloop",
               api_endpoint=os.environ["OTLP_TRACES_URL"].removesuffix("/v1/traces"),
               disable_batch=False, telemetry_enabled=False)
api = client()
if "phospho" in sys.argv[1:]:  # phospho_otel.init() on the provider the library set up
    import phospho_otel

    phospho_otel.init(endpoint=os.environ["PHOSPHO_ENDPOINT"])


@workflow(name="chat_turn")
def answer(question: str, messages: Messages, stream: bool) -> str:
    return chat(api, messages, stream)


def turn(t: Turn, messages: Messages) -> str:
    Traceloop.set_association_properties({"session_id": t.session_id, "user_id": t.user_id})
    return answer(t.text, messages, t.stream)


hold_conversation(turn)
provider = trace.get_tracer_provider()  # the one Traceloop.init set up
assert isinstance(provider, TracerProvider)
provider.force_flush()
if "phospho" in sys.argv[1:]:
    phospho_otel.shutdown()
