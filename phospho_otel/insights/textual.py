"""The per-task text analysis: a task's events, and its input's sentiment and language.

It is most of the analyzer's CPU (about 100-200 µs a task on a 2-core machine: VADER, the
language identifier, the event patterns). Running it in a worker process was measured and
dropped: on 2 cores the worker took the core ingest needs (ingest 0.74x of its rate
without the analyzer, against 1.01x in the server's process), and analysed fewer tasks a
second (``benchmarks/bench_insights.py``).
"""

from __future__ import annotations

from typing import NamedTuple

from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.events import EventDetector
from phospho_otel.insights.text import language, sentiment
from phospho_otel.model.analysis import DetectedEvent, Sentiment

__all__ = ["TextAnalysis", "analyze_text"]


class TextAnalysis(NamedTuple):
    """What the text of one task says, whoever evaluates it."""

    events: tuple[DetectedEvent, ...]
    sentiment: Sentiment | None
    language: str | None


def analyze_text(detector: EventDetector, ctx: TaskContext) -> TextAnalysis:
    """The task's events, and its input's sentiment and language."""
    return TextAnalysis(tuple(detector.task_events(ctx)), sentiment(ctx.task.input),
                        language(ctx.task.input))
