"""The narrow interface every store backend offers (SQLite today, a server later).

Threading contract: ``write``/``write_many``/``write_extracted`` are called from one
writer thread only (the ``Ingestor``'s); ``reader`` and ``counters`` from any thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import Extraction

__all__ = ["Store", "WriteResult"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What one export request did to the store (the OTLP reply is built from it)."""

    spans_received: int = 0
    spans_stored: int = 0
    """Spans newly inserted."""
    spans_duplicate: int = 0
    """Spans already stored (a retry): ignored, counted nowhere else."""
    rejected_spans: int = 0
    """Spans that could not be stored (invalid ids): the OTLP partial-success count."""
    tasks_new: int = 0
    tasks_updated: int = 0
    """Tasks whose id was already known, replaced by a later version (see ``sqlite``)."""
    feedback_new: int = 0
    skipped_invalid: int = 0
    """Task and feedback spans of our convention skipped for bad attributes (stored as spans)."""
    error_message: str = ""
    """Why spans were rejected or skipped; empty when all went well."""


@runtime_checkable
class Store(Protocol):
    """Write, read and counters: all the aggregator and the views need from storage."""

    def write(self, request: ExportTraceServiceRequest) -> WriteResult:
        """Store one request durably (one transaction); returns when it is durable."""
        ...

    def write_many(self, requests: Sequence[ExportTraceServiceRequest]) -> list[WriteResult]:
        """Store several requests in one durable transaction (group commit)."""
        ...

    def write_extracted(self, extractions: Sequence[Extraction]) -> list[WriteResult]:
        """Store requests already passed through ``aggregator.extract`` (one transaction),
        so that the CPU-bound extraction can run outside the writer thread."""
        ...

    def reader(self) -> AbstractContextManager[sqlite3.Connection]:
        """A read-only connection for the duration of a ``with`` block."""
        ...

    def counters(self) -> dict[str, int]:
        """Ingest counters (spans_received, spans_duplicate, tasks_skipped_invalid, ...)."""
        ...

    def close(self) -> None:
        """Release every connection."""
        ...
