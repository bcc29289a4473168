"""The insights configuration: event definitions, the LLM judge, session and user-class
thresholds, webhook delivery. ``load_config(path)`` reads a TOML or YAML file (``serve
--insights PATH``) over the shipped defaults (``defaults.toml``, package data);
``InsightsConfig()`` and ``load_config(None)`` are the defaults.

A file has these sections, each optional (``defaults.toml`` is the commented example)::

    include_defaults = false   # true: the file's events are added to the default events
    [[events]]                 # EventDefinition fields (insights.events)
    [judge]                    # LLMSettings: url and model required; off when absent
    [sessions]                 # SessionSettings
    [classes]                  # ClassSettings
    [webhooks]                 # WebhookSettings
    [prices]                   # "model" = { input = USD per 1M tokens, output = ... }

Merging: a file's ``events`` **replace** the default events unless it says
``include_defaults = true`` (then the defaults come first and an event of the file with
the name of a default replaces it); a file without ``events`` keeps the defaults. The keys
of ``sessions``, ``classes`` and ``webhooks`` override the defaults one by one. ``judge``
is never on by default. In TOML, ``api_key_env = ""`` means no key is sent (YAML: null).
``prices`` are merged over the shipped price table (``insights/prices.toml``) model by
model: a model of the file replaces the default's price, others are added.

A file that cannot be used raises ``phospho_otel.errors.ConfigurationError`` naming the
file and the key: an unknown key, a wrong type, a bad regex or scope, a python callable
that cannot be imported, a threshold out of range.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from phospho_otel.errors import ConfigurationError
from phospho_otel.insights.events import EventDefinition, EventDetector, import_callable
from phospho_otel.insights.prices import PriceError, PriceTable, default_prices, parse_prices

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

__all__ = [
    "ClassSettings",
    "InsightsConfig",
    "LLMSettings",
    "SessionSettings",
    "WebhookSettings",
    "default_events",
    "load_config",
]


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """An OpenAI-compatible chat-completions endpoint (the LLM judge, LLM-question events).
    Never called unless configured."""

    url: str
    """Base URL, e.g. ``https://api.openai.com/v1`` (``/chat/completions`` is appended)."""
    model: str
    api_key_env: str | None = "PHOSPHO_JUDGE_API_KEY"
    """Name of the environment variable holding the API key (None: no key sent)."""
    timeout_s: float = 30.0
    max_concurrency: int = 4
    max_retries: int = 2
    """Retries of one call after the first attempt (timeouts, 429, 5xx, refused)."""
    retry_later_s: float = 60.0
    """When the endpoint is down, how long before the analyzer tries pending tasks again."""


@dataclass(frozen=True, slots=True)
class SessionSettings:
    """When sessions end and how their active time is counted (``insights.endings``)."""

    inactivity_timeout_s: float = 1800.0
    """A session with no task for this long is ``ended`` (default 30 minutes)."""
    idle_gap_s: float = 300.0
    """Gaps between tasks count towards ``active_duration_s`` up to this (default 5 min)."""


@dataclass(frozen=True, slots=True)
class ClassSettings:
    """Thresholds of the user classes (``insights.classes``)."""

    window_days: float = 7.0
    """The window ``power`` is measured over, ending at the latest activity in the store."""
    power_top_share: float = 0.05
    """``power``: in the top share of users by tasks, sessions or active days..."""
    power_min_tasks: int = 10
    """...with at least this many tasks in the window."""
    struggling_min_tasks: int = 5
    """``struggling``: at least this many evaluated tasks..."""
    struggling_failure_share: float = 0.4
    """...and at least this share of them failures, or sessions ending after failure, or
    repeated rephrasing."""
    struggling_min_rephrases: int = 3
    abusive_min_events: int = 1
    """``abusive``: at least this many abuse or prompt-injection events."""
    abusive_events: tuple[str, ...] = ("abuse", "prompt_injection")
    dormant_days: float = 14.0
    """``dormant``: was active, silent for this many days before the latest activity."""
    new_days: float = 7.0
    """``new``: first seen within this many days of the latest activity."""


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """How event webhooks are delivered (``insights.webhooks.WebhookSender``, whose
    arguments have these names)."""

    max_queue: int = 10_000
    """Deliveries waiting at most; more are dropped (counted, warned about)."""
    timeout_s: float = 5.0
    """Per request."""
    max_attempts: int = 5
    """Attempts per delivery (connection errors, 5xx and 429 are retried)."""
    backoff_s: float = 0.5
    """Wait before the second attempt, doubling after each."""


def default_events() -> tuple[EventDefinition, ...]:
    """The shipped event definitions (``defaults.toml``)."""
    return _defaults().events


