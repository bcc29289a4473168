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
cycles become ``"<cycle>"`` (``CYCLE``). Non-ASCII text is kept as is. A raw payload given
as a string that already is JSON text (``raw_json``) is kept as is.

Nesting: JSON text made here is at most ``MAX_DEPTH`` (64) arrays/objects deep. A part
nested deeper is replaced by the string ``TOO_DEEP`` (one warning per process); a raw
payload string that is JSON nested deeper is sent as a JSON string holding that text
(nothing is lost). So ``log()``/``task()`` never raise ``RecursionError`` for a deep or
cyclic value, and the aggregator's views, which parse these texts, always can (64 is
far below the depth Python's ``json`` parses inside a server's call stack, about 900).

Text that is not valid Unicode (lone surrogates, e.g. from ``surrogateescape``) is kept
as is here: the encoder (``_encode``) replaces each with U+FFFD when it writes UTF-8.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import PurePath
from typing import Any

from phospho_otel.sdk._once import warn_once
from phospho_otel.semconv import MimeTypeValues, PhosphoAttributes

__all__ = ["CYCLE", "MAX_DEPTH", "TOO_DEEP", "flatten_metadata", "raw_json", "to_json",
           "to_text"]

logger = logging.getLogger(__name__)

TEXT = MimeTypeValues.TEXT.value
JSON = MimeTypeValues.JSON.value
_METADATA_PREFIX = PhosphoAttributes.METADATA_PREFIX
_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1
MAX_DEPTH = 64
"""Arrays/objects nested deeper than this in JSON text made by the SDK are cut."""
TOO_DEEP = f"<nested deeper than {MAX_DEPTH} levels>"
"""What a part of a value nested deeper than ``MAX_DEPTH`` becomes."""
CYCLE = "<cycle>"
"""What a value becomes where it contains itself."""
_CONTAINERS = (dict, list, tuple)  # what the C JSON encoder nests


def _warn_too_deep() -> None:
    warn_once(logger, "too-deep", "phospho: a value nested deeper than %d levels was cut; "
              "its deeper part is sent as %r (warned once per process)", MAX_DEPTH, TOO_DEEP)


def _nested_deeper(value: Any, room: int) -> bool:
    """True if ``value`` (dicts, lists and tuples, as the C JSON encoder accepts them)
    nests more than ``room`` levels. Recurses at most ``room`` levels."""
    if room <= 0:
        return True
    room -= 1
    for item in value.values() if isinstance(value, dict) else value:
        if isinstance(item, _CONTAINERS) and _nested_deeper(item, room):
            return True
    return False


_SHORT = 2 * MAX_DEPTH + 1
"""JSON text this short cannot nest deeper than ``MAX_DEPTH`` (that takes more pairs of
brackets): the check costs one ``len()`` for most values."""


def _too_deep(value: Any, text: str) -> bool:
    """Whether the JSON ``text`` of ``value`` (longer than ``_SHORT``) nests deeper than
    ``MAX_DEPTH``: only when the text holds more brackets than that (rare) is ``value``
    walked."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    return isinstance(value, _CONTAINERS) and _nested_deeper(value, MAX_DEPTH)


def _ordered(items: set[Any] | frozenset[Any]) -> list[Any]:
    """A set's items in a stable order (by ``repr``), or as they come if that fails."""
    try:
        return sorted(items, key=repr)
    except Exception:  # a repr() that raises, or recurses too deep
        return list(items)


def _plain(value: Any, depth: int = 0, seen: frozenset[int] = frozenset()) -> Any:
    """``value`` as JSON-compatible data (dict/list/str/int/float/bool/None), at most
    ``MAX_DEPTH - depth`` arrays/objects deep (deeper parts become ``TOO_DEEP``), cycles
    as ``CYCLE``. ``depth``: arrays/objects around ``value``; a conversion (model,
    dataclass, object, enum) stands where the value stood, at the same depth."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if id(value) in seen:
        return CYCLE
    if isinstance(value, Mapping):
        if depth >= MAX_DEPTH:
            _warn_too_deep()
            return TOO_DEEP
        seen = seen | {id(value)}
        return {_key(k): _plain(v, depth + 1, seen) for k, v in value.items()}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, PurePath, _dt.timedelta)):
        return str(value)
    seen = seen | {id(value)}
    if isinstance(value, enum.Enum):
        return _plain(value.value, depth, seen)
    if isinstance(value, (list, tuple, set, frozenset)) or (
        isinstance(value, Sequence) and not isinstance(value, str)
    ):
        if depth >= MAX_DEPTH:
            _warn_too_deep()
            return TOO_DEEP
        items = _ordered(value) if isinstance(value, (set, frozenset)) else value
        return [_plain(v, depth + 1, seen) for v in items]
    dump = getattr(value, "model_dump", None)  # pydantic v2
    if callable(dump):
        try:
            return _plain(dump(mode="json"), depth, seen)
        except Exception:
            pass
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        try:
            fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
            return _plain(fields, depth, seen)
        except Exception:
            pass
    as_dict = getattr(value, "dict", None)  # pydantic v1
    if callable(as_dict) and hasattr(value, "__fields__"):
        try:
            return _plain(as_dict(), depth, seen)
        except Exception:
            pass
    attrs = getattr(value, "__dict__", None)
    if isinstance(attrs, dict) and attrs and not isinstance(value, type):
        public = {k: v for k, v in attrs.items() if not k.startswith("_")}
        if public:
            return _plain(public, depth, seen)
    try:
        return repr(value)
    except Exception:  # RecursionError included: a repr() that recurses without end
        return f"<{type(value).__name__}>"


def _key(key: Any) -> str:
    return key if isinstance(key, str) else str(_plain(key))


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=True)


def to_json(value: Any) -> str:
    """JSON text of any value, by the JSON rule in this module's docstring; at most
    ``MAX_DEPTH`` deep. Never raises."""
    try:
        text = _ENCODER.encode(value)
    except (TypeError, ValueError, RecursionError):  # odd types, cycles, very deep
        pass
    else:
        if len(text) <= _SHORT or not _too_deep(value, text):
            return text
    try:
        return _ENCODER.encode(_plain(value))
    except RecursionError:  # the app's own stack was nearly full already
        _warn_too_deep()
        return _ENCODER.encode(TOO_DEEP)
    except Exception:  # pragma: no cover - _plain returns JSON-compatible data
        return _ENCODER.encode(f"<{type(value).__name__}>")


def raw_json(value: Any) -> str:
    """A raw payload as JSON text: a string that already is JSON text (e.g.
    ``json.dumps(request)``) is kept as is, unless it nests deeper than ``MAX_DEPTH``
    (then it is sent as a JSON string holding it); any other value goes through
    ``to_json``."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except (ValueError, RecursionError):  # not JSON, or nested beyond json's reach
            pass
        else:
            if len(value) <= _SHORT or not _too_deep(parsed, value):
                return value
        return _ENCODER.encode(value)
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
