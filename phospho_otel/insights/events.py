"""Event detection: declarative ``EventDefinition``s, and the ``EventDetector`` that runs
them over tasks and sessions.

A definition has a name, a scope (``EVENT_SCOPES``: ``input``, ``output``, ``task`` = input
or output, ``system_prompt``, ``session`` = every input and output of the session) and
exactly one way to detect it:

* ``keywords``: words or phrases, matched as whole words (a keyword starting or ending with
  a letter, digit or ``_`` needs a non-word character or the text's end beside it:
  ``bye`` is not in ``maybe``; ``??`` is anywhere); a space in a keyword matches any run
  of whitespace;
* ``regex``: a Python regular expression, *searched* (anywhere in the text);
* ``python``: ``"module:function"``, called with the ``TaskContext`` (scope ``session``:
  the session's ``TaskRecord``s, oldest first) and returning ``bool | float | None``;
* ``llm_question``: a yes/no question put to the LLM endpoint (``[judge]``) about the
  scoped text. The detector does not call it: ``llm_definitions()`` lists them, and the
  analyzer asks them with ``llm_event_messages`` and reads the answer with
  ``parse_llm_event_answer`` when an endpoint is configured.

A keywords or regex definition may also have ``unless``, a regex matched the same way: a
detection is dropped when ``unless`` is also found in the same text (the shipped ``thanks``
does not fire on "thanks for nothing" or "another useless answer. Thanks a lot.").

Keywords and regexes are case-insensitive in one way: they are matched in the text
lowercased (``str.lower()``, with U+2019 read as ``'``), and a keyword is lowercased too;
so a regex is written in lowercase (``\\S``, ``\\W``, ``\\B``... keep their meaning). A
regex written over several lines (a TOML ``'''`` string) loses its line breaks and the
whitespace at the start and end of each line. A keyword or regex detection scores 1.0. A
python or llm detection scores what it says (``True``: 1.0) and counts from ``min_score``
(default 0.5). A python callable that raises is logged (one warning per definition) and
taken as no detection.

Speed: the keyword and regex definitions reading the same text are also compiled into a
few screening searches, run first (most texts match no definition): their top-level
alternatives that start with ``\\b`` under one ``\\b`` and grouped by their first letter
(the regex engine then skips most alternatives in a few ns), and each other alternative on
its own. Only when a screen matches is each definition searched, from where it matched.
Regexes using backreferences, named groups or global flags are not screened (always
searched). On the shipped defaults (``defaults.toml``) a 30-word task (input and output)
takes ~20-30 µs with no event and ~30-70 µs with events (warm, CPU time on the project's
busy 2-core machine; ~100-160 µs with one search per definition); the labelled set's tasks
(``tests/insights/data``, 25 words on average) ~20-30 µs.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from phospho_otel.insights.context import TaskContext
from phospho_otel.model.analysis import EVENT_SCOPES, DetectedEvent
from phospho_otel.model.records import TaskRecord

__all__ = [
    "EVENT_KINDS",
    "MAX_LLM_TEXT_CHARS",
    "EventDefinition",
    "EventDetector",
    "import_callable",
    "keywords_pattern",
    "llm_event_messages",
    "normalize_text",
    "parse_llm_event_answer",
]

logger = logging.getLogger(__name__)

EVENT_KINDS = ("keywords", "regex", "llm", "python")
"""``EventDefinition.kind`` values, also ``DetectedEvent.source``."""
MAX_LLM_TEXT_CHARS = 4000
"""Each text quoted to the LLM is cut to this many characters."""

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}\Z")
_PYTHON_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*\Z")
_TEXT_SCOPES = ("input", "output", "task", "system_prompt")


def normalize_text(text: str) -> str:
    """What keywords and regexes are matched in: ``text`` lowercased, U+2019 as ``'``."""
    return text.lower().replace("\u2019", "'")


def keywords_pattern(keywords: Iterable[str]) -> str:
    """One regular expression matching any of ``keywords`` (lowercased) as a whole word
    or phrase, in ``normalize_text`` text."""
    parts = []
    for keyword in sorted({normalize_text(k.strip()) for k in keywords}, key=len, reverse=True):
        body = r"\s+".join(re.escape(word) for word in keyword.split())
        start = r"\b" if re.match(r"\w", keyword) else ""
        end = r"\b" if re.search(r"\w\Z", keyword) else ""
        parts.append(f"{start}{body}{end}")
    return "|".join(parts)


