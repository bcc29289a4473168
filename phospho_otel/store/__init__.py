"""Storage: the backend-neutral store API (``store.api``), Jaeger tag semantics
(``store.tags``), and the backends, one package each (``store.sqlite``,
``store.clickhouse``).

``open_store(url)`` opens a backend by URL:

* ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db``, or a plain file path:
  the embedded SQLite store (``store.sqlite.SQLiteStore``).
* ``clickhouse://HOST[:PORT]/DATABASE``: the scale-out store on a ClickHouse server
  (``store.clickhouse.ClickHouseStore``; PORT is the native-protocol port, 9000 by
  default; ``clickhouse://user:password@HOST...`` for credentials;
  ``...?cluster=NAME`` for a ClickHouse cluster: replicated tables created on every
  server of it). Needs the ``clickhouse`` extra
  (``pip install 'phospho-otel[clickhouse]'``).

A new backend is one package here implementing ``store.api.Store``, one branch in
``open_store``, and a run of ``tests/store_conformance`` against it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from phospho_otel.errors import ConfigurationError
from phospho_otel.store.api import Store, StoreReader, StoreWriter, WriteResult

__all__ = ["Store", "StoreReader", "StoreWriter", "WriteResult", "clickhouse_address", "open_store",
           "store_path"]

SCHEMES = ("sqlite", "clickhouse")
"""URL schemes ``open_store`` knows."""
CLICKHOUSE_DEFAULT_PORT = 9000
"""The port of a ``clickhouse://`` URL without one (ClickHouse's native protocol)."""
SQLITE_ONLY_OPTIONS = frozenset({"synchronous"})
"""``open_store`` options that only SQLite takes; other backends ignore them (the server
passes its ``sqlite_synchronous`` setting whatever the store)."""


def store_path(url: str) -> tuple[str, str]:
    """``(scheme, location)`` of a store URL; a URL without a scheme is a SQLite path.
    The location of a ``clickhouse://`` URL is the URL itself (see ``clickhouse_address``)."""
    if "://" not in url:
        if not url.strip():
            raise ConfigurationError("store URL: empty")
        return "sqlite", url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"store URL {url!r}: unknown scheme {scheme!r}; use sqlite:///PATH or"
            " clickhouse://HOST:PORT/DATABASE"
        )
    if scheme == "clickhouse":
        clickhouse_address(url)
        return scheme, url
    if parts.netloc:
        raise ConfigurationError(
            f"store URL {url!r}: a SQLite URL has no host; use sqlite:///relative.db or"
            " sqlite:////absolute/path.db"
        )
    path = unquote(parts.path)[1:]  # sqlite:///x.db -> x.db, sqlite:////tmp/x.db -> /tmp/x.db
    if not path:
        raise ConfigurationError(f"store URL {url!r}: no file path")
    return scheme, path


def clickhouse_address(url: str) -> dict[str, Any]:
    """``host``, ``port``, ``database`` (and ``user``, ``password``, ``cluster`` when
    given) of a ``clickhouse://`` URL; raises ``ConfigurationError`` for an unusable one."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"store URL {url!r}: the port is not a number") from None
    host = parts.hostname
    database = unquote(parts.path).strip("/")
    usage = "use clickhouse://HOST:PORT/DATABASE (PORT: the native port, 9000 by default)"
    if not host:
        raise ConfigurationError(f"store URL {url!r}: no host; {usage}")
    if not database or not database.replace("_", "").isalnum():
        raise ConfigurationError(
            f"store URL {url!r}: the database must be one name of letters, digits and _;"
            f" {usage}")
    address: dict[str, Any] = {"host": host, "port": port or CLICKHOUSE_DEFAULT_PORT,
                               "database": database}
    if parts.username:
        address["user"] = unquote(parts.username)
    if parts.password:
        address["password"] = unquote(parts.password)
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"cluster"})
    if unknown:
        raise ConfigurationError(f"store URL {url!r}: unknown option {unknown[0]!r};"
                                 f" the only one is ?cluster=NAME")
    if "cluster" in options:
        cluster = options["cluster"][-1]
        if not cluster or not cluster.replace("_", "").isalnum():
            raise ConfigurationError(f"store URL {url!r}: the cluster must be one name of"
                                     " letters, digits and _ (?cluster=NAME)")
        address["cluster"] = cluster
    return address


def open_store(url: str, *, read_only: bool = False, **options: Any) -> Store:
    """Open the store at ``url`` (see the module docstring). ``read_only`` opens an
    existing store for reading (``write`` raises). ``options`` go to the backend (for
    SQLite: ``synchronous``...; ``SQLITE_ONLY_OPTIONS`` are ignored by the others).
    Raises ``ConfigurationError`` for an unusable URL and ``StoreError`` when the store
    cannot be opened (ClickHouse unreachable: one line saying where and why)."""
    scheme, location = store_path(url)
    if scheme == "clickhouse":
        try:
            from phospho_otel.store.clickhouse import ClickHouseStore
        except ImportError as exc:
            raise ConfigurationError(
                f"store URL {url!r} needs the clickhouse extra:"
                f" pip install 'phospho-otel[clickhouse]' ({exc})") from None
        rest = {k: v for k, v in options.items() if k not in SQLITE_ONLY_OPTIONS}
        return ClickHouseStore(**clickhouse_address(location), read_only=read_only, **rest)
    from phospho_otel.store.sqlite import SQLiteStore

    return SQLiteStore(location, read_only=read_only, **options)
