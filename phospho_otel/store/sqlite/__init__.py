"""The embedded SQLite backend of the store API: one file, nothing to install.

``backend`` (``SQLiteStore``: connections, lifecycle), ``schema`` and ``migrations``
(the file), ``writer`` (the write path), ``views`` / ``insights`` / ``traces`` (the
three reader protocols of ``store.api``).
"""

from __future__ import annotations

from phospho_otel.store.sqlite.backend import SQLiteReader, SQLiteStore

__all__ = ["SQLiteReader", "SQLiteStore"]
