"""The phospho-otel SDK: log tasks, sessions and users of an LLM app as OpenTelemetry
spans and ship them over OTLP. The public API is re-exported by ``phospho_otel``."""

from __future__ import annotations

from phospho_otel.sdk._client import (
    LoggedTask,
    end_session,
    flush,
    init,
    log,
    new_task_id,
    shutdown,
    stats,
    user_feedback,
)
from phospho_otel.sdk._context import new_session, session
from phospho_otel.sdk._task import TaskRun, task
from phospho_otel.sdk.processor import PhosphoSpanProcessor, ProcessorStats

__all__ = [
    "LoggedTask",
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