@dataclass(frozen=True)
class InsightsConfig:
    """Everything the analyzer is configured with."""

    events: tuple[EventDefinition, ...] = field(default_factory=default_events)
    judge: LLMSettings | None = None
    sessions: SessionSettings = field(default_factory=SessionSettings)
    classes: ClassSettings = field(default_factory=ClassSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    prices: PriceTable = field(default_factory=default_prices)
    """What an LLM call costs when its span reports tokens but no cost
    (``insights.prices``)."""


# -- loading ---------------------------------------------------------------------------

_TOP_KEYS = ("include_defaults", "events", "judge", "sessions", "classes", "webhooks",
             "prices")
_SECTIONS: dict[str, type[Any]] = {
    "judge": LLMSettings, "sessions": SessionSettings, "classes": ClassSettings,
    "webhooks": WebhookSettings,
}
_EVENT_KEYS = tuple(f.name for f in dataclasses.fields(EventDefinition) if f.init)
_AT_LEAST_ZERO = frozenset({"max_retries", "backoff_s"})
"""Numeric settings that may be 0; every other must be positive."""
_SHARES = frozenset({"power_top_share", "struggling_failure_share"})
"""Numeric settings that are shares: at most 1."""
_AT_LEAST_ONE = frozenset({"max_concurrency", "max_attempts", "max_queue", "abusive_min_events",
                           "power_min_tasks", "struggling_min_tasks",
                           "struggling_min_rephrases"})

S = TypeVar("S")


class _Problem(Exception):
    """A problem at a key, raised inside the loader and reported with the file's name."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message


def _type_name(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _check_number(key: str, value: object, *, integer: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise _Problem(key, f"must be {'an integer' if integer else 'a number'}, got "
                            f"{_type_name(value)} ({value!r})")
    name = key.rsplit(".", 1)[-1]
    if math.isnan(value) or math.isinf(value):
        raise _Problem(key, f"must be finite, got {value!r}")
    if name in _AT_LEAST_ZERO:
        if value < 0:
            raise _Problem(key, f"must be 0 or more, got {value!r}")
    elif name in _AT_LEAST_ONE:
        if value < 1:
            raise _Problem(key, f"must be 1 or more, got {value!r}")
    elif value <= 0:
        raise _Problem(key, f"must be positive, got {value!r}")
    if name in _SHARES and value > 1:
        raise _Problem(key, f"is a share: must be at most 1, got {value!r}")
    return value


def _settings(cls: type[S], section: str, table: object, base: S | None) -> S:
    """``cls`` (a settings dataclass) from ``table``, over ``base`` (None: no defaults)."""
    if not isinstance(table, Mapping):
        raise _Problem(section, f"must be a table, got {_type_name(table)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for name, value in table.items():
        key = f"{section}.{name}"
        f = fields.get(name)
        if f is None:
            raise _Problem(key, f"unknown key (known: {', '.join(fields)})")
        kind = str(f.type)
        if kind == "float":
            values[name] = float(_check_number(key, value, integer=False))
        elif kind == "int":
            values[name] = int(_check_number(key, value, integer=True))
        elif kind == "str":
            if not isinstance(value, str) or not value.strip():
                raise _Problem(key, f"must be a non-empty string, got {_type_name(value)}")
            values[name] = value
        elif kind == "str | None":
            if value is not None and not isinstance(value, str):
                raise _Problem(key, f"must be a string, got {_type_name(value)}")
            values[name] = value or None
        elif kind == "tuple[str, ...]":
            if not isinstance(value, list) or not all(
                    isinstance(v, str) and v for v in value):
                raise _Problem(key, "must be a list of non-empty strings")
            values[name] = tuple(value)
        else:  # pragma: no cover - a settings field of a type not handled here
            raise AssertionError(f"{cls.__name__}.{name}: unhandled type {kind}")
    if base is None:
        missing = [n for n, f in fields.items() if n not in values
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if missing:
            raise _Problem(f"{section}.{missing[0]}", "is required")
        return cls(**values)
    return dataclasses.replace(base, **values)  # type: ignore[type-var]


def _event(index: int, table: object) -> EventDefinition:
    where = f"events[{index}]"
    if not isinstance(table, Mapping):
        raise _Problem(where, f"must be a table, got {_type_name(table)}")
    name = table.get("name")
    if isinstance(name, str):
        where = f"events[{index}] ({name})"
    for key in table:
        if key not in _EVENT_KEYS:
            raise _Problem(f"{where}.{key}", f"unknown key (known: {', '.join(_EVENT_KEYS)})")
    if "name" not in table or "scope" not in table:
        raise _Problem(where, "needs a name and a scope")
    values = dict(table)
    if "keywords" in values:
        keywords = values["keywords"]
        if not isinstance(keywords, list) or not keywords:
            raise _Problem(f"{where}.keywords", "must be a non-empty list of strings")
        values["keywords"] = tuple(keywords)
    for key in ("name", "scope", "regex", "llm_question", "python", "description",
                "webhook"):
        if key in values and not isinstance(values[key], str):
            raise _Problem(f"{where}.{key}", f"must be a string, got {_type_name(values[key])}")
    try:
        definition = EventDefinition(**values)
    except ValueError as exc:
        raise _Problem(where, str(exc)) from None
    if definition.python is not None:
        try:
            import_callable(definition.python)
        except ValueError as exc:
            raise _Problem(f"{where}.python", str(exc)) from None
    return definition


def _events(value: object) -> tuple[EventDefinition, ...]:
    if not isinstance(value, list):
        raise _Problem("events", f"must be a list of tables, got {_type_name(value)}")
    return tuple(_event(i, table) for i, table in enumerate(value))


def _merge(data: object, base: InsightsConfig | None) -> InsightsConfig:
    """The configuration ``data`` (a parsed file) says, over ``base`` (None: ``data`` is
    the defaults file itself)."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise _Problem("(top level)", f"must be a table of sections, got {_type_name(data)}")
    for key in data:
        if key not in _TOP_KEYS:
            raise _Problem(str(key), f"unknown key (known: {', '.join(_TOP_KEYS)})")
    include = data.get("include_defaults", False)
    if not isinstance(include, bool):
        raise _Problem("include_defaults", f"must be true or false, got {_type_name(include)}")
    events: tuple[EventDefinition, ...] = () if base is None else base.events
    if "events" in data:
        own = _events(data["events"])
        if include and base is not None:
            names = {d.name for d in own}
            events = tuple(d for d in base.events if d.name not in names) + own
        else:
            events = own
    seen: set[str] = set()
    for i, d in enumerate(events):
        if d.name in seen:
            raise _Problem(f"events[{i}] ({d.name})", "an event of this name is defined twice")
        seen.add(d.name)
    try:
        EventDetector(events)
    except ValueError as exc:  # pragma: no cover - every definition was checked above
        raise _Problem("events", str(exc)) from None
    judge = base.judge if base is not None else None
    if "judge" in data:
        judge = _settings(LLMSettings, "judge", data["judge"], None)
    prices = base.prices if base is not None else default_prices()
    if "prices" in data:
        try:
            prices = prices.merged(parse_prices(data["prices"]))
        except PriceError as exc:
            raise _Problem(exc.key, exc.message) from None
    return InsightsConfig(
        events=events,
        judge=judge,
        sessions=_settings(SessionSettings, "sessions", data.get("sessions", {}),
                           base.sessions if base else SessionSettings()),
        classes=_settings(ClassSettings, "classes", data.get("classes", {}),
                          base.classes if base else ClassSettings()),
        webhooks=_settings(WebhookSettings, "webhooks", data.get("webhooks", {}),
                           base.webhooks if base else WebhookSettings()),
        prices=prices,
    )


def _parse(text: str, name: str, suffix: str) -> object:
    if suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"insights config {name}: not valid TOML: {exc}") from None
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml is a dependency
        raise ConfigurationError(
            f"insights config {name}: reading YAML needs PyYAML (pip install pyyaml)") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigurationError(f"insights config {name}: not valid YAML: {exc}") from None


