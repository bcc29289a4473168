"""``ClickHouseStore``: the scale-out store, on a ClickHouse server reached over the native
protocol; any number of aggregator replicas may share one database.

Nothing a view depends on lives in a replica: every row is appended to ClickHouse and
reads merge them (``schema``, ``rollups``), so replicas need no coordination, and a span
may reach any replica, in any order, any number of times.

* **Open**: creates the database and its tables if missing (``schema.ddl``, each
  statement ``IF NOT EXISTS``; a replica that loses a creation race to another carries
  on). ClickHouse unreachable or refusing: a one-line ``StoreError``.
* **Write**: ``writer.ClickHouseWriter``, one batch per call (the aggregator's
  ``Ingestor`` groups queued requests into a batch, so inserts are large: ClickHouse
  wants few large inserts, not many small ones). ClickHouse away, slow or overloaded:
  ``StoreUnavailable`` (retryable, 503 / ``UNAVAILABLE``); nothing of the failed batch
  becomes visible, and its retry is written whole. A write returns once ClickHouse has
  acknowledged every INSERT (durable as ClickHouse makes its parts durable).
* **Read**: a reader holds a snapshot: the batches committed when it opened.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from phospho_otel.errors import StoreClosed, StoreError
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import WriteResult
from phospho_otel.store.clickhouse import schema
from phospho_otel.store.clickhouse.connection import ClientPool, Endpoint, failure, first_line
from phospho_otel.store.clickhouse.insights import ClickHouseInsights
from phospho_otel.store.clickhouse.traces import ClickHouseTraces
from phospho_otel.store.clickhouse.writer import ClickHouseWriter, committed
from phospho_otel.store.no_analysis import NoAnalysis

__all__ = ["ClickHouseReader", "ClickHouseStore"]

_DRIVER_ERRORS = (ch_errors.Error, OSError, EOFError)
"""What the driver raises when ClickHouse fails or is away."""
_ALREADY_EXISTS = frozenset({57, 82})
"""TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS: another replica created it first."""


class ClickHouseReader(ClickHouseInsights, NoAnalysis, ClickHouseTraces):
    """``store.api.StoreReader`` on one client, at the snapshot of batch ``snapshot``."""

    def __init__(self, client: Client, db: str, snapshot: int, version: float) -> None:
        self.client = client
        self.db = db
        self.snapshot = snapshot
        self.visible = committed(db, snapshot)
        self.version = version


class ClickHouseStore:
    """The ClickHouse store (``store.api.Store``). ``write`` from one thread at a time;
    ``read``/``counters`` from any thread.

    Args:
        host, port: the server's native-protocol address (port 9000 by default).
        database: the database (created at open if missing).
        read_only: open an existing store for reading only (``write`` raises); the
            schema is not created.
        user, password: ClickHouse credentials.
        connect_timeout_s: the longest wait to connect.
        query_timeout_s: the longest wait for an answer; then ``StoreUnavailable``.
    """

    def __init__(self, host: str, port: int, database: str, *, read_only: bool = False,
                 user: str = "default", password: str = "", connect_timeout_s: float = 5.0,
                 query_timeout_s: float = 30.0) -> None:
        if not database.replace("_", "").isalnum():
            raise StoreError(f"ClickHouse database name {database!r}: use letters, digits"
                             " and _ only")
        self.endpoint = Endpoint(host, port, database, user, password, connect_timeout_s,
                                 query_timeout_s)
        self.read_only = read_only
        self._closed = False
        self._write_lock = threading.Lock()
        self._readers = ClientPool(self.endpoint)
        client = self.endpoint.client()
        try:
            if read_only:
                client.execute(f"SELECT count() FROM {database}.commits")
            else:
                self._create_schema(client)
        except StoreError:
            client.disconnect()
            raise
        except _DRIVER_ERRORS as exc:
            client.disconnect()
            what = "reading its store" if read_only else "creating the schema"
            raise StoreError(f"cannot open the ClickHouse store {self.endpoint} ({what}):"
                             f" {first_line(exc)}") from exc
        self._writer = None if read_only else ClickHouseWriter(client, database)
        self._writer_client = client

    def _create_schema(self, client: Client) -> None:
        for statement in schema.ddl(self.endpoint.database):
            try:
                client.execute(statement)
            except ch_errors.ServerException as exc:
                if getattr(exc, "code", None) not in _ALREADY_EXISTS:
                    raise

    # -- reading -----------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[ClickHouseReader]:
        """A reader at the snapshot of the batches committed now. Any thread."""
        self._check_open()
        db = self.endpoint.database
        try:
            with self._readers.lease() as client:
                ((snapshot, version),) = client.execute(
                    f"SELECT max(batch), toFloat64(count() * 1000003 + modulo(sum(batch), 1000003))"
                    f" FROM {db}.commits")
                yield ClickHouseReader(client, db, int(snapshot), float(version))
        except _DRIVER_ERRORS as exc:  # not the errors raised inside the block
            raise failure(exc, self.endpoint, "reading") from exc

    def counters(self) -> dict[str, int]:
        with self.read() as reader:
            return {name: int(value) for name, value in reader.client.execute(
                f"SELECT name, sum(value) FROM {reader.db}.counters WHERE {reader.visible}"
                " GROUP BY name")}

    # -- writing -----------------------------------------------------------------------

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        """Write the batch; visible to readers once it all is. Raises ``StoreUnavailable``
        (retry) or ``StoreError`` (a retry cannot help); nothing of a failed batch is
        visible."""
        with self._write_lock:
            self._check_open()
            if self._writer is None:
                raise StoreError(f"{self.endpoint} is open read-only")
            try:
                return self._writer.write(batch)
            except _DRIVER_ERRORS as exc:
                self._writer_client.disconnect()
                raise failure(exc, self.endpoint, "writing") from exc

    # -- lifecycle ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store")

    def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._write_lock:
            self._writer_client.disconnect()
        self._readers.close()

    def __repr__(self) -> str:
        flags = ", read_only=True" if self.read_only else ""
        return f"ClickHouseStore({str(self.endpoint)!r}{flags})"


