"""Pure functions turning decoded OTLP spans into span, task and feedback records."""

from __future__ import annotations

from phospho_otel.aggregator.extract import (
    Extraction,
    FeedbackRecord,
    Origin,
    SpanRow,
    TaskRecord,
    any_value_to_python,
    extract,
    foreign_task_id,
)

__all__ = [
    "Extraction",
    "FeedbackRecord",
    "Origin",
    "SpanRow",
    "TaskRecord",
    "any_value_to_python",
    "extract",
    "foreign_task_id",
]
