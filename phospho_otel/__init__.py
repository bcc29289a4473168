"""phospho-otel: OpenTelemetry-native logging and analytics for LLM applications.

``import phospho_otel as phospho``, then ``phospho.init()``, ``phospho.log(...)``,
``with phospho.session(...)``, ``with phospho.task(...)``, ``phospho.user_feedback(...)``,
``phospho.end_session(...)``.
The package root imports the SDK only (never server code).
"""

from __future__ import annotations

from phospho_otel.errors import ConfigurationError, PhosphoError
from phospho_otel.sdk import (
    LoggedTask,
    PhosphoSpanProcessor,
    ProcessorStats,
    TaskRun,
    end_session,
    flush,
    init,
    log,
    new_session,
    new_task_id,
    session,
    shutdown,
    stats,
    task,
    user_feedback,
)
from phospho_otel.semconv import SEMCONV_VERSION

__all__ = [
    "SEMCONV_VERSION",
    "ConfigurationError",
    "LoggedTask",
    "PhosphoError",
    "PhosphoSpanProcessor",
    "ProcessorStats",
    "TaskRun",
    "end_session",
    "flush",
    "init",
    "log",
    "new_session",
    "new_task_id",
    "session",
    "shutdown",
    "stats",
    "task",
    "user_feedback",
]
