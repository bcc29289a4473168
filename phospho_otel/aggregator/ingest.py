"""The ingest queue: receivers hand decoded requests to one writer thread.

Receivers (HTTP event loop, gRPC worker threads) call ``ingest``/``ingest_blocking``; the
request is extracted (``aggregator.extract``) in the caller's thread or a worker thread,
queued, and written by the one writer thread (``store.api.StoreWriter.write``). The call
returns only once the request's spans are durable in the store, so the receiver
acknowledges nothing that could be lost. The queue is bounded in *spans*: past
``max_pending_spans`` a new request raises ``errors.Overloaded`` at once (HTTP 503 +
Retry-After, gRPC UNAVAILABLE), so a collector retries later instead of anything being
dropped; once closed it raises ``errors.StoreClosed``. The writer takes every queued
request (up to ``max_group_spans``) into one write: one fsync per group, however many
small requests arrive.
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

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import extract
from phospho_otel.errors import Overloaded, StoreClosed
from phospho_otel.model.records import Extraction
from phospho_otel.store.api import StoreWriter, WriteResult

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


class Ingestor:
    """One writer thread in front of a store, fed by a queue bounded in spans.

    The CPU-bound extraction (``aggregator.extract``) runs in the caller's thread (or a
    worker thread for ``ingest``), so it overlaps with the writer's SQLite work, which
    runs without the GIL.

    Thread-safe: ``ingest`` from event loops, ``ingest_blocking`` from any thread.

    Args:
        store: where the writer thread writes (its only caller of ``write``).
        max_pending_spans: spans accepted and not yet durable beyond which new requests
            are refused with ``Overloaded``. A single request larger than this is still
            accepted when nothing else is pending, so it cannot be refused forever.
        max_group_spans: spans written in one transaction at most.
    """

    def __init__(
        self,
        store: StoreWriter,
        *,
        max_pending_spans: int = 200_000,
        max_group_spans: int = 32_768,
    ) -> None:
        if max_pending_spans < 1:
            raise ValueError("max_pending_spans must be >= 1")
        if max_group_spans < 1:
            raise ValueError("max_group_spans must be >= 1")
        self.store = store
        self.max_pending_spans = max_pending_spans
        self.max_group_spans = max_group_spans
        self._queue: collections.deque[_Item] = collections.deque()
        self._cond = threading.Condition()
        self._pending = 0
        self._closed = False
        self._rate = 20_000.0  # spans/s, moving average, for Retry-After
        self._thread = threading.Thread(
            target=self._run, name="phospho-ingest-writer", daemon=True
        )
        self._thread.start()

    @property
    def pending_spans(self) -> int:
        """Spans accepted and not yet durable."""
        return self._pending

    def _reserve(self, spans: int) -> None:
        with self._cond:
            if self._closed:
                raise StoreClosed("ingest queue")
            if self._pending and self._pending + spans > self.max_pending_spans:
                retry_after = min(30.0, max(1.0, math.ceil(self._pending / self._rate)))
                raise Overloaded(retry_after)
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
            started = time.perf_counter()
            try:
                self._write(live)
            finally:
                spans = sum(item.spans for item in items)
                elapsed = time.perf_counter() - started
                with self._cond:
                    self._pending -= spans
                    if spans >= 100 and elapsed > 0:
                        self._rate = 0.8 * self._rate + 0.2 * (spans / elapsed)

    def _write(self, items: list[_Item]) -> None:
        if not items:
            return
        try:
            results = self.store.write([item.extraction for item in items])
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

    def _write_alone(self, item: _Item) -> None:
        try:
            (result,) = self.store.write([item.extraction])
        except Exception as exc:
            logger.exception("ingest write failed (%d spans)", item.spans)
            item.future.set_exception(exc)
        else:
            item.future.set_result(result)
