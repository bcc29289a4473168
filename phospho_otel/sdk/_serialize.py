"""Turning app values into span attribute values. Never raises on odd values.

The text rule (``to_text``), for ``input.value`` / ``output.value``:

1. a ``str`` is kept as is (``text/plain``);
2. ``bytes`` are decoded as UTF-8, bad bytes replaced (``text/plain``);
3. a chat payload gives its last user message's text (``text/plain``): a list of
   ``{"role", "content"}`` messages, or a mapping with such a list under ``messages``;
   ``content`` may be a string or a list of parts whose ``text`` fields are joined;
4. a chat completion gives its first choice's text (``text/plain``):
   ``choices[0].message.content``, or for a streamed chunk ``choices[0].delta.content``,
   or ``choices[0].text``;
5. anything else is JSON (``application/json``), by the JSON rule below.

Pydantic models, dataclasses and objects are converted to mappings first.

The JSON rule (``to_json``, also for raw payloads and odd metadata values): pydantic
models via ``model_dump()``, dataclasses via ``asdict``, sets and tuples as lists, bytes
decoded as UTF-8, enums by value, datetimes/dates/UUIDs/paths as strings, other objects
by their ``__dict__`` (public fields) or else ``repr()``; non-string keys become strings;
cycles become ``"<cycle>"``. Non-ASCII text is kept as is. A raw payload given as a
string that already is JSON text (``raw_json``) is kept as is.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import uuid
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from phospho_otel.semconv import MimeTypeValues, PhosphoAttributes

__all__ = ["flatten_metadata", "raw_json", "to_json", "to_text"]

TEXT = MimeTypeValues.TEXT.value
JSON = MimeTypeValues.JSON.value
_METADATA_PREFIX = PhosphoAttributes.METADATA_PREFIX
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
_MAX_DEPTH = 64


def _plain(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """``value`` as JSON-compatible data (dict/list/str/int/float/bool/None)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if depth > _MAX_DEPTH:
        return repr(value)
    if id(value) in seen:
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, Mapping):
        return {_key(k): _plain(v, depth + 1, seen) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, enum.Enum):
        return _plain(value.value, depth + 1, seen)
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, PurePath, _dt.timedelta)):
        return str(value)
    if isinstance(value, (list, tuple, set, frozenset)) or (
        isinstance(value, Sequence) and not isinstance(value, str)
    ):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [_plain(v, depth + 1, seen) for v in items]
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        try:
            return _plain(dump(mode="json"), depth + 1, seen)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _plain(fields, depth + 1, seen)
        except Exception:
            pass
    as_dict = getattr(value, "dict", None)  # pydantic v1
    if callable(as_dict) and hasattr(value, "__fields__"):
        try:
            return _plain(as_dict(), depth + 1, seen)
        except Exception:
            pass
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and attrs and not isinstance(value, type):
        public = {k: v for k, v in attrs.items() if not k.startswith("_")}
        if public:
            return _plain(public, depth + 1, seen)
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(_plain(key))


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True)


def to_json(value: Any) -> str:
    """JSON text of any value, by the JSON rule in this module's docstring."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):
        pass
    try:
        return _ENCODER.encode(_plain(value))
    except Exception:  # pragma: no cover - _plain returns JSON-compatible data
        return json.dumps(repr(value), ensure_ascii=False)


def raw_json(value: Any) -> str:
    """A raw payload as JSON text: a string that already is JSON text is kept as is
    (e.g. ``json.dumps(request)``); any other value goes through ``to_json``."""
    if isinstance(value, str):
        try:
            json.loads(value)
            return value
        except ValueError:
            pass
    return to_json(value)


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = [t for part in content if isinstance(t := _get(part, "text"), str)]
        if texts:
            return "\n".join(texts)
    return None


def _chat_text(value: Any) -> str | None:
    """Last user message of a chat payload, or first choice of a completion."""
    messages = value
    if isinstance(value, Mapping) or not isinstance(value, Sequence):
        choices = _get(value, "choices")
        if isinstance(choices, Sequence) and not isinstance(choices, str) and choices:
            first = choices[0]
            for holder in (_get(first, "message"), _get(first, "delta")):
                if holder is not None:
                    text = _content_text(_get(holder, "content"))
                    return text if text is not None else ""
            text = _get(first, "text")
            if isinstance(text, str):
                return text
        messages = _get(value, "messages")
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence) or not messages:
        return None
    if not all(isinstance(_get(m, "role"), str) for m in messages):
        return None
    for message in reversed(messages):
        if _get(message, "role") == "user":
            return _content_text(_get(message, "content"))
    return None


def to_text(value: Any) -> tuple[str, str]:
    """Readable text of a task's input or output and its MIME type (the text rule)."""
    if isinstance(value, str):
        return value, TEXT
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace"), TEXT
    if value is not None and not isinstance(value, (bool, int, float)):
        try:
            text = _chat_text(value)
        except Exception:
            text = None
        if text is not None:
            return text, TEXT
    return to_json(value), JSON


def metadata_value(value: Any) -> Any:
    """A metadata value as an attribute value: str, bool, float and int64 ints keep
    their type; anything else (lists, dicts, None, objects, huge ints) is JSON text."""
    if isinstance(value, (str, bool, float)):
        return value
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return int(value)
    return to_json(value)


def flatten_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"k": v}`` as ``{"phospho.metadata.k": attribute value}``."""
    if not metadata:
        return {}
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"metadata keys must be non-empty str, got {key!r}")
        out[_METADATA_PREFIX + key] = metadata_value(value)
    return out
