"""The per-task text analysis: a task's events, and its input's sentiment and language.

It was most of the analyzer's CPU. ``analyze_texts`` does a batch of tasks at once, with
the same answers as ``analyze_text`` task by task: the inputs' languages are identified
together (``text.sentiments_and_languages``, ``langid_batch``), and each input's
identification is reused by its sentiment; VADER's score is computed by ``vader.compound``.
On the labelled set's inputs a task's sentiment and language cost about a third of what
they did one by one with the libraries' own functions (~180 -> ~58 µs an input, on a
loaded 2-core machine).

Running it in a worker process was measured and dropped: on 2 cores the worker took the
core ingest needs (ingest 0.74x of its rate without the analyzer, against 1.01x in the
server's process), and analysed fewer tasks a second (``benchmarks/bench_insights.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.events import EventDetector
from phospho_otel.insights.text import language, sentiment, sentiments_and_languages
from phospho_otel.model.analysis import DetectedEvent, Sentiment

__all__ = ["TextAnalysis", "analyze_text", "analyze_texts"]


class TextAnalysis(NamedTuple):
    """What the text of one task says, whoever evaluates it."""

    events: tuple[DetectedEvent, ...]
    sentiment: Sentiment | None
    language: str | None


def analyze_text(detector: EventDetector, ctx: TaskContext) -> TextAnalysis:
    """The task's events, and its input's sentiment and language."""
    return TextAnalysis(tuple(detector.task_events(ctx)), sentiment(ctx.task.input),
                        language(ctx.task.input))


def analyze_texts(detector: EventDetector,
                  contexts: Sequence[TaskContext]) -> list[TextAnalysis]:
    """``analyze_text`` of each of ``contexts``, done together."""
    moods = sentiments_and_languages([ctx.task.input for ctx in contexts])
    return [TextAnalysis(tuple(detector.task_events(ctx)), mood, code)
            for ctx, (mood, code) in zip(contexts, moods, strict=True)]
