"""The conversation every interop app holds, whatever its instrumentation: 2 users x 2
sessions x 3 turns, the second turn of each session streamed, each turn sending the
system prompt, the session's history and the new user message through the real
``openai`` client to the fake model server (``OPENAI_BASE_URL``).

``TURNS`` is what the views must show; an app supplies ``turn(user, session, messages,
stream) -> reply`` in its library's own idiom and calls ``hold_conversation``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import openai

__all__ = ["SYSTEM_PROMPT", "TURNS", "Turn", "chat", "client", "hold_conversation"]

SYSTEM_PROMPT = "You are a terse travel assistant."
USERS = ("alice", "bob")
SESSIONS_PER_USER = 2
TURNS_PER_SESSION = 3
STREAMED_TURN = 1


class Turn(NamedTuple):
    user_id: str
    session_id: str
    position: int
    """The turn's place in its session, from 0."""
    text: str
    """The user's own words."""
    reply: str
    """The model's reply (``fake_openai.reply_to(text)``)."""
    stream: bool


def _turns() -> tuple[Turn, ...]:
    out = []
    for user in USERS:
        for s in range(SESSIONS_PER_USER):
            session = f"{user}-session-{s}"
            for i in range(TURNS_PER_SESSION):
                text = f"{user} asks question {i} in session {s}"
                out.append(Turn(user, session, i, text, f"Sure! You said: {text}",
                                i == STREAMED_TURN))
    return tuple(out)


TURNS = _turns()

Messages = list[dict[str, Any]]


def client() -> openai.OpenAI:
    """The real OpenAI client, for the fake server at ``OPENAI_BASE_URL``."""
    return openai.OpenAI(api_key="sk-fake", max_retries=0, timeout=10)


def chat(api: Any, messages: Messages, stream: bool) -> str:
    """One chat completion's text, streamed (with usage) or not."""
    if not stream:
        response = api.chat.completions.create(model="fake-gpt", messages=messages)
        return str(response.choices[0].message.content)
    parts = []
    for chunk in api.chat.completions.create(model="fake-gpt", messages=messages,
                                             stream=True,
                                             stream_options={"include_usage": True}):
        if chunk.choices and chunk.choices[0].delta.content:
            parts.append(chunk.choices[0].delta.content)
    return "".join(parts)


def hold_conversation(turn: Callable[[Turn, Messages], str]) -> None:
    """Every turn of ``TURNS`` in order, each given the messages to send; checks that the
    reply is the model's."""
    history: dict[str, Messages] = {}
    for t in TURNS:
        messages = history.setdefault(t.session_id,
                                      [{"role": "system", "content": SYSTEM_PROMPT}])
        messages.append({"role": "user", "content": t.text})
        reply = turn(t, list(messages))
        if reply != t.reply:
            raise SystemExit(f"unexpected reply {reply!r} to {t.text!r}")
        messages.append({"role": "assistant", "content": reply})
