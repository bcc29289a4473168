"""Readable text out of the payloads other conventions put on spans: the end user's own
words of a turn, the model's reply, and the system prompt. Pure functions, no I/O.

The payloads seen (see ``docs/instrumentations.md``):

* chat message arrays, as JSON text: ``[{"role": "user", "content": "..."}]`` (OpenAI,
  Langfuse) or with parts ``[{"role": "user", "parts": [{"type": "text", "content":
  "..."}]}]`` (OTel GenAI, Traceloop, Logfire); ``content`` may itself be a list of parts
  (``{"type": "text", "text": "..."}``);
* flattened messages (OpenInference ``llm.input_messages.<i>.message.role`` /
  ``.content`` / ``.contents.<j>.message_content.text``; the older GenAI and Traceloop
  ``gen_ai.prompt.<i>.role`` / ``.content``), rebuilt by ``flattened_messages``;
* function calls recorded whole: ``{"args": [...], "kwargs": {...}}`` (Traceloop
  ``@workflow``, Langfuse ``@observe``) or ``{"question": ..., "messages": [...]}``
  (OpenInference ``@chain``): the message array inside, else the first string argument;
* an OpenAI request or response as JSON (``{"messages": [...]}``, ``{"choices":
  [{"message": ...}]}``), a single message object, or a JSON string (``"\\"text\\""``).

``user_text`` / ``reply_text`` return None when they find no text: the caller keeps the
value as it came.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = [
    "ASSISTANT_ROLES",
    "SYSTEM_ROLES",
    "USER_ROLES",
    "first_text",
    "flattened_messages",
    "input_texts",
    "instructions_text",
    "messages_text",
    "parse_json",
    "reply_text",
    "system_text",
    "user_text",
]

_TEXT_KEYS = ("content", "text")
_MAX_DEPTH = 6
"""How deep ``user_text`` / ``reply_text`` look into nested payloads."""


def parse_json(text: str) -> Any:
    """``text`` parsed when it looks like a JSON array, object or string, else ``text``
    itself (plain text stays plain text)."""
    stripped = text.lstrip()
    if not stripped or stripped[0] not in '[{"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _content_text(content: Any) -> str | None:
    """The text of a message's ``content`` or ``parts``: a string, or the text parts of
    a list joined by newlines."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                for key in _TEXT_KEYS:
                    value = part.get(key)
                    if isinstance(value, str):
                        texts.append(value)
                        break
        return "\n".join(texts) if texts else None
    return None


def _message_text(message: dict[str, Any]) -> str | None:
    text = _content_text(message.get("content"))
    if text is None:
        text = _content_text(message.get("parts"))
    return text


def _is_messages(value: Any) -> bool:
    return (isinstance(value, list) and bool(value)
            and all(isinstance(m, dict) and "role" in m for m in value))


def messages_text(messages: list[dict[str, Any]], roles: tuple[str, ...]) -> str | None:
    """The text of the last message with one of ``roles``."""
    for message in reversed(messages):
        if message.get("role") in roles:
            text = _message_text(message)
            if text is not None:
                return text
    return None


USER_ROLES = ("user", "human")
ASSISTANT_ROLES = ("assistant", "ai", "model")
SYSTEM_ROLES = ("system", "developer")


def _find_messages(value: Any, depth: int = 0) -> list[dict[str, Any]] | None:
    """The first message array in ``value``: itself, or inside a call record or request
    (``messages``, ``args``, ``kwargs``, any value of an object, in order)."""
    if depth > _MAX_DEPTH:
        return None
    if _is_messages(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, dict):
        items = [value[k] for k in ("messages", "args", "kwargs") if k in value]
        items += [v for k, v in value.items() if k not in ("messages", "args", "kwargs")]
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        if isinstance(item, (dict, list)):
            found = _find_messages(item, depth + 1)
            if found is not None:
                return found
    return None


