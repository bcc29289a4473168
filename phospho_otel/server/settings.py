"""Settings of the aggregator service, as one table: each field of ``ServerSettings``
carries its environment variable, its ``phospho-otel serve`` flag, its range and its help
(``Setting``, in the field's metadata). ``from_env`` reads them (argument, then
environment variable, then default), ``phospho-otel serve`` builds its options from them,
and ``docs/server.md``'s table is ``settings_markdown()`` (a test keeps it so).

A bad environment value logs one warning and the default is used (``phospho_otel._env``);
a bad argument raises ``ConfigurationError``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phospho_otel._env import env_choice, env_float, env_int, env_str, first_env
from phospho_otel.errors import ConfigurationError

__all__ = [
    "PHOSPHO_STORE",
    "PHOSPHO_TOKEN",
    "PHOSPHO_TOKEN_FILE",
    "PHOSPHO_URL",
    "SQLITE_SYNCHRONOUS_LEVELS",
    "ServerSettings",
    "Setting",
    "read_token_file",
    "settings_markdown",
]

PHOSPHO_STORE = "PHOSPHO_STORE"
PHOSPHO_DB = "PHOSPHO_DB"
PHOSPHO_TOKEN = "PHOSPHO_TOKEN"
PHOSPHO_TOKEN_FILE = "PHOSPHO_TOKEN_FILE"
PHOSPHO_URL = "PHOSPHO_URL"
"""Base URL of a running aggregator, for the CLI's view commands (``--url``)."""
SQLITE_SYNCHRONOUS_LEVELS = ("FULL", "NORMAL", "EXTRA")


@dataclass(frozen=True, slots=True)
class Setting:
    """How one ``ServerSettings`` field is set: environment variables (the first set one
    wins), command-line flags, type, range or choices, and help."""

    env: tuple[str, ...]
    flags: tuple[str, ...]
    kind: type
    help: str
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None
    secret: bool = False
    """Never printed (a token)."""