def _join_lines(regex: str) -> str:
    if "\n" not in regex:
        return regex
    return "".join(line.strip() for line in regex.splitlines())


def import_callable(path: str) -> Callable[..., Any]:
    """The callable named by ``"module:attribute"`` (``attribute`` may be dotted), or a
    ``ValueError`` saying why not."""
    if not _PYTHON_PATH.match(path):
        raise ValueError(f"python must be 'module:function', got {path!r}")
    module_name, _, attr_path = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ValueError(f"cannot import module {module_name!r} of {path!r}: {exc}") from exc
    for attr in attr_path.split("."):
        try:
            obj = getattr(obj, attr)
        except AttributeError:
            raise ValueError(f"{path!r}: {module_name!r} has no attribute {attr_path!r}") \
                from None
    if not callable(obj):
        raise ValueError(f"{path!r} is not callable")
    return obj  # type: ignore[no-any-return]


@dataclass(frozen=True)
class EventDefinition:
    """One kind of event to detect, where (``scope``), and how: exactly one of
    ``keywords``, ``regex``, ``llm_question``, ``python`` (see the module docstring)."""

    name: str
    scope: str
    """One of ``EVENT_SCOPES``."""
    keywords: tuple[str, ...] = ()
    regex: str | None = None
    llm_question: str | None = None
    """A yes/no question about the scoped text, e.g. "Does the user ask for a refund?"."""
    python: str | None = None
    """``"module:function"``."""
    description: str = ""
    webhook: str | None = None
    """A URL each detection is POSTed to (JSON), by ``insights.webhooks.WebhookSender``."""
    min_score: float = 0.5
    """The score a python or llm detection needs to count (keywords and regexes: 1.0)."""
    unless: str | None = None
    """A regex, matched as ``regex`` is: a keywords or regex detection is dropped when it
    is also found in the same text (``thanks`` unless "thanks for nothing")."""
    _pattern: re.Pattern[str] | None = field(default=None, init=False, repr=False,
                                             compare=False)
    _unless: re.Pattern[str] | None = field(default=None, init=False, repr=False,
                                            compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"event name must be 1 to 64 letters, digits, '_', '-' or '.' (not starting "
                f"with '-' or '.'), got {self.name!r}")
        where = f"event {self.name!r}"
        if self.scope not in EVENT_SCOPES:
            raise ValueError(f"{where}: scope must be one of {', '.join(EVENT_SCOPES)}, "
                             f"got {self.scope!r}")
        given: object = self.keywords
        if not isinstance(given, (tuple, list)):
            raise ValueError(f"{where}: keywords must be a list of strings, "
                             f"got {type(given).__name__}")
        keywords = tuple(given)
        for keyword in keywords:
            if not isinstance(keyword, str) or not keyword.strip():
                raise ValueError(f"{where}: keywords must be non-empty strings, got "
                                 f"{keyword!r}")
        object.__setattr__(self, "keywords", keywords)
        for key in ("regex", "llm_question", "python", "webhook", "unless"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ValueError(f"{where}: {key} must be a non-empty string, got {value!r}")
        if not isinstance(self.description, str):
            raise ValueError(f"{where}: description must be a string")
        kinds = [kind for kind, given in zip(
            EVENT_KINDS, (keywords, self.regex, self.llm_question, self.python), strict=True)
            if given]
        if len(kinds) != 1:
            raise ValueError(
                f"{where}: give exactly one of keywords, regex, llm_question, python "
                f"(got {', '.join(kinds) if kinds else 'none'})")
        if self.regex is not None:
            object.__setattr__(self, "regex", _join_lines(self.regex))
        source = keywords_pattern(keywords) if keywords else self.regex
        if source is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(source))
            except re.error as exc:
                raise ValueError(f"{where}: bad regex: {exc}") from None
        if self.unless is not None:
            if source is None:
                raise ValueError(f"{where}: unless needs keywords or a regex")
            unless = _join_lines(self.unless)
            object.__setattr__(self, "unless", unless)
            try:
                object.__setattr__(self, "_unless", re.compile(unless))
            except re.error as exc:
                raise ValueError(f"{where}: bad unless regex: {exc}") from None
        if self.python is not None and not _PYTHON_PATH.match(self.python):
            raise ValueError(f"{where}: python must be 'module:function', got {self.python!r}")
        if self.webhook is not None and not re.match(r"https?://[^\s/]+", self.webhook):
            raise ValueError(f"{where}: webhook must be an http:// or https:// URL, got "
                             f"{self.webhook!r}")
        if (isinstance(self.min_score, bool) or not isinstance(self.min_score, (int, float))
                or not 0 < self.min_score <= 1):
            raise ValueError(f"{where}: min_score must be a number in (0, 1], got "
                             f"{self.min_score!r}")

    @property
    def kind(self) -> str:
        """How it is detected: one of ``EVENT_KINDS``."""
        if self.keywords:
            return "keywords"
        if self.regex is not None:
            return "regex"
        if self.llm_question is not None:
            return "llm"
        return "python"

    @property
    def pattern(self) -> re.Pattern[str] | None:
        """The compiled keywords or regex (matched in ``normalize_text`` text)."""
        return self._pattern

    @property
    def unless_pattern(self) -> re.Pattern[str] | None:
        """The compiled ``unless`` regex."""
        return self._unless

    def matches(self, text: str) -> bool:
        """Whether the keywords or regex are found in ``text`` (``normalize_text``-ed) and
        ``unless`` is not; False for the other kinds."""
        if self._pattern is None or self._pattern.search(text) is None:
            return False
        return self._unless is None or self._unless.search(text) is None


