"""Settings of the aggregator service: argument, then environment variable, then default.

The environment variable names are the ``PHOSPHO_*`` constants below; the CLI flags of
``phospho-otel serve`` map onto the same fields.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

__all__ = [
    "PHOSPHO_DB",
    "PHOSPHO_GRPC_PORT",
    "PHOSPHO_HOST",
    "PHOSPHO_HTTP_PORT",
    "PHOSPHO_INSIGHTS_MAX_AGE_S",
    "PHOSPHO_JAEGER_PREFIX",
    "PHOSPHO_JAEGER_UI_URL",
    "PHOSPHO_MAX_BODY_BYTES",
    "PHOSPHO_SQLITE_SYNCHRONOUS",
    "PHOSPHO_TOKEN",
    "SQLITE_SYNCHRONOUS_LEVELS",
    "ServerSettings",
]

logger = logging.getLogger(__name__)

PHOSPHO_DB = "PHOSPHO_DB"
"""Path of the SQLite file (default ``./phospho.db``)."""
PHOSPHO_HOST = "PHOSPHO_HOST"
"""Address the HTTP and gRPC servers bind to (default ``127.0.0.1``)."""
PHOSPHO_HTTP_PORT = "PHOSPHO_HTTP_PORT"
"""OTLP/HTTP ingest and the HTTP API (default 8318)."""
PHOSPHO_GRPC_PORT = "PHOSPHO_GRPC_PORT"
"""OTLP/gRPC ingest (default 8317)."""
PHOSPHO_TOKEN = "PHOSPHO_TOKEN"
"""When set, ingest and the API require ``Authorization: Bearer <token>``."""
PHOSPHO_MAX_BODY_BYTES = "PHOSPHO_MAX_BODY_BYTES"
"""Largest request body accepted, after decompression (default 64 MiB)."""
PHOSPHO_SQLITE_SYNCHRONOUS = "PHOSPHO_SQLITE_SYNCHRONOUS"
"""SQLite ``synchronous`` level: ``FULL`` (default; an acknowledged span survives a power
loss) or ``NORMAL`` (survives a killed process; faster commits)."""
SQLITE_SYNCHRONOUS_LEVELS = ("FULL", "NORMAL")
PHOSPHO_INSIGHTS_MAX_AGE_S = "PHOSPHO_INSIGHTS_MAX_AGE_S"
"""While data keeps changing, insights may be served from a result at most this many
seconds old, refreshed in the background (default 2; 0 computes every request)."""
PHOSPHO_JAEGER_PREFIX = "PHOSPHO_JAEGER_PREFIX"
"""Path prefix of the Jaeger-compatible query API (default ``/jaeger``)."""
PHOSPHO_JAEGER_UI_URL = "PHOSPHO_JAEGER_UI_URL"
"""Base URL of a Jaeger UI, for links from sessions and users to their traces."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        logger.warning("ignoring %s=%r: not an integer; using %d", name, raw, default)
        return default


def _env_seconds(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 3600:
        logger.warning("ignoring %s=%r: not a number of seconds in [0, 3600]; using %s",
                       name, raw, default)
        return default
    return value


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.upper() not in choices:
        logger.warning(
            "ignoring %s=%r: not one of %s; using %s", name, raw, "|".join(choices), default
        )
        return default
    return raw.upper()


def _env_str(name: str, default: str | None) -> str | None:
    raw = os.environ.get(name)
    return raw if raw else default


@dataclass(frozen=True)
class ServerSettings:
    """Everything ``phospho-otel serve`` is configured with."""

    db: str = "phospho.db"
    host: str = "127.0.0.1"
    http_port: int = 8318
    grpc_port: int = 8317
    token: str | None = None
    max_body_bytes: int = 64 * 1024 * 1024
    jaeger_prefix: str = "/jaeger"
    jaeger_ui_url: str | None = None
    sqlite_synchronous: str = "FULL"
    """``FULL`` or ``NORMAL``, see ``PHOSPHO_SQLITE_SYNCHRONOUS``."""
    insights_max_age_s: float = 2.0
    """See ``PHOSPHO_INSIGHTS_MAX_AGE_S``."""

    @classmethod
    def from_env(cls, **overrides: object) -> ServerSettings:
        """Settings from the environment; keyword arguments that are not None win."""
        values: dict[str, object] = {
            "db": _env_str(PHOSPHO_DB, cls.db),
            "host": _env_str(PHOSPHO_HOST, cls.host),
            "http_port": _env_int(PHOSPHO_HTTP_PORT, cls.http_port),
            "grpc_port": _env_int(PHOSPHO_GRPC_PORT, cls.grpc_port),
            "token": _env_str(PHOSPHO_TOKEN, None),
            "max_body_bytes": _env_int(PHOSPHO_MAX_BODY_BYTES, cls.max_body_bytes),
            "jaeger_prefix": _env_str(PHOSPHO_JAEGER_PREFIX, cls.jaeger_prefix),
            "jaeger_ui_url": _env_str(PHOSPHO_JAEGER_UI_URL, None),
            "sqlite_synchronous": _env_choice(
                PHOSPHO_SQLITE_SYNCHRONOUS, SQLITE_SYNCHRONOUS_LEVELS, cls.sqlite_synchronous
            ),
            "insights_max_age_s": _env_seconds(PHOSPHO_INSIGHTS_MAX_AGE_S,
                                               cls.insights_max_age_s),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
