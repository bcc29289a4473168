"""OTLP trace receivers (HTTP and gRPC), the body decoders, and the ingest queue."""

from __future__ import annotations

from phospho_otel.receiver.ingest import Ingestor, IngestResult, Overloaded

__all__ = ["IngestResult", "Ingestor", "Overloaded"]
