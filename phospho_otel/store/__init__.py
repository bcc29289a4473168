"""Storage: the SQLite schema, the embedded store and the narrow interface over it."""

from __future__ import annotations

from phospho_otel.store.base import Store, WriteResult
from phospho_otel.store.sqlite import SQLiteStore

__all__ = ["SQLiteStore", "Store", "WriteResult"]
