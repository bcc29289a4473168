"""Storage: the backend-neutral store API (``store.api``), Jaeger tag semantics
(``store.tags``), and the backends, one package each (``store.sqlite``).

``open_store(url)`` opens a backend by URL:

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or a plain file path:
  the embedded SQLite store (``store.sqlite.SQLiteStore``).

A new backend is one package here implementing ``store.api.Store``, one branch in
``open_store``, and a run of ``tests/store_conformance`` against it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from phospho_otel.errors import ConfigurationError
from phospho_otel.store.api import Store, StoreReader, StoreWriter, WriteResult

__all__ = ["Store", "StoreReader", "StoreWriter", "WriteResult", "open_store", "store_path"]

SCHEMES = ("sqlite",)
"""URL schemes ``open_store`` knows."""


def store_path(url: str) -> tuple[str, str]:
    """``(scheme, location)`` of a store URL; a URL without a scheme is a SQLite path."""
    if "://" not in url:
        if not url.strip():
            raise ConfigurationError("store URL: empty")
        return "sqlite", url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"store URL {url!r}: unknown scheme {scheme!r}; use sqlite:///PATH"
        )
    if parts.netloc:
        raise ConfigurationError(
            f"store URL {url!r}: a SQLite URL has no host; use sqlite:///relative.db or"
            " sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # sqlite:///x.db -> x.db, sqlite:////tmp/x.db -> /tmp/x.db
    if not path:
        raise ConfigurationError(f"store URL {url!r}: no file path")
    return scheme, path


def open_store(url: str, *, read_only: bool = False, **options: Any) -> Store:
    """Open the store at ``url`` (see the module docstring). ``read_only`` opens an
    existing store for reading (``write`` raises). ``options`` go to the backend (for
    SQLite: ``synchronous``...). Raises ``ConfigurationError`` for an unusable URL and
    ``StoreError`` when the store cannot be opened."""
    _, location = store_path(url)  # "sqlite", the only scheme today
    from phospho_otel.store.sqlite import SQLiteStore

    return SQLiteStore(location, read_only=read_only, **options)
