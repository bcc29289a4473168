"""The aggregator service: its settings (``settings``), its HTTP application (``app``),
and the process that runs it all (``run.AggregatorServer``)."""

from __future__ import annotations

from phospho_otel.server.run import AggregatorServer
from phospho_otel.server.settings import ServerSettings

__all__ = ["AggregatorServer", "ServerSettings"]
