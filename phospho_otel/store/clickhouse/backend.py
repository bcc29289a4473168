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
* **Analysis** (``store.api.AnalysisStore``): the analyzer's work queue and results
  (``analysis``, ``analysis_writer``), in the store like everything else, so that the
  analyzers of several replicas share them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from phospho_otel.errors import StoreClosed, StoreError
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import AnalysisUpdate, WriteResult
from phospho_otel.store.clickhouse import schema
from phospho_otel.store.clickhouse.analysis import ClickHouseAnalysis
from phospho_otel.store.clickhouse.analysis_sql import analysed_sql, users_run_sql
from phospho_otel.store.clickhouse.analysis_writer import ClickHouseAnalysisWriter, PendingTokens
from phospho_otel.store.clickhouse.connection import ClientPool, Endpoint, failure, first_line
from phospho_otel.store.clickhouse.insights import ClickHouseInsights
from phospho_otel.store.clickhouse.rollup_store import FoldResult, RollupRefresher
from phospho_otel.store.clickhouse.traces import ClickHouseTraces
from phospho_otel.store.clickhouse.writer import ClickHouseWriter, committed

__all__ = ["ClickHouseReader", "ClickHouseStore"]

_DRIVER_ERRORS = (ch_errors.Error, OSError, EOFError)
"""What the driver raises when ClickHouse fails or is away."""
_ALREADY_EXISTS = frozenset({57, 82})
"""TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS: another replica created it first."""


