"""An app instrumented with Langfuse 5: the drop-in ``langfuse.openai`` client, each turn
an ``@observe`` function, session and user set with ``propagate_attributes``; exporting
to ``LANGFUSE_BASE_URL`` (our aggregator) with ``LANGFUSE_OTEL_TRACES_EXPORT_PATH``.

With the argument ``phospho``: ``phospho_otel.init()`` after Langfuse's client is made
(exporting to ``PHOSPHO_ENDPOINT``)."""

from __future__ import annotations

import os
import sys

from langfuse import get_client, observe, propagate_attributes
from langfuse.openai import OpenAI  # type: ignore[attr-defined]  # the drop-in client

from tests.interop.apps.conversation import Messages, Turn, chat, hold_conversation

langfuse = get_client()
if "phospho" in sys.argv[1:]:  # phospho_otel.init() on the provider the library set up
    import phospho_otel

    phospho_otel.init(endpoint=os.environ["PHOSPHO_ENDPOINT"])
api = OpenAI(api_key="sk-fake", max_retries=0, timeout=10)


@observe()
def answer(question: str, messages: Messages, stream: bool) -> str:
    return chat(api, messages, stream)


def turn(t: Turn, messages: Messages) -> str:
    with propagate_attributes(session_id=t.session_id, user_id=t.user_id):
        return answer(t.text, messages, t.stream)


hold_conversation(turn)
if "phospho" in sys.argv[1:]:
    phospho_otel.shutdown()
langfuse.shutdown()
