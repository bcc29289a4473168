"""``TextAnalyzer``: the per-task text analysis (events, sentiment, language), in this
process or in worker processes.

It is most of the analyzer's CPU (about 100-200 µs a task: VADER, the language
identifier, the event patterns), and in the server's process it would compete with
ingest for the interpreter lock. With ``workers`` > 0 it runs in that many processes
(started with ``spawn``: the server's threads are not forked), fed in chunks, so the
server's process keeps only the reads, the evaluation and the writes. A worker that
dies is replaced once, and the batch is analysed here meanwhile; nothing is lost.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import NamedTuple

from phospho_otel.insights.context import TaskContext
from phospho_otel.insights.events import EventDefinition, EventDetector
from phospho_otel.insights.text import language, sentiment
from phospho_otel.model.analysis import DetectedEvent, Sentiment

__all__ = ["TextAnalysis", "TextAnalyzer", "analyze_text"]

logger = logging.getLogger(__name__)

MIN_CHUNK = 64
"""Contexts per worker call at least (smaller batches are analysed here)."""


class TextAnalysis(NamedTuple):
    """What the text of one task says, whoever evaluates it."""

    events: tuple[DetectedEvent, ...]
    sentiment: Sentiment | None
    language: str | None


def analyze_text(detector: EventDetector, ctx: TaskContext) -> TextAnalysis:
    """The task's events, and its input's sentiment and language."""
    return TextAnalysis(tuple(detector.task_events(ctx)), sentiment(ctx.task.input),
                        language(ctx.task.input))


_worker_detector: EventDetector | None = None


def _init_worker(definitions: Sequence[EventDefinition]) -> None:
    global _worker_detector
    _worker_detector = EventDetector(definitions)
    sentiment("warm up")  # load the models before the first batch
    language("load the language model now")


def _analyze_chunk(contexts: Sequence[TaskContext]) -> list[TextAnalysis]:
    assert _worker_detector is not None
    return [analyze_text(_worker_detector, ctx) for ctx in contexts]


class TextAnalyzer:
    """``analyze(contexts)`` with the event ``definitions``, in ``workers`` processes
    (0: in this one). Not thread-safe: one analyzer thread calls it."""

    def __init__(self, definitions: Sequence[EventDefinition], workers: int = 0) -> None:
        self.definitions = tuple(definitions)
        self.detector = EventDetector(self.definitions)
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def _start(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(self.definitions,))
        return self._pool

    def analyze(self, contexts: Sequence[TaskContext]) -> list[TextAnalysis]:
        """One ``TextAnalysis`` per context, in order."""
        if self.workers <= 0 or len(contexts) < MIN_CHUNK:
            return [analyze_text(self.detector, c) for c in contexts]
        size = max(MIN_CHUNK, -(-len(contexts) // self.workers))
        chunks = [contexts[i:i + size] for i in range(0, len(contexts), size)]
        try:
            return [a for part in self._start().map(_analyze_chunk, chunks) for a in part]
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
            logger.warning("insights text worker died (%s); restarting it", exc)
            self._pool = None
            return [analyze_text(self.detector, c) for c in contexts]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