def _first_string(value: Any, depth: int = 0) -> str | None:
    """The first string in a call record's arguments (``args`` then ``kwargs``)."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        items = [value[k] for k in ("args", "kwargs") if k in value] or list(value.values())
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        found = _first_string(item, depth + 1)
        if found is not None:
            return found
    return None


def user_text(payload: str) -> str | None:
    """The end user's words in an input payload: the last user message of the message
    array it is or holds, else the message itself, else (a call record) its first
    string argument; a JSON string unquoted; plain text as is. None if none is found."""
    return input_texts(payload)[0]


def input_texts(payload: str) -> tuple[str | None, str | None]:
    """``(user_text(payload), system_text(payload))``, parsing the payload once."""
    value = parse_json(payload)
    if isinstance(value, str):
        return value, None
    messages = _find_messages(value)
    if messages is not None:
        return messages_text(messages, USER_ROLES), first_text(messages, SYSTEM_ROLES)
    if isinstance(value, dict) and "role" in value:
        return _message_text(value), None
    return _first_string(value), None


def reply_text(payload: str) -> str | None:
    """The model's reply in an output payload: a response's first choice, the last
    assistant message of a message array, a message object's text; a JSON string
    unquoted; plain text as is. None if none is found."""
    return _reply(parse_json(payload), 0)


def _reply(value: Any, depth: int) -> str | None:
    if isinstance(value, str):
        return value
    if depth > _MAX_DEPTH:
        return None
    if _is_messages(value):
        return messages_text(value, ASSISTANT_ROLES) or messages_text(value, ("tool",))
    if isinstance(value, dict):
        choices = value.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message") or choice.get("delta")
            if isinstance(message, dict):
                return _message_text(message)
            text = choice.get("text")
            return text if isinstance(text, str) else None
        if "role" in value or "parts" in value:
            return _message_text(value)
        for key in ("output", "text", "content", "answer", "response"):
            if key in value:
                return _reply(value[key], depth + 1)
    return None


def system_text(payload: str) -> str | None:
    """The system prompt in an input payload: the first system message of the message
    array it is or holds (None for plain text)."""
    messages = _find_messages(parse_json(payload))
    return first_text(messages, SYSTEM_ROLES) if messages is not None else None


def instructions_text(payload: str) -> str | None:
    """The text of a system-instructions value (GenAI ``gen_ai.system_instructions``: a
    JSON list of parts, or plain text)."""
    value = parse_json(payload)
    return value if isinstance(value, str) else _content_text(value)


def first_text(messages: list[dict[str, Any]], roles: tuple[str, ...]) -> str | None:
    """The text of the first message with one of ``roles``."""
    for message in messages:
        if message.get("role") in roles:
            text = _message_text(message)
            if text is not None:
                return text
    return None


def flattened_messages(attrs: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    """The messages spelled as flattened attributes under ``prefix``: ``<prefix><i>.``
    then ``message.role`` / ``message.content`` / ``message.contents.<j>.
    message_content.text`` (OpenInference) or ``role`` / ``content`` (``gen_ai.prompt.``).
    Only string values are read; messages come in index order."""
    by_index: dict[int, dict[str, Any]] = {}
    start = len(prefix)
    for key, value in attrs.items():
        if not key.startswith(prefix) or type(value) is not str:
            continue
        index_text, _, field = key[start:].partition(".")
        if not index_text.isdigit():
            continue
        message = by_index.setdefault(int(index_text), {})
        field = field.removeprefix("message.")
        if field in ("role", "content"):
            message[field] = value
        elif field.startswith("contents.") and field.endswith(".message_content.text"):
            part = field.split(".")[1]
            if part.isdigit():
                message.setdefault("_parts", []).append((int(part), value))
    out = []
    for index in sorted(by_index):
        message = by_index[index]
        parts = message.pop("_parts", None)
        if parts and "content" not in message:
            message["content"] = "\n".join(text for _, text in sorted(parts))
        if "role" in message:
            out.append(message)
    return out
