"""SDK settings: ``init()`` arguments, then environment variables, then defaults.

``Settings`` is the one table of them. Each field is an ``init()`` argument of the same
name and carries (``setting(...)``) its default, its check and the environment variables
read when the argument is not given: the traces-specific ``OTEL_EXPORTER_OTLP_TRACES_*``
variable first, then the generic one, or a ``PHOSPHO_*`` one. The variable names are the
constants below. ``resolve_settings`` walks the fields in order (the endpoint's check
needs the protocol, so the protocol comes first); ``init()``'s signature and docstring
and ``docs/sdk.md`` list the same settings, and ``tests/sdk/test_settings.py`` keeps them
in step.

A bad argument raises ``ConfigurationError`` (a ``ValueError``) naming it; a bad
environment value is logged (one warning naming the variable) and the default is used,
except the endpoint: an unusable endpoint, wherever it comes from, fails ``init()`` with
a message that names it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Generic, TypeVar
from urllib.parse import unquote, urlsplit

from phospho_otel._env import env_choice, env_float, env_int, first_env
from phospho_otel.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_ATTRIBUTE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "OTEL_EXPORTER_OTLP_COMPRESSION",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SERVICE_NAME",
    "PHOSPHO_MAX_ATTRIBUTE_BYTES",
    "PHOSPHO_MAX_QUEUE_SIZE",
    "Setting",
    "Settings",
    "resolve_settings",
    "setting_of",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

# -- environment variables -------------------------------------------------------------

OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""Full URL for traces, used as is (wins over ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Base URL of the collector; ``/v1/traces`` is appended for HTTP."""
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
"""``grpc`` or ``http/protobuf``, for traces (wins over ``OTEL_EXPORTER_OTLP_PROTOCOL``)."""
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
"""``grpc`` or ``http/protobuf``."""
OTEL_EXPORTER_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
"""``k1=v1,k2=v2`` (URL-encoded), for traces (wins over ``OTEL_EXPORTER_OTLP_HEADERS``)."""
OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
"""``k1=v1,k2=v2`` (URL-encoded): headers sent with every export."""
OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
"""``none`` or ``gzip``, for traces (wins over ``OTEL_EXPORTER_OTLP_COMPRESSION``)."""
OTEL_EXPORTER_OTLP_COMPRESSION = "OTEL_EXPORTER_OTLP_COMPRESSION"
"""``none`` or ``gzip``."""
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
"""The resource's ``service.name`` (for a provider ``init()`` creates)."""
PHOSPHO_MAX_QUEUE_SIZE = "PHOSPHO_MAX_QUEUE_SIZE"
"""Spans the export queue holds before it drops new ones."""
PHOSPHO_MAX_ATTRIBUTE_BYTES = "PHOSPHO_MAX_ATTRIBUTE_BYTES"
"""UTF-8 bytes an attribute value may take before it is truncated."""

# -- defaults --------------------------------------------------------------------------

PROTOCOLS = ("grpc", "http/protobuf")
COMPRESSIONS = ("none", "gzip")
DEFAULT_PROTOCOL = "http/protobuf"
DEFAULT_HTTP_ENDPOINT = "http://localhost:4318"
DEFAULT_GRPC_ENDPOINT = "http://localhost:4317"
DEFAULT_MAX_QUEUE_SIZE = 100_000
DEFAULT_MAX_ATTRIBUTE_BYTES = 64 * 1024
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512
DEFAULT_SCHEDULE_DELAY_S = 0.2
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_REQUEST_BYTES = 3 * 1024 * 1024  # under grpcio's default 4 MiB receive limit


# -- checks: an argument, or the environment -------------------------------------------

class Check(Generic[T]):
    """How one setting reads an argument and the environment.

    ``argument`` returns the checked value or raises ``ConfigurationError`` naming
    ``name``; ``environment`` returns the value of the first set variable of ``names``,
    or ``default`` when none is set or the value is bad (logged). Both get the settings
    resolved so far (``resolved``, in field order)."""

    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> T:
        raise NotImplementedError

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: T,
                    resolved: Mapping[str, Any]) -> T:
        raise NotImplementedError


class _PositiveInt(Check[int]):
    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an int, got {value!r}")
        return value

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: int,
                    resolved: Mapping[str, Any]) -> int:
        return env_int(names[0], default, lo=1, env=env) if names else default


