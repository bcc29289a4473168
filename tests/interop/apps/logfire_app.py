"""An app instrumented with Pydantic Logfire (``logfire.instrument_openai``), sending to
our aggregator over OTLP (``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, nothing to Logfire's
service), its session and user set with ``logfire.set_baggage`` (copied onto every span)."""

from __future__ import annotations

import logfire

from tests.interop.apps.conversation import Messages, Turn, chat, client, hold_conversation

logfire.configure(send_to_logfire=False, service_name="interop-logfire", console=False)
api = client()
logfire.instrument_openai(api)


def turn(t: Turn, messages: Messages) -> str:
    with logfire.set_baggage(**{"session.id": t.session_id, "user.id": t.user_id}):
        return chat(api, messages, t.stream)


hold_conversation(turn)
logfire.shutdown()
