"""``PhosphoSpanProcessor``: stamps session scope onto every span at start, and exports
ended spans in the background through a bounded queue.

Threading contract (as for every OTel span processor): ``on_start`` and ``on_end`` run
on the app's threads, never block and never raise. ``on_end`` appends the span to a
bounded deque (O(1)); when the deque is full the span is dropped and counted. One
daemon thread takes batches off the queue, applies the attribute size limit, encodes
them with the fast OTLP encoder and sends them through a ``Transport``, retrying
retryable failures with exponential backoff for as long as it takes (new spans wait in
the queue meanwhile, so a collector that goes away and comes back loses nothing within
the queue's capacity). Counters: ``stats()``.

Nothing raises out of the export thread: a span whose truncated copy cannot be built
(``_otel_compat.copy_with_attributes``, an SDK change) is exported untruncated, with one
warning; text that is not valid Unicode is repaired by the encoder (``_encode``).

Shutdown (``shutdown(timeout_s)``) returns within ``timeout_s`` plus
``ABORT_GRACE_S`` whatever the collector does: when the flush has not finished in
time, the request in flight is aborted (``Transport.abort``) and what was not sent is
counted as dropped. A span that ends after shutdown (an atexit hook or a daemon thread
logging at interpreter exit) is not exported: it is counted as dropped, with one
warning per process naming the cause.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.context import Context, get_value
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from phospho_otel.sdk import _otel_compat as compat
from phospho_otel.sdk._context import SCOPE_KEY, Scope, scope_from_baggage
from phospho_otel.sdk._encode import encode_requests, note_repair, repair_text, repairs
from phospho_otel.sdk._once import warn_once
from phospho_otel.sdk._settings import (
    DEFAULT_MAX_ATTRIBUTE_BYTES,
    DEFAULT_MAX_EXPORT_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_SCHEDULE_DELAY_S,
    DEFAULT_TIMEOUT_S,
)
from phospho_otel.sdk.exporter import ExportOutcome, Transport
from phospho_otel.semconv import PhosphoAttributes

__all__ = ["PhosphoSpanProcessor", "ProcessorStats"]

logger = logging.getLogger(__name__)

_TRUNCATED = PhosphoAttributes.TRUNCATED
_MAX_BACKOFF_S = 5.0
ABORT_GRACE_S = 0.25
"""How long ``shutdown`` waits, past its timeout, for the export thread to see the
request it aborted end (the thread is a daemon: it is not waited for beyond that)."""


@dataclass(frozen=True)
class ProcessorStats:
    """Counters of a span processor since it started."""

    exported: int
    """Spans the receiver accepted."""
    dropped: int
    """Spans not exported: the queue was full, they were left over at shutdown (not
    sent within its timeout, or in a request it aborted), or they ended after
    shutdown."""
    failed: int
    """Spans the receiver refused (non-retryable error or partial-success rejection)."""
    queued: int
    """Spans waiting in the queue right now."""
    retries: int
    """Export attempts that failed with a retryable error and were retried."""
    truncated: int
    """Spans on which at least one attribute value was truncated."""
    repaired: int = 0
    """Strings (attribute keys and values, names) that were not valid Unicode (lone
    surrogates), sent with U+FFFD in place of each lone surrogate."""


def truncate_utf8(value: str, max_bytes: int) -> str:
    """The longest prefix of ``value`` that takes at most ``max_bytes`` in UTF-8; lone
    surrogates in it become U+FFFD (``_encode.repair_text``, counted)."""
    try:
        data = value.encode("utf-8")
    except UnicodeEncodeError:
        note_repair("a truncated attribute value")
        data = repair_text(value).encode("utf-8")
    return data[:max_bytes].decode("utf-8", "ignore")


def scope_attributes(parent_context: Context | None = None) -> dict[str, Any] | None:
    """The attributes a span started in ``parent_context`` (or the current context)
    gets stamped with: the session scope's (of ``parent_context``, else of the current
    context), else session/user from W3C baggage."""
    scope = parent_context.get(SCOPE_KEY) if parent_context is not None else None
    if scope is None:
        scope = get_value(SCOPE_KEY)
    if isinstance(scope, Scope):
        return scope.attributes
    return scope_from_baggage(parent_context)


def stamp_of(context: Context) -> dict[str, Any] | None:
    """``scope_attributes(context)`` for a context derived from the current one (the
    fast path's), whose scope, if any, is its own: one lookup fewer."""
    scope = context.get(SCOPE_KEY)
    if isinstance(scope, Scope):
        return scope.attributes
    return scope_from_baggage(context)


def _cut_array(value: Sequence[Any], chars: int, max_bytes: int) -> tuple[Any, ...] | None:
    cut = False
    values = []
    for v in value:
        if isinstance(v, str) and len(v) > chars and (
                len(v.encode("utf-8", "surrogatepass")) > max_bytes):
            v = truncate_utf8(v, max_bytes)
            cut = True
        values.append(v)
    return tuple(values) if cut else None


def cut_values(items: Mapping[str, Any], keys: list[str], chars: int,
               max_bytes: int) -> tuple[dict[str, Any], list[str]]:
    """A copy of ``items`` with the values of ``keys`` cut to ``max_bytes`` where they
    are longer, and the keys actually cut."""
    new = dict(items)
    cut = []
    for key in keys:
        value = new[key]
        if isinstance(value, str):
            if len(value.encode("utf-8", "surrogatepass")) > max_bytes:
                new[key] = truncate_utf8(value, max_bytes)
                cut.append(key)
        elif isinstance(value, bytes):
            new[key] = value[:max_bytes]
            cut.append(key)
        else:
            array = _cut_array(value, chars, max_bytes)
            if array is not None:
                new[key] = array
                cut.append(key)
    return new, cut


class PhosphoSpanProcessor(SpanProcessor):
    """Stamp session scope at start; export in the background with a bounded queue.

    Args:
        transport: where encoded requests go (``exporter.make_transport``).
        max_queue_size: spans held at most; more are dropped and counted.
        max_export_batch_size: spans per export request at most.
        schedule_delay_s: how long a partial batch may wait before it is sent.
        max_attribute_bytes: UTF-8 bytes an attribute value may take; longer string
            values (and each string of an array) are cut, and the span gets
            ``phospho.truncated`` listing the keys that were cut.
        max_request_bytes: requests are split to stay under this size.
        timeout_s: per-request timeout.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
        schedule_delay_s: float = DEFAULT_SCHEDULE_DELAY_S,
        max_attribute_bytes: int = DEFAULT_MAX_ATTRIBUTE_BYTES,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        for name, value in (
            ("max_queue_size", max_queue_size),
            ("max_export_batch_size", max_export_batch_size),
            ("max_attribute_bytes", max_attribute_bytes),
            ("max_request_bytes", max_request_bytes),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if max_export_batch_size > max_queue_size:
            raise ValueError("max_export_batch_size must not exceed max_queue_size")
        if schedule_delay_s <= 0 or timeout_s <= 0:
            raise ValueError("schedule_delay_s and timeout_s must be positive")
        self._transport = transport
        self._max_queue = max_queue_size
        self._batch = max_export_batch_size
        self._delay = schedule_delay_s
        self._max_attr = max_attribute_bytes
        self._max_attr_chars = max_attribute_bytes // 4  # shorter strings always fit
        self._max_request = max_request_bytes
        self._timeout = timeout_s
        self._queue: deque[ReadableSpan] = deque()
        self._exported = 0
        self._failed = 0
        self._retries = 0
        self._truncated = 0
        self._repaired = 0
        self._dropped = 0
        self._episode_drops = 0
        self._drop_lock = threading.Lock()
        self._inflight = 0
        # spans taken off the queue, not yet counted as exported/failed/dropped; who
        # counts them (the export thread, or shutdown once it gave up on that thread)
        # is decided under _count_lock, by _closed
        self._unsettled = 0
        self._count_lock = threading.Lock()
        self._closed = False
        self._copy_failed = False  # _limit could not copy a span (logged once)
        self._shutdown = False
        self._retired = False  # a newer init() replaced this processor
        self._stop = threading.Event()  # set at shutdown: the worker finishes and exits
        self._abort = threading.Event()  # set when shutdown gives up: stop retrying
        self._start_worker()
        if hasattr(os, "register_at_fork"):
            weak_self = weakref.ref(self)

            def after_in_child() -> None:
                processor = weak_self()
                if processor is not None:
                    processor._after_fork()

            os.register_at_fork(after_in_child=after_in_child)

    def _start_worker(self) -> None:
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._worker = threading.Thread(
            target=self._run, name="phospho-otel-export", daemon=True
        )
        self._worker.start()

    def _after_fork(self) -> None:
        # The worker thread does not survive fork(); spans queued by the parent are the
        # parent's to send, so the child starts empty.
        self._queue.clear()
        self._inflight = 0
        self._unsettled = 0
        self._drop_lock = threading.Lock()
        self._count_lock = threading.Lock()
        after_fork = getattr(self._transport, "after_fork", None)
        if after_fork is not None:
            after_fork()
        if not self._shutdown:
            self._start_worker()

    # -- app threads ---------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Stamp the session scope (or session/user from W3C baggage) onto ``span``.
        Keys the span already has are left alone."""
        if self._shutdown:
            return
        try:
            stamp = scope_attributes(parent_context)
            if not stamp:
                return
            existing = span.attributes
            if existing:
                stamp = {k: v for k, v in stamp.items() if k not in existing}
            if stamp:
                span.set_attributes(stamp)
        except Exception:  # never break the app's span
            logger.debug("phospho: could not stamp span", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue the ended span for export; drop it (counted) if the queue is full, or
        if the processor was shut down (one warning per process)."""
        context = span.context
        if context is None or not context.trace_flags.sampled:
            return
        if self._shutdown:
            if not self._retired:
                self._late(span)
            return
        queue = self._queue
        if len(queue) >= self._max_queue:
            with self._drop_lock:
                self._dropped += 1
                self._episode_drops += 1
            return
        queue.append(span)
        if len(queue) == self._batch:
            self._wake.set()

    def _late(self, span: ReadableSpan) -> None:
        with self._drop_lock:
            self._dropped += 1
        warn_once(
            logger, "after-shutdown",
            "phospho: span %r ended after shutdown(): not exported (counted in "
            "stats().dropped). At interpreter exit this is an atexit hook registered "
            "before phospho_otel.init(), or a daemon thread, still logging after the SDK "
            "shut down; log before that, or call phospho_otel.flush() there "
            "(warned once per process)", span.name,
        )

    def retire(self) -> None:
        """A newer ``init()`` replaced this (shut down) processor, which may still be on
        the provider: spans it sees from now on are not its to count."""
        self._retired = True

    # -- export thread -------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(self._delay)
            self._wake.clear()
            if self._abort.is_set():  # shutdown gave up; it counts what is left
                return
            try:
                self._drain()
            except Exception:  # keep the worker alive whatever happens
                logger.exception("phospho: unexpected error in the export thread")
            if self._stop.is_set() and not self._queue:
                self._report_drops()
                return

    def _take(self) -> list[ReadableSpan]:
        with self._count_lock:
            if self._closed:
                return []
            queue = self._queue
            n = min(len(queue), self._batch)
            self._inflight = n  # before popping: force_flush() never sees the spans nowhere
            self._unsettled = n
            return [queue.popleft() for _ in range(n)]

    def _drain(self) -> None:
        while self._queue:
            batch = self._take()
            if not batch:  # shutdown gave up on this thread
                return
            self._report_drops()
            try:
                self._export_batch(batch)
            finally:
                with self._count_lock:  # spans an unexpected error left uncounted
                    if self._unsettled and not self._closed:
                        self._failed += self._unsettled
                        self._unsettled = 0
                self._inflight = 0
                with self._idle:
                    self._idle.notify_all()
            if self._abort.is_set():
                return
        with self._idle:
            self._idle.notify_all()

    def _export_batch(self, batch: list[ReadableSpan]) -> None:
        repaired = repairs()
        spans = [self._limit(span) for span in batch]
        requests = encode_requests(spans, self._max_request)
        self._repaired += repairs() - repaired
        skipped = len(spans) - sum(count for _, count in requests)
        if skipped:  # spans the encoder could not encode at all
            self._settle(count=skipped, failed=skipped)
        for payload, count in requests:
            self._send(payload, count)

    def _settle(self, *, count: int, exported: int = 0, failed: int = 0,
                dropped: int = 0) -> bool:
        """Count ``count`` spans taken off the queue; False (nothing counted) if
        shutdown already counted them, having given up on this thread."""
        with self._count_lock:
            if self._closed:
                return False
            self._unsettled -= count
            self._exported += exported
            self._failed += failed
        if dropped:
            with self._drop_lock:
                self._dropped += dropped
        return True

    def _send(self, payload: bytes, count: int) -> None:
        backoff = 0.05
        warned = False
        while True:
            if self._abort.is_set():  # shutdown gave up: not sent
                self._settle(count=count, dropped=count)
                return
            outcome: ExportOutcome = self._transport.export(payload, self._timeout)
            if outcome.ok:
                rejected = min(outcome.rejected_spans, count)
                if not self._settle(count=count, exported=count - rejected, failed=rejected):
                    return
                if rejected:
                    logger.warning("phospho: the receiver rejected %d spans: %s",
                                   rejected, outcome.message)
                if warned:
                    logger.warning("phospho: export works again")
                return
            if self._abort.is_set():  # aborted at shutdown (or failed meanwhile)
                self._settle(count=count, dropped=count)
                return
            if not outcome.retryable:
                if self._settle(count=count, failed=count):
                    logger.warning("phospho: export of %d spans failed, not retryable: %s",
                                   count, outcome.message)
                return
            self._retries += 1
            if not warned:
                logger.warning("phospho: export failed (%s); retrying, spans wait in the queue",
                               outcome.message)
                warned = True
            delay = outcome.retry_after_s if outcome.retry_after_s is not None else backoff
            delay = min(delay, _MAX_BACKOFF_S) * random.uniform(0.8, 1.2)
            backoff = min(backoff * 2, _MAX_BACKOFF_S)
            if self._abort.wait(delay):
                self._settle(count=count, dropped=count)
                return

    def _report_drops(self) -> None:
        """One warning per episode of drops, with the count. An episode ends when the
        export thread makes room in the queue again (or at shutdown)."""
        if not self._episode_drops:
            return
        with self._drop_lock:
            count, self._episode_drops = self._episode_drops, 0
        logger.warning(
            "phospho: export queue full (%d spans): dropped %d spans (%d in total)",
            self._max_queue, count, self._dropped,
        )

    def _limit(self, span: ReadableSpan) -> ReadableSpan:
        """``span``, or a copy with over-long attribute values cut and marked. If the
        copy cannot be made (an SDK change), the span as it is (logged once)."""
        attributes = compat.span_attributes(span)
        if not attributes:
            return span
        items = getattr(attributes, compat.BOUNDED_DICT_FIELD, attributes)
        # keys whose value may be too long: strings longer than chars (under which any
        # string fits), bytes, arrays with such strings (inline: runs for every span)
        chars = self._max_attr_chars
        over: list[str] | None = None
        for key, value in items.items():
            if type(value) is str:
                if len(value) <= chars:
                    continue
            elif isinstance(value, bytes):
                if len(value) <= self._max_attr:
                    continue
            elif not (isinstance(value, (tuple, list)) and any(
                type(v) is str and len(v) > chars for v in value
            )):
                continue
            if over is None:
                over = []
            over.append(key)
        if over is None:
            return span
        new, cut = cut_values(items, over, self._max_attr_chars, self._max_attr)
        if not cut:
            return span
        previous = new.get(_TRUNCATED)
        if isinstance(previous, (tuple, list)):
            cut = [*previous, *(k for k in cut if k not in previous)]
        new[_TRUNCATED] = tuple(cut)
        try:
            limited = compat.copy_with_attributes(
                span, compat.counted_attributes(new, span.dropped_attributes))
        except Exception:
            if not self._copy_failed:
                self._copy_failed = True
                logger.warning("phospho: cannot copy a span to truncate its attributes; "
                               "exporting such spans untruncated", exc_info=True)
            return span
        self._truncated += 1
        return limited

    # -- lifecycle -----------------------------------------------------------------

    def stats(self) -> ProcessorStats:
        """The counters (a consistent-enough snapshot; read from any thread)."""
        return ProcessorStats(
            exported=self._exported,
            dropped=self._dropped,
            failed=self._failed,
            queued=len(self._queue) + self._inflight,
            retries=self._retries,
            truncated=self._truncated,
            repaired=self._repaired,
        )

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued so far; True if done within the timeout."""
        deadline = time.monotonic() + timeout_millis / 1000
        if not self._worker.is_alive():
            return not self._queue
        with self._idle:
            while self._queue or self._inflight:
                self._wake.set()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
        return True

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Flush for up to ``timeout_s``, then stop the export thread; return within
        ``timeout_s + ABORT_GRACE_S`` even if the collector never answers (the request
        in flight is aborted). What could not be sent is counted as dropped, and so is
        every span that ends afterwards. Idempotent."""
        if self._shutdown:
            return
        timeout_s = max(0.0, timeout_s)
        deadline = time.monotonic() + timeout_s
        self.force_flush(int(timeout_s * 1000))
        self._shutdown = True
        self._stop.set()
        self._wake.set()
        self._worker.join(max(0.0, deadline - time.monotonic()))
        if self._worker.is_alive():  # the flush did not finish in time: give up
            self._abort.set()
            try:
                self._transport.abort()
            except Exception:  # a transport of the app's that fails to abort
                logger.debug("phospho: transport abort failed", exc_info=True)
            self._wake.set()
            self._worker.join(ABORT_GRACE_S)
        with self._count_lock:
            self._closed = True  # the export thread, if still running, counts nothing
            left = len(self._queue) + self._unsettled
            self._queue.clear()
            self._unsettled = 0
            self._inflight = 0
        if left:
            with self._drop_lock:
                self._dropped += left
                self._episode_drops += left
            self._report_drops()
        self._transport.close()