def _setting(default: Any, env: str | tuple[str, ...], flags: str | tuple[str, ...],
             kind: type, help: str, **rest: Any) -> Any:
    env_names = (env,) if isinstance(env, str) else env
    flag_names = (flags,) if isinstance(flags, str) else flags
    return field(default=default, metadata={"setting": Setting(
        env_names, flag_names, kind, help, **rest)})


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``phospho-otel serve`` is configured with."""

    store: str = _setting(
        "phospho.db", (PHOSPHO_STORE, PHOSPHO_DB), ("--store", "--db"), str,
        "where to store: a SQLite file path, sqlite:///PATH, or clickhouse://HOST:9000/DB "
        "(docs/clickhouse.md)")
    host: str = _setting("127.0.0.1", "PHOSPHO_HOST", "--host", str,
                         "address the HTTP and gRPC servers bind to")
    http_port: int = _setting(8318, "PHOSPHO_HTTP_PORT", "--http-port", int,
                              "OTLP/HTTP ingest and the HTTP API (0: any free port)",
                              lo=0, hi=65535)
    grpc_port: int = _setting(8317, "PHOSPHO_GRPC_PORT", "--grpc-port", int,
                              "OTLP/gRPC ingest (0: any free port)", lo=0, hi=65535)
    token: str | None = _setting(
        None, PHOSPHO_TOKEN, "--token", str,
        "require Authorization: Bearer <token> for ingest and the API (a --token value is "
        "visible in the process list: prefer --token-file)", secret=True)
    token_file: str | None = _setting(
        None, PHOSPHO_TOKEN_FILE, "--token-file", str,
        "read the token from this file (its content, stripped), which keeps it out of the "
        "process list; not together with --token")
    max_body_bytes: int = _setting(
        64 * 1024 * 1024, "PHOSPHO_MAX_BODY_BYTES", "--max-body-bytes", int,
        "largest request body accepted, as received and once inflated", lo=1)
    max_pending_spans: int = _setting(
        200_000, "PHOSPHO_MAX_PENDING_SPANS", "--max-pending-spans", int,
        "spans accepted and not yet stored beyond which requests get 503 / UNAVAILABLE",
        lo=1)
    max_group_spans: int = _setting(
        32_768, "PHOSPHO_MAX_GROUP_SPANS", "--max-group-spans", int,
        "spans written in one store transaction at most", lo=1)
    max_drain_s: float = _setting(
        5.0, "PHOSPHO_MAX_DRAIN_S", "--max-drain-s", float,
        "seconds of write work the pending spans may represent (pending spans / measured "
        "write rate) beyond which requests get 503 / UNAVAILABLE at once, before their body "
        "is read when its size is declared; keep it well under the exporters' timeout "
        "(10 s by default)", lo=0.1, hi=300.0)
    max_buffered_bytes: int = _setting(
        128 * 1024 * 1024, "PHOSPHO_MAX_BUFFERED_BYTES", "--max-buffered-bytes", int,
        "request bytes (as received and once inflated) held at once by all the requests "
        "being read, decoded or written; beyond, 503 / UNAVAILABLE + Retry-After, before the "
        "body is read when its size is declared (a request alone is always admitted)", lo=1)
    header_timeout_s: float = _setting(
        10.0, "PHOSPHO_HEADER_TIMEOUT_S", "--header-timeout", float,
        "seconds a client has to send a request's headers, from its connection's opening or "
        "the first byte after the previous response (then 408 and closed); also the "
        "gRPC connection handshake's", lo=0.1, hi=3600.0)
    body_timeout_s: float = _setting(
        20.0, "PHOSPHO_BODY_TIMEOUT_S", "--body-timeout", float,
        "seconds a request body may take, plus one per --body-min-rate bytes received "
        "(then 408 and closed)", lo=0.1, hi=3600.0)
    body_min_rate: int = _setting(
        65_536, "PHOSPHO_BODY_MIN_RATE", "--body-min-rate", int,
        "bytes per second a request body must average once --body-timeout has passed", lo=1)
    max_connections: int = _setting(
        1000, "PHOSPHO_MAX_CONNECTIONS", "--max-connections", int,
        "open HTTP connections at most, and as many gRPC ones (lowered to fit the open-files "
        "limit, ulimit -n); past it the longest-idle connection is closed to make room, or "
        "the new one gets 503 when none is idle", lo=1)
    jaeger_prefix: str = _setting("/jaeger", "PHOSPHO_JAEGER_PREFIX", "--jaeger-prefix", str,
                                  "path prefix of the Jaeger-compatible query API")
    jaeger_ui_url: str | None = _setting(
        None, "PHOSPHO_JAEGER_UI_URL", "--jaeger-ui-url", str,
        "base URL of a Jaeger UI, for links from sessions and users to their traces")
    sqlite_synchronous: str = _setting(
        "FULL", "PHOSPHO_SQLITE_SYNCHRONOUS", "--sqlite-synchronous", str,
        "SQLite durability: FULL (an acknowledged span survives a power loss), NORMAL "
        "(survives a killed process; faster commits) or EXTRA",
        choices=SQLITE_SYNCHRONOUS_LEVELS)
    insights_max_age_s: float = _setting(
        2.0, "PHOSPHO_INSIGHTS_MAX_AGE_S", ("--insights-max-age", "--insights-max-age-s"),
        float, "seconds an insights result may be served while data changes (0: compute "
        "every request)", lo=0.0, hi=3600.0)
    insights: str | None = _setting(
        None, "PHOSPHO_INSIGHTS", "--insights", str,
        "insights configuration, a TOML or YAML file: event definitions, LLM judge, session "
        "and user-class thresholds (docs/insights.md); none: the shipped defaults")
    analyzer_interval_s: float = _setting(
        0.5, "PHOSPHO_ANALYZER_INTERVAL_S", "--analyzer-interval", float,
        "seconds between the analyzer's passes over new tasks (evaluations, events, session "
        "endings, user classes); 0: no analyzer", lo=0.0, hi=3600.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check(f.name, setting_of(f), getattr(self, f.name), optional=f.default is None)
        if self.http_port and self.http_port == self.grpc_port:
            raise ConfigurationError(
                f"http_port and grpc_port are both {self.http_port}: the HTTP and gRPC "
                "servers need different ports (--http-port, --grpc-port)")
        if self.token_file is not None:
            # The token read from the file is the token: everything else reads ``token``
            # (already equal when these settings were copied with ``dataclasses.replace``).
            token = read_token_file(self.token_file)
            if self.token is not None and self.token != token:
                raise ConfigurationError(
                    "token and token_file are both set: give the token one way (--token-file "
                    "keeps it out of the process list)")
            object.__setattr__(self, "token", token)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None,
                 **overrides: Any) -> ServerSettings:
        """Settings from keyword arguments that are not None, then the environment
        variables, then the defaults."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            given = overrides.pop(f.name, None)
            values[f.name] = given if given is not None else _from_env(f, env)
        if overrides:
            raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """The settings as a dict, secrets masked (for logs)."""
        return {f.name: "***" if setting_of(f).secret and getattr(self, f.name) else
                getattr(self, f.name) for f in dataclasses.fields(self)}