def _score(value: object) -> float:
    """A python detector's answer as a score: bool/None/number -> 0..1."""
    if value is None or value is False:
        return 0.0
    if value is True:
        return 1.0
    if isinstance(value, (int, float)):
        score = float(value)
        if math.isnan(score):
            return 0.0
        return min(max(score, 0.0), 1.0)
    return 1.0 if value else 0.0


_Search = Callable[..., "re.Match[str] | None"]
"""``re.Pattern.search``: ``(text[, pos])``."""
_BACKREFERENCE = re.compile(r"\\[1-9]|\(\?P=|\(\?\(")
_GLOBAL_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def _combinable(pattern: re.Pattern[str]) -> bool:
    """Whether ``pattern`` means the same inside a larger alternation (no groups referred
    to by number or name, no global flags)."""
    return (not pattern.groupindex and not _BACKREFERENCE.search(pattern.pattern)
            and not _GLOBAL_FLAGS.search(pattern.pattern))


def _top_level_alternatives(source: str) -> list[str] | None:
    """``source`` split at its top-level ``|``; None if it does not parse as expected
    (unbalanced parentheses or brackets)."""
    parts: list[str] = []
    depth = 0
    start = 0
    i = 0
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":  # a class: up to its closing ], which may come first (after ^)
            i += 1
            if i < n and source[i] == "^":
                i += 1
            if i < n and source[i] == "]":
                i += 1
            while i < n and source[i] != "]":
                i += 2 if source[i] == "\\" else 1
            if i >= n:
                return None
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                return None
        elif c == "|" and depth == 0:
            parts.append(source[start:i])
            start = i + 1
        i += 1
    if depth != 0 or i > n:
        return None
    parts.append(source[start:])
    return parts


def _group_end(source: str, start: int) -> int | None:
    """The index of the ``)`` closing the group opened at ``source[start]``."""
    depth = 0
    i = start
    n = len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i += 1
            if i < n and source[i] == "^":
                i += 1
            if i < n and source[i] == "]":
                i += 1
            while i < n and source[i] != "]":
                i += 2 if source[i] == "\\" else 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


_QUANTIFIERS = frozenset("?*+{")
_MAX_EXPANSION = 400


def _by_first_char(alternative: str, budget: list[int]) -> list[tuple[str, str]] | None:
    """``alternative`` as ``(first character, rest)`` pairs, one of which matches wherever
    it matches (``(?:ab|cd)e`` -> ``a``+``be``, ``c``+``de``); None when its first
    character is not a plain literal in every branch."""
    if not alternative:
        return None
    first = alternative[0]
    if first.isalnum() and alternative[1:2] not in _QUANTIFIERS:
        budget[0] -= 1
        return [(first, alternative[1:])] if budget[0] >= 0 else None
    if not alternative.startswith("(?:"):
        return None
    end = _group_end(alternative, 0)
    if end is None:
        return None
    rest = alternative[end + 1:]
    if rest[:1] and rest[0] in _QUANTIFIERS:
        return None
    branches = _top_level_alternatives(alternative[3:end])
    if branches is None:
        return None
    pairs: list[tuple[str, str]] = []
    for branch in branches:
        found = _by_first_char(branch + rest, budget)
        if found is None:
            return None
        pairs.extend(found)
    return pairs