class ClickHouseReader(ClickHouseInsights, ClickHouseAnalysis, ClickHouseTraces):
    """``store.api.StoreReader`` on one client, at the snapshot of batch ``snapshot``
    (and of analysis batch ``analysis_snapshot``)."""

    def __init__(self, client: Client, db: str, snapshot: int, version: float,
                 analysis_snapshot: int = 0, tokens: PendingTokens | None = None, *,
                 stored_rollups: bool = False, unfolded: tuple[int, ...] = ()) -> None:
        self.client = client
        self.db = db
        self.snapshot = snapshot
        self.stored_rollups = stored_rollups
        self.unfolded = unfolded
        self.visible = committed(db, snapshot)
        self.version = version
        self.analysed = analysed_sql(db, analysis_snapshot)
        self.users_run = users_run_sql(db, analysis_snapshot)
        self.tokens = tokens if tokens is not None else PendingTokens()


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
        cluster: a cluster of the server's ``remote_servers``: the schema is created
            on all its servers, replicated (``schema.on_cluster``), when the server
            connected to lacks some of it.
        rollups: read session and user rollups from their stored rows
            (``rollup_store``), folded by a background thread (unless ``read_only``)
            soon after each write and every ``fold_interval_s``; False: compute every
            rollup from the tasks at read (slow at scale; for comparisons).
    """

    def __init__(self, host: str, port: int, database: str, *, read_only: bool = False,
                 user: str = "default", password: str = "", connect_timeout_s: float = 5.0,
                 query_timeout_s: float = 30.0, cluster: str | None = None,
                 rollups: bool = True, fold_interval_s: float = 1.0) -> None:
        for what, name in (("database", database), ("cluster", cluster or "default")):
            if not name.replace("_", "").isalnum():
                raise StoreError(f"ClickHouse {what} name {name!r}: use letters, digits"
                                 " and _ only")
        self.endpoint = Endpoint(host, port, database, user, password, connect_timeout_s,
                                 query_timeout_s, cluster)
        self.read_only = read_only
        self._closed = False
        self._write_lock = threading.Lock()
        self._readers = ClientPool(self.endpoint)
        self._tokens = PendingTokens()
        self._analysis_lock = threading.Lock()
        self._analysis_writer = ClickHouseAnalysisWriter(database, self._tokens)
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
        self.rollups = rollups
        self._refresher: RollupRefresher | None = None
        if rollups and not read_only:
            self._refresher = RollupRefresher(self.endpoint.client(), database,
                                              fold_interval_s)
            self._refresher.start()

    def _create_schema(self, client: Client) -> None:
        db, cluster = self.endpoint.database, self.endpoint.cluster
        statements = schema.ddl(db, cluster)
        if cluster is not None:  # ON CLUSTER waits for every server: only what is missing
            existing = {db} if client.execute(
                "SELECT count() FROM system.databases WHERE name = %(db)s",
                {"db": db})[0][0] else set()
            existing |= {f"{db}.{name}" for (name,) in client.execute(
                "SELECT name FROM system.tables WHERE database = %(db)s", {"db": db})}
            statements = [s for s in statements if schema.created(s) not in existing]
        for statement in statements:
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
                # the version also moves with the analyzer's results
                # (the batches no fold at or before the snapshot folded: ``rollup_store``)
                unfolded = "[]" if not self.rollups else (
                    f"(SELECT groupArray(batch) FROM {db}.commits WHERE batch NOT IN"
                    f" (SELECT batch FROM {db}.rollup_marks"
                    f" WHERE fold <= (SELECT max(batch) FROM {db}.commits)))")
                ((snapshot, version, analysis, batches),) = client.execute(
                    f"SELECT max(batch), toFloat64(count() * 1000003 + modulo(sum(batch), 1000003)"
                    f" + (SELECT count() FROM {db}.analysis_commits) * 1e12),"
                    f" (SELECT max(batch) FROM {db}.analysis_commits), {unfolded}"
                    f" FROM {db}.commits")
                snapshot = int(snapshot)
                yield ClickHouseReader(
                    client, db, snapshot, float(version), int(analysis), self._tokens,
                    stored_rollups=self.rollups,
                    unfolded=tuple(sorted(int(b) for b in batches if b <= snapshot)))
        except _DRIVER_ERRORS as exc:  # not the errors raised inside the block
            raise failure(exc, self.endpoint, "reading") from exc

    def counters(self) -> dict[str, int]:
        with self.read() as reader:
            return {name: int(value) for name, value in reader.client.execute(
                f"SELECT name, sum(value) FROM {reader.db}.counters WHERE {reader.visible}"
                " GROUP BY name")}

    def refresh_rollups(self) -> FoldResult:
        """Fold the committed batches into the stored rollups now (the background thread
        does it anyway; for tests and benchmarks). Raises ``StoreUnavailable`` or
        ``StoreError``."""
        self._check_open()
        if self._refresher is None:
            raise StoreError(f"{self.endpoint}: no rollups to fold (read-only or"
                             " rollups=False)")
        try:
            return self._refresher.fold_now()
        except _DRIVER_ERRORS as exc:
            self._refresher.client.disconnect()
            raise failure(exc, self.endpoint, "folding the rollups") from exc

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
                results = self._writer.write(batch)
            except _DRIVER_ERRORS as exc:
                self._writer_client.disconnect()
                raise failure(exc, self.endpoint, "writing") from exc
            if self._refresher is not None:
                self._refresher.poke()
            return results

    def write_analysis(self, update: AnalysisUpdate) -> None:
        """Store the analyzer's results (``store.api.AnalysisStore``) on a reader client
        (never held up by an ingest write): visible all at once, with the work they
        complete (``analysis_writer``). Raises ``StoreUnavailable`` or ``StoreError``;
        after a failure the work stays pending."""
        with self._analysis_lock:
            self._check_open()
            if self.read_only:
                raise StoreError(f"{self.endpoint} is open read-only")
            try:
                with self._readers.lease() as client:
                    self._analysis_writer.write(client, update)
            except _DRIVER_ERRORS as exc:
                raise failure(exc, self.endpoint, "writing the analysis") from exc

    # -- lifecycle ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("store")

    def close(self) -> None:
        """Close every connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._refresher is not None:
            self._refresher.stop()
        with self._write_lock:
            self._writer_client.disconnect()
        self._readers.close()

    def __repr__(self) -> str:
        flags = ", read_only=True" if self.read_only else ""
        return f"ClickHouseStore({str(self.endpoint)!r}{flags})"