@functools.lru_cache(maxsize=1)
def _defaults() -> InsightsConfig:
    text = resources.files("phospho_otel.insights").joinpath("defaults.toml").read_text(
        encoding="utf-8")
    try:
        return _merge(_parse(text, "defaults.toml", ".toml"), None)
    except _Problem as problem:  # pragma: no cover - tests load the shipped file
        raise ConfigurationError(
            f"insights defaults.toml: {problem.key}: {problem.message}") from None


def load_config(path: str | os.PathLike[str] | None) -> InsightsConfig:
    """The configuration in the TOML (``.toml``) or YAML (``.yaml``, ``.yml``) file at
    ``path``, over the defaults; the defaults when ``path`` is None. Raises
    ``ConfigurationError`` naming the file and key of what cannot be used."""
    if path is None:
        return _defaults()
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigurationError(
            f"insights config {p}: unknown format {suffix or '(no extension)'!r}: use a "
            f".toml, .yaml or .yml file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"insights config {p}: cannot read it: {exc}") from None
    data = _parse(text, str(p), ".toml" if suffix == ".toml" else ".yaml")
    try:
        return _merge(data, _defaults())
    except _Problem as problem:
        raise ConfigurationError(f"insights config {p}: {problem.key}: {problem.message}") \
            from None