def _at_edge(alternatives: Sequence[str]) -> str:
    """``\\b(?:alternatives)`` with those whose first character is known grouped by it:
    the engine skips a group whose character is not the text's in a few ns, where it
    would enter each alternative."""
    by_char: dict[str, list[str]] = {}
    others: list[str] = []
    pending = list(alternatives)
    while pending:
        alternative = pending.pop(0)
        if alternative.startswith("(?:") and _group_end(alternative, 0) == len(alternative) - 1:
            branches = _top_level_alternatives(alternative[3:-1])
            if branches is not None and all(branches):  # (?:x|y) alone: x and y
                pending[:0] = branches
                continue
        pairs = _by_first_char(alternative, [_MAX_EXPANSION])
        if pairs is None:
            others.append(alternative)
            continue
        for char, rest in pairs:
            by_char.setdefault(char, []).append(rest)
    grouped = [f"{char}(?:{_prefix_tree(rests, _TREE_DEPTH - 1)})"
               for char, rests in by_char.items()]
    return f"\\b(?:{'|'.join(grouped + others)})"


_TREE_DEPTH = 3
"""How many leading characters ``_at_edge`` groups alternatives by."""


def _prefix_tree(alternatives: Sequence[str], depth: int) -> str:
    """``alternatives`` joined with ``|``, those whose next character is known grouped by
    it (down ``depth`` more characters): ``his|hat|ey`` -> ``h(?:is|at)|e(?:y)``."""
    unique = list(dict.fromkeys(alternatives))
    if depth <= 0 or len(unique) < 2:
        return "|".join(unique)
    by_char: dict[str, list[str]] = {}
    others: list[str] = []
    for alternative in unique:
        pairs = _by_first_char(alternative, [_MAX_EXPANSION])
        if pairs is None:
            others.append(alternative)
            continue
        for char, rest in pairs:
            by_char.setdefault(char, []).append(rest)
    grouped = [f"{char}(?:{_prefix_tree(rests, depth - 1)})" for char, rests in by_char.items()]
    return "|".join(grouped + others)


def _screens(patterns: Sequence[re.Pattern[str]]) -> list[_Search]:
    """Searches of which one matches wherever any of ``patterns`` (combinable) matches:
    the top-level alternatives that start with a word boundary under one ``\\b`` (the
    engine tries them at word edges only; see ``_at_edge``), and each other alternative
    on its own (one starting with a literal is scanned for in C; inside a larger
    alternation it would not be). Which alternative matches first does not matter: only
    whether one matches, and where the first match starts."""
    at_edge: list[str] = []
    others: list[str] = []
    for pattern in patterns:
        alternatives = _top_level_alternatives(pattern.pattern)
        if alternatives is None:
            others.append(pattern.pattern)
            continue
        for alternative in alternatives:
            if alternative.startswith("\\b"):
                at_edge.append(alternative[2:])
            else:
                others.append(alternative)
    try:
        sources = ([_at_edge(at_edge)] if at_edge else []) + others
        return [re.compile(source).search for source in dict.fromkeys(sources)]
    except re.error:  # pragma: no cover - each pattern compiled on its own
        return [p.search for p in patterns]


def _any_of(searches: list[_Search]) -> _Search:
    """One search from ``_screens`` of one pattern: the first of their matches."""
    if len(searches) == 1:
        return searches[0]

    def search(text: str, pos: int = 0) -> re.Match[str] | None:
        first: re.Match[str] | None = None
        for s in searches:
            match = s(text, pos)
            if match is not None and (first is None or match.start() < first.start()):
                first = match
        return first

    return search


