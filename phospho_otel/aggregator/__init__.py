"""The aggregator: OTLP requests become records (``extract``, reading the input
``conventions``), queued to one writer thread (``ingest.Ingestor``) that writes them to a
store (``store.api.StoreWriter``). Receivers hand it decoded requests; nothing else
writes to the store.
"""

from __future__ import annotations

from phospho_otel.aggregator.extract import extract
from phospho_otel.aggregator.ingest import Ingestor, IngestResult

__all__ = ["IngestResult", "Ingestor", "extract"]