def read_token_file(path: str) -> str:
    """The token held in the file at ``path``: its content, stripped of surrounding
    whitespace. Raises ``ConfigurationError`` naming the file when it cannot be read, is not
    UTF-8, or holds nothing but whitespace."""
    try:
        with open(path, "rb") as f:
            raw = f.read(64 * 1024 + 1)
    except OSError as exc:
        raise ConfigurationError(
            f"token_file: cannot read {path}: {exc.strerror or exc}") from None
    if len(raw) > 64 * 1024:
        raise ConfigurationError(f"token_file: {path} is over 64 KiB: not a token")
    try:
        token = raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise ConfigurationError(f"token_file: {path} is not UTF-8 text") from None
    if not token:
        raise ConfigurationError(f"token_file: {path} is empty")
    if not token.isprintable():
        raise ConfigurationError(
            f"token_file: {path} holds a line break or a control character inside its token")
    return token


def setting_of(f: dataclasses.Field[Any]) -> Setting:
    """The ``Setting`` of a ``ServerSettings`` field."""
    setting: Setting = f.metadata["setting"]
    return setting


def _check(name: str, s: Setting, value: Any, *, optional: bool) -> None:
    """Raise ``ConfigurationError`` unless ``value`` fits the setting."""
    if value is None:
        if not optional:
            raise ConfigurationError(f"{name}: a value is required")
        return
    if s.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, s.kind) or isinstance(value, bool):
        raise ConfigurationError(f"{name}: expected {s.kind.__name__}, got {value!r}")
    given: Any = value
    if s.choices is not None and value not in s.choices:
        raise ConfigurationError(f"{name}: must be one of {'|'.join(s.choices)}, got {value!r}")
    if s.kind is str:
        if not value:
            raise ConfigurationError(f"{name}: must not be empty")
        return
    number = float(given)
    if number != number or (s.lo is not None and number < s.lo) or (
            s.hi is not None and number > s.hi):
        raise ConfigurationError(f"{name}: must be in [{s.lo}, {s.hi}], got {value!r}")


def _from_env(f: dataclasses.Field[Any], env: Mapping[str, str] | None) -> Any:
    s = setting_of(f)
    found = first_env(s.env, env)
    default: Any = f.default
    if found is None:
        return default
    name = found[0]
    if s.choices is not None:
        return env_choice(name, s.choices, default, upper=True, env=env)
    if s.kind is int:
        return env_int(name, default, lo=_int(s.lo), hi=_int(s.hi), env=env)
    if s.kind is float:
        return env_float(name, default, lo=s.lo, hi=s.hi, env=env)
    return env_str(name, default, env=env)


def _int(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def settings_markdown() -> str:
    """The table of settings for ``docs/server.md``."""
    lines = ["| flag | environment variable | default | what it sets |", "|---|---|---|---|"]
    for f in dataclasses.fields(ServerSettings):
        s = setting_of(f)
        default = "none" if f.default is None else f"`{f.default}`"
        extra = ""
        if s.choices:
            extra = f" ({' / '.join(s.choices)})"
        elif s.lo is not None or s.hi is not None:
            lo = "" if s.lo is None else f"{s.lo:g}"
            hi = "" if s.hi is None else f"{s.hi:g}"
            extra = f" (range {lo} to {hi})" if hi else f" (at least {lo})"
        lines.append(f"| {', '.join(f'`{x}`' for x in s.flags)} | "
                     f"{', '.join(f'`{x}`' for x in s.env)} | {default} | {s.help}{extra} |")
    return "\n".join(lines)