class _TextGroup:
    """The keyword and regex definitions reading one text, and the alternation of those
    that can be combined, searched first: most texts match none."""

    __slots__ = ("definitions", "has_unless", "others", "screened", "screens")

    def __init__(self, definitions: list[EventDefinition]) -> None:
        self.definitions = definitions
        self.has_unless = any(d.unless_pattern is not None for d in definitions)
        self.screened: list[tuple[EventDefinition, _Search]] = []
        self.others: list[tuple[EventDefinition, _Search]] = []
        patterns = []
        for d in definitions:
            assert d.pattern is not None
            if _combinable(d.pattern):
                self.screened.append((d, _any_of(_screens([d.pattern]))))
                patterns.append(d.pattern)
            else:
                self.others.append((d, d.pattern.search))
        self.screens = _screens(patterns)

    def matches(self, text: str) -> list[EventDefinition]:
        """The definitions matching ``text`` (normalized), in definition order."""
        found: list[EventDefinition] = []
        start = -1
        for screen in self.screens:
            match = screen(text)
            if match is not None and (start < 0 or match.start() < start):
                start = match.start()
        if start >= 0:  # no definition matches before the first match of any
            found.extend(d for d, search in self.screened if search(text, start) is not None)
        if self.others:
            found.extend(d for d, search in self.others if search(text) is not None)
            if len(found) > 1:
                order = {id(d): i for i, d in enumerate(self.definitions)}
                found.sort(key=lambda d: order[id(d)])
        if found and self.has_unless:
            found = [d for d in found if d.unless_pattern is None
                     or d.unless_pattern.search(text) is None]
        return found


class EventDetector:
    """Runs event definitions over tasks (``task_events``) and sessions
    (``session_events``). Compiles everything once; thread-safe."""

    def __init__(self, definitions: Sequence[EventDefinition]) -> None:
        self.definitions: tuple[EventDefinition, ...] = tuple(definitions)
        seen: set[str] = set()
        for d in self.definitions:
            if d.name in seen:
                raise ValueError(f"event {d.name!r} is defined twice")
            seen.add(d.name)
        by_text: dict[str, list[EventDefinition]] = {
            s: [] for s in ("input", "output", "system_prompt", "session")}
        self._python: list[tuple[EventDefinition, Callable[..., Any]]] = []
        self._session_python: list[tuple[EventDefinition, Callable[..., Any]]] = []
        self._llm: list[EventDefinition] = []
        for d in self.definitions:
            if d.pattern is not None:
                for text in (("input", "output") if d.scope == "task" else (d.scope,)):
                    by_text[text].append(d)
            elif d.python is not None:
                fn = import_callable(d.python)
                (self._session_python if d.scope == "session" else self._python).append((d, fn))
            else:
                self._llm.append(d)
        self._input = _TextGroup(by_text["input"])
        self._output = _TextGroup(by_text["output"])
        self._system_prompt = _TextGroup(by_text["system_prompt"])
        self._session = _TextGroup(by_text["session"])
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    def _call(self, definition: EventDefinition, fn: Callable[..., Any],
              arg: object) -> DetectedEvent | None:
        try:
            score = _score(fn(arg))
        except Exception as exc:
            with self._warn_lock:
                first = definition.name not in self._warned
                self._warned.add(definition.name)
            if first:
                logger.warning("event %r: %s raised %s: %s (taken as no detection; not "
                               "logged again)", definition.name, definition.python,
                               type(exc).__name__, exc)
            return None
        if score <= 0 or score < definition.min_score:
            return None
        return DetectedEvent(definition.name, "python", score, definition.scope)

    def task_events(self, ctx: TaskContext) -> list[DetectedEvent]:
        """The keyword, regex and python events of scopes ``task``, ``input``, ``output``
        and ``system_prompt`` found in ``ctx``, in definition order (each at most once)."""
        found: set[str] = set()
        task = ctx.task
        if task.input:
            found.update(d.name for d in self._input.matches(normalize_text(task.input)))
        if task.output:
            found.update(d.name for d in self._output.matches(normalize_text(task.output)))
        if ctx.system_prompt:
            found.update(d.name for d in
                         self._system_prompt.matches(normalize_text(ctx.system_prompt)))
        python: dict[str, DetectedEvent] = {}
        for d, fn in self._python:
            event = self._call(d, fn, ctx)
            if event is not None:
                python[d.name] = event
        if not found and not python:
            return []
        events = []
        for d in self.definitions:
            if d.name in found:
                events.append(DetectedEvent(d.name, d.kind, 1.0, d.scope))
            elif d.name in python:
                events.append(python[d.name])
        return events

    def session_events(self, tasks: Sequence[TaskRecord]) -> list[DetectedEvent]:
        """The keyword, regex and python events of scope ``session`` found in ``tasks``
        (the session's, oldest first): keywords and regexes over every input and output."""
        found: set[str] = set()
        if self._session.definitions:
            remaining = len(self._session.definitions)
            for task in tasks:
                for text in (task.input, task.output):
                    if text:
                        found.update(d.name for d in self._session.matches(normalize_text(text)))
                if len(found) == remaining:
                    break
        python: dict[str, DetectedEvent] = {}
        for d, fn in self._session_python:
            event = self._call(d, fn, tasks)
            if event is not None:
                python[d.name] = event
        events = []
        for d in self.definitions:
            if d.name in found:
                events.append(DetectedEvent(d.name, d.kind, 1.0, d.scope))
            elif d.name in python:
                events.append(python[d.name])
        return events

    def llm_definitions(self) -> list[EventDefinition]:
        """The definitions with an ``llm_question`` (asked by the analyzer when an LLM
        endpoint is configured), in definition order."""
        return list(self._llm)


