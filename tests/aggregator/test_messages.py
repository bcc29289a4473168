"""aggregator.messages: the user's words, the reply and the system prompt out of each
payload shape the instrumentations send (shapes copied from their real spans)."""

from __future__ import annotations

import json

import pytest

from phospho_otel.aggregator.messages import (
    flattened_messages,
    instructions_text,
    parse_json,
    reply_text,
    system_text,
    user_text,
)

HISTORY = [{"role": "system", "content": "be brief"},
           {"role": "user", "content": "first question"},
           {"role": "assistant", "content": "first answer"},
           {"role": "user", "content": "second question"}]
GENAI_HISTORY = [{"role": m["role"], "parts": [{"type": "text", "content": m["content"]}]}
                 for m in HISTORY]


@pytest.mark.parametrize(("payload", "words"), [
    pytest.param("plain words", "plain words", id="plain text"),
    pytest.param(json.dumps("quoted"), "quoted", id="JSON string"),
    pytest.param(json.dumps(HISTORY), "second question", id="OpenAI messages"),
    pytest.param(json.dumps(GENAI_HISTORY), "second question", id="GenAI parts"),
    pytest.param(json.dumps({"model": "m", "messages": HISTORY}), "second question",
                 id="OpenAI request (OpenInference input.value)"),
    pytest.param(json.dumps({"args": ["q", HISTORY, False], "kwargs": {}}),
                 "second question", id="call record with messages (Langfuse @observe)"),
    pytest.param(json.dumps({"args": ["just this"], "kwargs": {"n": 1}}), "just this",
                 id="call record without messages (Traceloop @workflow)"),
    pytest.param(json.dumps({"question": "q", "messages": HISTORY}), "second question",
                 id="OpenInference @chain arguments"),
    pytest.param(json.dumps([{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {}},
        {"type": "text", "text": "at this"}]}]), "look\nat this", id="content parts"),
    pytest.param("{not json", "{not json", id="broken JSON is text"),
])
def test_user_text(payload: str, words: str) -> None:
    assert user_text(payload) == words


def test_no_user_text() -> None:
    """No user message, no string argument: None (the caller keeps the payload)."""
    assert user_text(json.dumps([{"role": "system", "content": "s"}])) is None
    assert user_text(json.dumps({"args": [1, 2], "kwargs": {}})) is None


@pytest.mark.parametrize(("payload", "reply"), [
    pytest.param("the reply", "the reply", id="plain text"),
    pytest.param(json.dumps("the reply"), "the reply", id="JSON string (Traceloop)"),
    pytest.param(json.dumps({"choices": [{"message": {"role": "assistant",
                                                      "content": "the reply"}}]}),
                 "the reply", id="ChatCompletion (OpenInference output.value)"),
    pytest.param(json.dumps({"role": "assistant", "content": "the reply"}), "the reply",
                 id="message (Langfuse generation)"),
    pytest.param(json.dumps([{"role": "assistant", "parts": [
        {"type": "text", "content": "the reply"}], "finish_reason": "stop"}]),
        "the reply", id="GenAI output messages"),
])
def test_reply_text(payload: str, reply: str) -> None:
    assert reply_text(payload) == reply


def test_system_prompt() -> None:
    assert system_text(json.dumps(HISTORY)) == "be brief"
    assert system_text(json.dumps(GENAI_HISTORY)) == "be brief"
    assert system_text("plain text") is None
    assert instructions_text(json.dumps([{"type": "text", "content": "be brief"}])) == "be brief"
    assert instructions_text("be brief") == "be brief"


def test_flattened_messages() -> None:
    """OpenInference's flattened form, in index order (10 after 2), text parts joined."""
    attrs: dict[str, object] = {
        "llm.input_messages.10.message.role": "user",
        "llm.input_messages.10.message.content": "last",
        "llm.input_messages.2.message.role": "user",
        "llm.input_messages.2.message.contents.1.message_content.text": "b",
        "llm.input_messages.2.message.contents.0.message_content.text": "a",
        "llm.input_messages.3.message.role": 5,  # not a string: ignored
        "llm.input_messagesX": "ignored",
    }
    assert flattened_messages(attrs, "llm.input_messages.") == [
        {"role": "user", "content": "a\nb"}, {"role": "user", "content": "last"}]


def test_parse_json_keeps_text() -> None:
    assert parse_json("12") == "12"
    assert parse_json('{"a": 1}') == {"a": 1}