class _PositiveFloat(Check[float]):
    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        return float(value)

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: float,
                    resolved: Mapping[str, Any]) -> float:
        if not names:
            return default
        value = env_float(names[0], default, lo=0.0, env=env)
        if value > 0:
            return value
        logger.warning("phospho: ignoring %s=%r (not a positive number); using %s",
                       names[0], env.get(names[0]), default)
        return default


class _Choice(Check[str]):
    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices = choices

    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise ConfigurationError(
                f"{name} must be one of {', '.join(self.choices)}, got {value!r}"
            )
        return value

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: str,
                    resolved: Mapping[str, Any]) -> str:
        return env_choice(names, self.choices, default, env=env)


class _Name(Check[str | None]):
    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> str:
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{name} must be a non-empty str, got {value!r}")
        return value

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: str | None,
                    resolved: Mapping[str, Any]) -> str | None:
        found = first_env(names, env)
        return found[1] if found else default


def parse_headers(text: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` (values URL-encoded) as in ``OTEL_EXPORTER_OTLP_HEADERS``."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"header {item!r} is not key=value")
        headers[unquote(key.strip()).lower()] = unquote(value.strip())
    return headers


class _Headers(Check[dict[str, str]]):
    def argument(self, name: str, value: object,
                 resolved: Mapping[str, Any]) -> dict[str, str]:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ConfigurationError(f"{name} must be a mapping of str to str")
        return {k.lower(): v for k, v in value.items()}

    def environment(self, names: Sequence[str], env: Mapping[str, str],
                    default: dict[str, str], resolved: Mapping[str, Any]) -> dict[str, str]:
        found = first_env(names, env)
        if found is None:
            return dict(default)
        try:
            return parse_headers(found[1])
        except ValueError as exc:
            logger.warning("phospho: ignoring %s: %s", found[0], exc)
            return dict(default)


def validate_endpoint(endpoint: object, protocol: str, *, traces_path: bool) -> str:
    """Check an endpoint and normalise it: the full traces URL for HTTP (``/v1/traces``
    appended when ``traces_path``), ``scheme://host:port`` for gRPC."""
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigurationError(f"unusable OTLP endpoint {endpoint!r}: empty")
    text = endpoint.strip()
    if protocol == "grpc" and "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(f"unusable OTLP endpoint {endpoint!r}: {exc}") from exc
    if parts.scheme not in ("http", "https"):
        raise ConfigurationError(
            f"unusable OTLP endpoint {endpoint!r}: the scheme must be http:// or https://"
        )
    if not parts.hostname or any(c.isspace() for c in text):
        raise ConfigurationError(f"unusable OTLP endpoint {endpoint!r}: no host")
    if port == 0:
        raise ConfigurationError(f"unusable OTLP endpoint {endpoint!r}: port 0")
    if protocol == "grpc":
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        default_port = 443 if parts.scheme == "https" else 4317
        return f"{parts.scheme}://{host}:{port or default_port}"
    path = parts.path.rstrip("/")
    if traces_path and not path.endswith("/v1/traces"):
        path += "/v1/traces"
    if not path:
        path = "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{path}{query}"


class _Endpoint(Check[str]):
    """The first variable is the full traces URL (used as is), the next a base URL
    (``/v1/traces`` appended for HTTP); the default depends on the protocol. An
    unusable value raises wherever it comes from."""

    def argument(self, name: str, value: object, resolved: Mapping[str, Any]) -> str:
        return validate_endpoint(value, resolved["protocol"], traces_path=True)

    def environment(self, names: Sequence[str], env: Mapping[str, str], default: str,
                    resolved: Mapping[str, Any]) -> str:
        protocol = resolved["protocol"]
        traces = first_env(names[:1], env)
        if traces:
            return validate_endpoint(traces[1], protocol, traces_path=False)
        base = first_env(names[1:], env)
        if base:
            return validate_endpoint(base[1], protocol, traces_path=True)
        default = DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else DEFAULT_HTTP_ENDPOINT
        return validate_endpoint(default, protocol, traces_path=True)


# -- the table -------------------------------------------------------------------------

@dataclass(frozen=True)
class Setting(Generic[T]):
    """How a ``Settings`` field is read (its default is the field's)."""

    check: Check[T]
    env: tuple[str, ...]
    """Variables read when the argument is not given, the first one set wins."""


_SETTING = "phospho.setting"


def setting(check: Check[T], *env: str) -> dict[str, Setting[T]]:
    """The metadata of a ``Settings`` field: its check and environment variables."""
    return {_SETTING: Setting(check, env)}


@dataclass(frozen=True)
class Settings:
    """Resolved SDK settings; each field is the ``init()`` argument of the same name."""

    protocol: str = field(default=DEFAULT_PROTOCOL, metadata=setting(
        _Choice(PROTOCOLS), OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL))
    """``grpc`` or ``http/protobuf``."""
    endpoint: str = field(default=DEFAULT_HTTP_ENDPOINT + "/v1/traces", metadata=setting(
        _Endpoint(), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT))
    """For HTTP the full traces URL; for gRPC ``scheme://host:port`` (default
    ``http://localhost:4318`` for HTTP, ``http://localhost:4317`` for gRPC)."""
    headers: dict[str, str] = field(default_factory=dict, metadata=setting(
        _Headers(), OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS))
    """Sent with every export (keys in lower case)."""
    compression: str = field(default="none", metadata=setting(
        _Choice(COMPRESSIONS), OTEL_EXPORTER_OTLP_TRACES_COMPRESSION,
        OTEL_EXPORTER_OTLP_COMPRESSION))
    """``none`` or ``gzip``."""
    service_name: str | None = field(default=None, metadata=setting(
        _Name(), OTEL_SERVICE_NAME))
    """``service.name`` of a provider ``init()`` creates."""
    timeout_s: float = field(default=DEFAULT_TIMEOUT_S, metadata=setting(_PositiveFloat()))
    """Per-request timeout; also how long the flush at interpreter exit may take."""
    max_queue_size: int = field(default=DEFAULT_MAX_QUEUE_SIZE, metadata=setting(
        _PositiveInt(), PHOSPHO_MAX_QUEUE_SIZE))
    """Spans held for export at most."""
    max_export_batch_size: int = field(default=DEFAULT_MAX_EXPORT_BATCH_SIZE,
                                       metadata=setting(_PositiveInt()))
    """Spans per export request at most (at most ``max_queue_size``)."""
    schedule_delay_s: float = field(default=DEFAULT_SCHEDULE_DELAY_S,
                                    metadata=setting(_PositiveFloat()))
    """How long a partial batch may wait before it is sent."""
    max_attribute_bytes: int = field(default=DEFAULT_MAX_ATTRIBUTE_BYTES, metadata=setting(
        _PositiveInt(), PHOSPHO_MAX_ATTRIBUTE_BYTES))
    """UTF-8 bytes per attribute value; longer values are cut."""
    max_request_bytes: int = field(default=DEFAULT_MAX_REQUEST_BYTES,
                                   metadata=setting(_PositiveInt()))
    """Requests are split to stay under this size."""


def setting_of(name: str) -> Setting[Any]:
    """The check and environment variables of the ``Settings`` field ``name``."""
    for each in fields(Settings):
        if each.name == name:
            spec: Setting[Any] = each.metadata[_SETTING]
            return spec
    raise KeyError(name)


def _default(each: Field[Any]) -> Any:
    if each.default_factory is not MISSING:
        return each.default_factory()
    return each.default


def resolve_settings(arguments: Mapping[str, object] | None = None, *,
                     env: Mapping[str, str] | None = None) -> Settings:
    """Settings from ``arguments`` (``init()``'s, None meaning not given), then the
    environment (``os.environ`` by default), then the defaults."""
    given = {name: value for name, value in (arguments or {}).items() if value is not None}
    values: dict[str, Any] = {}
    for each in fields(Settings):
        spec: Setting[Any] = each.metadata[_SETTING]
        if each.name in given:
            values[each.name] = spec.check.argument(each.name, given.pop(each.name), values)
        else:
            values[each.name] = spec.check.environment(
                spec.env, os.environ if env is None else env, _default(each), values)
    if given:
        raise TypeError(f"unknown settings: {', '.join(sorted(given))}")
    if values["max_export_batch_size"] > values["max_queue_size"]:
        raise ConfigurationError(
            f"max_export_batch_size ({values['max_export_batch_size']}) must not exceed "
            f"max_queue_size ({values['max_queue_size']})"
        )
    return Settings(**values)