def _clip(text: str | None) -> str:
    if not text:
        return "(empty)"
    if len(text) > MAX_LLM_TEXT_CHARS:
        return text[:MAX_LLM_TEXT_CHARS] + " [...]"
    return text


_LLM_SYSTEM = (
    "You detect events in the conversations of an LLM application. You are given a yes/no "
    "question and a text from the application. Answer the question about that text only. "
    "Reply with one word, yes or no, then the probability from 0 to 1 that the answer is "
    "yes, e.g. \"yes 0.9\" or \"no 0.2\". Reply nothing else.")


def llm_event_messages(definition: EventDefinition,
                       subject: TaskContext | Sequence[TaskRecord]) -> tuple[str, str]:
    """The (system, user) chat messages asking ``definition.llm_question`` about the text
    of its scope: of ``subject`` a ``TaskContext`` (task scopes) or the session's tasks,
    oldest first (scope ``session``). Each text is cut to ``MAX_LLM_TEXT_CHARS``."""
    if definition.llm_question is None:
        raise ValueError(f"event {definition.name!r} has no llm_question")
    scope = definition.scope
    if isinstance(subject, TaskContext):
        task = subject.task
        if scope == "input":
            body = f"The user's message:\n{_clip(task.input)}"
        elif scope == "output":
            body = f"The application's answer:\n{_clip(task.output)}"
        elif scope == "system_prompt":
            body = f"The application's system prompt:\n{_clip(subject.system_prompt)}"
        else:  # task (or session, given one task)
            body = (f"The user's message:\n{_clip(task.input)}\n\n"
                    f"The application's answer:\n{_clip(task.output)}")
    else:
        turns = [f"Turn {i}.\nUser: {_clip(t.input)}\nApplication: {_clip(t.output)}"
                 for i, t in enumerate(subject, 1)]
        body = "The conversation:\n" + "\n\n".join(turns)
    user = f"Question: {definition.llm_question}\n\n{body}\n\nAnswer (yes or no, probability):"
    return _LLM_SYSTEM, user


_ANSWER = re.compile(r"\b(yes|no|true|false|oui|non|sí|si|ja|nein)\b")
_NUMBER = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?|\.\d+)\s*(%)?")
_YES = frozenset({"yes", "true", "oui", "sí", "si", "ja"})


def parse_llm_event_answer(definition: EventDefinition, text: str | None) -> DetectedEvent | None:
    """The detection an LLM's answer to ``llm_event_messages`` says, or None: "yes" (1.0)
    or "no" (0.0), or the probability of yes it gives (``0.8``, ``80%``), counted from
    ``definition.min_score``. An answer that is neither yes nor no is None."""
    if not text:
        return None
    lowered = text.strip().lower()
    answer = _ANSWER.search(lowered)
    if answer is None:
        return None
    score = 1.0 if answer.group(1) in _YES else 0.0
    number = _NUMBER.search(lowered, answer.end())
    if number is not None:
        value = float(number.group(1))
        if number.group(2):
            value /= 100
        if 0 <= value <= 1:
            score = value
    if score <= 0 or score < definition.min_score:
        return None
    return DetectedEvent(definition.name, "llm", score, definition.scope)
