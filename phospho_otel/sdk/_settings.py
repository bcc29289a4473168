"""SDK settings: ``init()`` arguments, then environment variables, then defaults.

A bad argument raises ``ConfigurationError`` (a ``ValueError``) naming it; a bad
environment value is logged and the default is used, except the endpoint: an unusable
endpoint, wherever it comes from, fails ``init()`` with a message that names it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from phospho_otel.errors import ConfigurationError

__all__ = [
    "DEFAULT_MAX_ATTRIBUTE_BYTES",
    "DEFAULT_MAX_QUEUE_SIZE",
    "ENV_MAX_ATTRIBUTE_BYTES",
    "ENV_MAX_QUEUE_SIZE",
    "Settings",
    "resolve_settings",
]

logger = logging.getLogger(__name__)

OTEL_EXPORTER_OTLP_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
"""Base URL of the collector; ``/v1/traces`` is appended for HTTP."""
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
"""Full URL for traces, used as is (wins over ``OTEL_EXPORTER_OTLP_ENDPOINT``)."""
OTEL_EXPORTER_OTLP_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
OTEL_EXPORTER_OTLP_HEADERS = "OTEL_EXPORTER_OTLP_HEADERS"
OTEL_EXPORTER_OTLP_TRACES_HEADERS = "OTEL_EXPORTER_OTLP_TRACES_HEADERS"
OTEL_EXPORTER_OTLP_COMPRESSION = "OTEL_EXPORTER_OTLP_COMPRESSION"
OTEL_EXPORTER_OTLP_TRACES_COMPRESSION = "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION"
OTEL_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_MAX_QUEUE_SIZE = "PHOSPHO_MAX_QUEUE_SIZE"
"""Spans the export queue holds before it drops new ones."""
ENV_MAX_ATTRIBUTE_BYTES = "PHOSPHO_MAX_ATTRIBUTE_BYTES"
"""UTF-8 bytes an attribute value may take before it is truncated."""

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


@dataclass(frozen=True)
class Settings:
    """Resolved SDK settings (see ``init()`` for each field)."""

    endpoint: str
    """For HTTP the full traces URL; for gRPC ``scheme://host:port``."""
    protocol: str
    headers: dict[str, str] = field(default_factory=dict)
    compression: str = "none"
    service_name: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE
    schedule_delay_s: float = DEFAULT_SCHEDULE_DELAY_S
    max_attribute_bytes: int = DEFAULT_MAX_ATTRIBUTE_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES


def _first_env(env: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = env.get(name, "").strip()
        if value:
            return name, value
    return None


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


def validate_endpoint(endpoint: str, protocol: str, *, traces_path: bool) -> str:
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


def _positive(name: str, value: float | int | None, env_name: str | None,
              env: Mapping[str, str], default: float | int, kind: type) -> float | int:
    if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ConfigurationError(f"{name} must be a positive number, got {value!r}")
        if kind is int and not isinstance(value, int):
            raise ConfigurationError(f"{name} must be an int, got {value!r}")
        return value
    if env_name and env.get(env_name, "").strip():
        raw = env[env_name].strip()
        try:
            parsed = kind(raw)
            if parsed <= 0:
                raise ValueError("not positive")
            return parsed
        except ValueError:
            logger.warning("phospho: ignoring %s=%r (not a positive %s); using %s",
                           env_name, raw, kind.__name__, default)
    return default


def resolve_settings(
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    compression: str | None = None,
    service_name: str | None = None,
    timeout_s: float | None = None,
    max_queue_size: int | None = None,
    max_export_batch_size: int | None = None,
    schedule_delay_s: float | None = None,
    max_attribute_bytes: int | None = None,
    max_request_bytes: int | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from arguments, then ``OTEL_*`` / ``PHOSPHO_*`` variables, then defaults."""
    env = os.environ if env is None else env

    if protocol is None:
        found = _first_env(env, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_EXPORTER_OTLP_PROTOCOL)
        protocol = DEFAULT_PROTOCOL
        if found:
            if found[1] in PROTOCOLS:
                protocol = found[1]
            else:
                logger.warning("phospho: ignoring %s=%r (supported: %s); using %s",
                               found[0], found[1], ", ".join(PROTOCOLS), DEFAULT_PROTOCOL)
    elif protocol not in PROTOCOLS:
        raise ConfigurationError(
            f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}"
        )

    if endpoint is not None:
        url = validate_endpoint(endpoint, protocol, traces_path=True)
    else:
        traces = _first_env(env, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
        base = _first_env(env, OTEL_EXPORTER_OTLP_ENDPOINT)
        if traces:
            url = validate_endpoint(traces[1], protocol, traces_path=False)
        elif base:
            url = validate_endpoint(base[1], protocol, traces_path=True)
        else:
            default = DEFAULT_GRPC_ENDPOINT if protocol == "grpc" else DEFAULT_HTTP_ENDPOINT
            url = validate_endpoint(default, protocol, traces_path=True)

    if headers is None:
        found = _first_env(env, OTEL_EXPORTER_OTLP_TRACES_HEADERS, OTEL_EXPORTER_OTLP_HEADERS)
        resolved_headers: dict[str, str] = {}
        if found:
            try:
                resolved_headers = parse_headers(found[1])
            except ValueError as exc:
                logger.warning("phospho: ignoring %s: %s", found[0], exc)
    else:
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ConfigurationError("headers must be a mapping of str to str")
        resolved_headers = {k.lower(): v for k, v in headers.items()}

    if compression is None:
        found = _first_env(
            env, OTEL_EXPORTER_OTLP_TRACES_COMPRESSION, OTEL_EXPORTER_OTLP_COMPRESSION
        )
        compression = "none"
        if found:
            if found[1] in COMPRESSIONS:
                compression = found[1]
            else:
                logger.warning("phospho: ignoring %s=%r (supported: none, gzip)", *found)
    elif compression not in COMPRESSIONS:
        raise ConfigurationError(f"compression must be 'none' or 'gzip', got {compression!r}")

    if service_name is None:
        service_name = env.get(OTEL_SERVICE_NAME, "").strip() or None
    elif not isinstance(service_name, str) or not service_name:
        raise ConfigurationError(f"service_name must be a non-empty str, got {service_name!r}")

    queue = int(_positive("max_queue_size", max_queue_size, ENV_MAX_QUEUE_SIZE, env,
                          DEFAULT_MAX_QUEUE_SIZE, int))
    batch = int(_positive("max_export_batch_size", max_export_batch_size, None, env,
                          DEFAULT_MAX_EXPORT_BATCH_SIZE, int))
    if batch > queue:
        raise ConfigurationError(
            f"max_export_batch_size ({batch}) must not exceed max_queue_size ({queue})"
        )
    return Settings(
        endpoint=url,
        protocol=protocol,
        headers=resolved_headers,
        compression=compression,
        service_name=service_name,
        timeout_s=float(_positive("timeout_s", timeout_s, None, env, DEFAULT_TIMEOUT_S, float)),
        max_queue_size=queue,
        max_export_batch_size=batch,
        schedule_delay_s=float(_positive("schedule_delay_s", schedule_delay_s, None, env,
                                         DEFAULT_SCHEDULE_DELAY_S, float)),
        max_attribute_bytes=int(_positive("max_attribute_bytes", max_attribute_bytes,
                                          ENV_MAX_ATTRIBUTE_BYTES, env,
                                          DEFAULT_MAX_ATTRIBUTE_BYTES, int)),
        max_request_bytes=int(_positive("max_request_bytes", max_request_bytes, None, env,
                                        DEFAULT_MAX_REQUEST_BYTES, int)),
    )
