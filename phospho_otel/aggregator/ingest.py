"""The ingest queue: receivers hand decoded requests to one writer thread.

Receivers (HTTP event loop, gRPC worker threads) call ``ingest``/``ingest_blocking``; the
request is extracted (``aggregator.extract``) in the caller's thread or a worker thread,
queued, and written by the one writer thread (``store.api.StoreWriter.write``). The call
returns only once the request's spans are durable in the store, so the receiver
acknowledges nothing that could be lost.

Admission: the queue is bounded by its estimated *drain time*, the seconds the writer
needs for the pending spans at its measured rate (plus how long the write in progress has
overrun its own estimate, so that a stalled store counts at once), and by a number of
spans. A request that would take the queue past ``max_drain_s`` or ``max_pending_spans``
raises ``errors.Overloaded`` at once (HTTP 503 + Retry-After, gRPC UNAVAILABLE +
RetryInfo): a collector retries later instead of waiting into its own timeout (10 s by
default), and nothing is dropped. ``admit()`` is the same check before a request is read
or parsed (its span count is not known yet): it refuses once the queue alone is past its
budget. Once closed both raise ``errors.StoreClosed``. The writer takes every queued
request (up to ``max_group_spans``) into one write: one fsync per group, however many
small requests arrive.

Logs requests (``submit_logs``) take the same queue, their log records counted as spans
for admission; what they yield is span annotations (``aggregator.logs``). After each
write the writer resolves the annotations of the traces it touched
(``aggregator.annotations``: the traces of the batch's annotations, and of its spans once
the store holds any annotation) and writes what they yield (tasks from GenAI content,
feedback from evaluations and Logfire annotations) before any request of the batch is
acknowledged: a crash in between loses nothing acknowledged, and the client's retry
resolves them again.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from concurrent.futures import Future
from typing import NamedTuple

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.annotations import resolve
from phospho_otel.aggregator.extract import extract
from phospho_otel.aggregator.logs import count_log_records, extract_logs
from phospho_otel.errors import Overloaded, StoreClosed
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import Store, StoreWriter, WriteResult

__all__ = ["IngestResult", "Ingestor", "count_spans"]

logger = logging.getLogger(__name__)

IngestResult = WriteResult
"""What ingesting one request did; ``rejected_spans`` and ``error_message`` make the
OTLP partial-success reply."""


def count_spans(request: ExportTraceServiceRequest) -> int:
    """Number of spans in a request."""
    return sum(
        len(scope_spans.spans)
        for resource_spans in request.resource_spans
        for scope_spans in resource_spans.scope_spans
    )


class _Item(NamedTuple):
    extraction: Extraction
    spans: int
    future: Future[WriteResult]


INLINE_EXTRACT_SPANS = 64
"""``ingest`` extracts requests up to this size on the event loop, larger ones in a
worker thread (so the loop keeps serving while a big batch is extracted)."""
ASSUMED_RATE = 20_000.0
"""Spans per second the writer is assumed to write until a write has been measured."""
MEASURED_WRITE_SPANS = 100
"""Writes of at least this many spans measure the rate (smaller ones are mostly the
commit's fixed cost, and would make the writer look slower than it is under load)."""


class Ingestor:
    """One writer thread in front of a store, fed by a queue bounded in spans.

    The CPU-bound extraction (``aggregator.extract``) runs in the caller's thread (or a
    worker thread for ``ingest``), so it overlaps with the writer's SQLite work, which
    runs without the GIL.

    Thread-safe: ``ingest`` from event loops, ``ingest_blocking`` from any thread.

    Args:
        store: where the writer thread writes (its only caller of ``write``).
        max_pending_spans: spans accepted and not yet durable beyond which new requests
            are refused with ``Overloaded``.
        max_group_spans: spans written in one transaction at most.
        max_drain_s: estimated seconds of writing (see the module doc) beyond which new
            requests are refused with ``Overloaded``.

    Either way, a request is still accepted when nothing else is pending, so that a large
    one cannot be refused forever.
    """

    def __init__(
        self,
        store: StoreWriter,
        *,
        max_pending_spans: int = 200_000,
        max_group_spans: int = 32_768,
        max_drain_s: float = 5.0,
    ) -> None:
        if max_pending_spans < 1:
            raise ValueError("max_pending_spans must be >= 1")
        if max_group_spans < 1:
            raise ValueError("max_group_spans must be >= 1")
        if not max_drain_s > 0:
            raise ValueError("max_drain_s must be > 0")
        self.store = store
        self.max_pending_spans = max_pending_spans
        self.max_group_spans = max_group_spans
        self.max_drain_s = max_drain_s
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self._rate: float | None = None  # spans/s, moving average of measured writes
        self._writing_since: float | None = None  # perf_counter() of the write under way
        self._writing_spans = 0
        self._resolver: Store | None = store if isinstance(store, Store) else None
        """The store annotations are resolved against (None: a writer that cannot be
        read, e.g. a test's fault injector, resolves nothing)."""
        counters = store.counters() if self._resolver is not None else {}
        self._annotated = bool(counters.get("annotations_received", 0)
                               or counters.get("tasks_deferred", 0))
        """Whether the store may hold annotations: then every write's traces are
        resolved, not only those of the annotations it carries."""
        self._thread = threading.Thread(
            target=self._run, name="phospho-ingest-writer", daemon=True
        )
        self._thread.start()

    @property
    def pending_spans(self) -> int:
        """Spans accepted and not yet durable."""
        return self._pending

    @property
    def write_rate(self) -> float:
        """Spans per second the writer is estimated to write."""
        return ASSUMED_RATE if self._rate is None else self._rate

    def drain_estimate_s(self, extra_spans: int = 0) -> float:
        """Estimated seconds until the pending spans, plus ``extra_spans``, are durable."""
        with self._cond:
            return self._drain_s(self._pending + extra_spans)

    def _drain_s(self, spans: int) -> float:
        # Called with the lock held.
        rate = self.write_rate
        estimate = spans / rate
        if self._writing_since is not None:
            # The write under way was estimated to take writing_spans / rate; time past
            # that is a stall the estimate has not seen yet (a lock, a slow disk).
            running = time.perf_counter() - self._writing_since
            estimate += max(0.0, running - self._writing_spans / rate)
        return estimate

    def _overloaded(self, spans: int) -> Overloaded:
        retry_after = min(30.0, max(1.0, math.ceil(self._drain_s(spans))))
        return Overloaded(retry_after)

    def admit(self) -> None:
        """Raise ``Overloaded`` if the queue alone is already past its budget (estimated
        drain time or spans), ``StoreClosed`` once closed: the check a receiver makes
        before reading or parsing a request whose span count it does not know yet."""
        with self._cond:
            if self._closed:
                raise StoreClosed("ingest queue")
            if self._pending and (self._pending >= self.max_pending_spans
                                  or self._drain_s(self._pending) >= self.max_drain_s):
                raise self._overloaded(self._pending)

    def _reserve(self, spans: int) -> None:
        with self._cond:
            if self._closed:
                raise StoreClosed("ingest queue")
            total = self._pending + spans
            if self._pending and (total > self.max_pending_spans
                                  or self._drain_s(total) > self.max_drain_s):
                raise self._overloaded(self._pending)
            self._pending += spans

    def _release(self, spans: int) -> None:
        with self._cond:
            self._pending -= spans

    def _enqueue(self, extraction: Extraction, spans: int) -> Future[WriteResult]:
        future: Future[WriteResult] = Future()
        with self._cond:
            if self._closed:
                self._pending -= spans
                raise StoreClosed("ingest queue")
            self._queue.append(_Item(extraction, spans, future))
            self._cond.notify()
        return future

    def submit(self, request: ExportTraceServiceRequest) -> Future[WriteResult]:
        """Extract a request here and queue it; the future resolves once it is durable.
        Raises ``Overloaded`` when the queue is full, ``StoreClosed`` once closed."""
        spans = count_spans(request)
        self._reserve(spans)
        try:
            extraction = extract(request)
        except BaseException:
            self._release(spans)
            raise
        return self._enqueue(extraction, spans)

    def submit_logs(self, request: ExportLogsServiceRequest) -> Future[WriteResult]:
        """``submit`` for a logs request (``aggregator.logs``): its log records count as
        spans for admission; the future resolves once what it yields is durable."""
        records = count_log_records(request)
        self._reserve(records)
        try:
            extraction = extract_logs(request)
        except BaseException:
            self._release(records)
            raise
        return self._enqueue(extraction, records)

    async def ingest(self, request: ExportTraceServiceRequest) -> IngestResult:
        """Store a request; returns once it is durable. Raises ``Overloaded``, or the
        store's error if the write failed."""
        spans = count_spans(request)
        self._reserve(spans)
        try:
            if spans <= INLINE_EXTRACT_SPANS:
                extraction = extract(request)
            else:
                loop = asyncio.get_running_loop()
                extraction = await loop.run_in_executor(None, extract, request)
        except BaseException:
            self._release(spans)
            raise
        return await asyncio.wrap_future(self._enqueue(extraction, spans))

    def ingest_blocking(
        self, request: ExportTraceServiceRequest, timeout_s: float | None = None
    ) -> IngestResult:
        """``ingest`` for threads. Raises ``TimeoutError`` if not durable within
        ``timeout_s`` (the write may still happen; a retry is then a harmless duplicate)."""
        return self.submit(request).result(timeout_s)

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Refuse new requests, write everything queued, stop the writer. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            logger.warning("ingest writer still busy after %s s", timeout_s)

    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            items = [self._queue.popleft()]
            total = items[0].spans
            while self._queue and total + self._queue[0].spans <= self.max_group_spans:
                item = self._queue.popleft()
                items.append(item)
                total += item.spans
        return items

    def _run(self) -> None:
        while True:
            items = self._take()
            if items is None:
                return
            live = [item for item in items if item.future.set_running_or_notify_cancel()]
            spans = sum(item.spans for item in items)
            with self._cond:
                started = self._writing_since = time.perf_counter()
                self._writing_spans = spans
            try:
                self._write(live)
            finally:
                elapsed = time.perf_counter() - started
                with self._cond:
                    self._pending -= spans
                    self._writing_since = None
                    if spans >= MEASURED_WRITE_SPANS and elapsed > 0:
                        rate = spans / elapsed
                        self._rate = rate if self._rate is None else (
                            0.8 * self._rate + 0.2 * rate)

    def _write(self, items: list[_Item]) -> None:
        if not items:
            return
        try:
            results = self.store.write([item.extraction for item in items])
            self._resolve_annotations([item.extraction for item in items])
        except Exception as exc:
            if len(items) > 1:
                # Isolate the request that failed; the others still get written.
                for item in items:
                    self._write_alone(item)
                return
            logger.exception("ingest write failed (%d spans)", items[0].spans)
            items[0].future.set_exception(exc)
            return
        for item, result in zip(items, results, strict=True):
            item.future.set_result(result)

    def _resolve_annotations(self, batch: list[Extraction]) -> None:
        """Write what the stored annotations of the batch's traces yield (module doc)."""
        store = self._resolver
        if store is None:
            return
        trace_ids = {a.trace_id for x in batch for a in x.annotations}
        if trace_ids:
            self._annotated = True
        if self._annotated:
            trace_ids.update(record.trace_id for x in batch for _, group in x.groups
                             for record in group)
        if not trace_ids:
            return
        with store.read() as reader:
            derived = resolve(reader, sorted(trace_ids))
        if derived is not None:
            store.write([derived])

    def _write_alone(self, item: _Item) -> None:
        try:
            (result,) = self.store.write([item.extraction])
            self._resolve_annotations([item.extraction])
        except Exception as exc:
            logger.exception("ingest write failed (%d spans)", item.spans)
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)
