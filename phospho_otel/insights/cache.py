"""``InsightsCache``: insight results by (function, parameters), served with bounded
staleness.

Insights aggregate every session in range (~100 ms at 100,000 sessions), and under
steady ingest the data changes many times a second, so a result is reused while it is
younger than ``max_age_s`` (age counted from the snapshot it was computed on):

* data unchanged since the result was computed (``ViewReader.data_version``): served,
  whatever its age: an idle store answers fresh figures from the cache;
* younger than ``max_age_s / 2``: served, without even looking at the store;
* between ``max_age_s / 2`` and ``max_age_s``, data changed: served, and one background
  thread recomputes it (stale-while-revalidate), so that under steady requests the result
  is renewed before it expires;
* older than ``max_age_s`` (or none yet), data changed: recomputed in the request.

So a served result is never older than ``max_age_s`` unless the data has not changed
since. At most one computation per key runs at a time (a request needing a key being
computed waits for that computation), and at most one background refresh at a time in
all. The least recently used of more than ``max_entries`` keys is dropped. Thread-safe.
Results are returned as they were computed: insight results are immutable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from phospho_otel.errors import StoreClosed
from phospho_otel.store.api import Store, StoreReader

__all__ = ["DEFAULT_MAX_AGE_S", "MAX_MAX_AGE_S", "CachedResult", "InsightsCache"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_AGE_S = 2.0
"""How old (seconds) a served result may be when the data has changed since it was
computed, unless the cache or the request says otherwise."""
MAX_MAX_AGE_S = 3600.0

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CachedResult(Generic[R]):
    """An insight result, when it was computed (the instant of its snapshot, ns since the
    epoch) and the staleness bound it was served under."""

    value: R
    computed_at_ns: int
    max_age_s: float


@dataclass
class _Entry:
    value: Any
    version: float  # data_version in the snapshot the value was computed in
    started: float  # time.monotonic() when that snapshot was taken
    computed_at_ns: int  # the same instant, time.time_ns()


@dataclass
class _Flight:
    """One computation under way; requests wanting its key wait for it."""

    done: threading.Event = field(default_factory=threading.Event)
    entry: _Entry | None = None
    error: BaseException | None = None


_Key = tuple[Any, ...]


class InsightsCache:
    """Insight results over ``store``, by function and keyword arguments."""

    def __init__(self, store: Store, *, max_age_s: float = DEFAULT_MAX_AGE_S,
                 max_entries: int = 64) -> None:
        if not 0 <= max_age_s <= MAX_MAX_AGE_S:
            raise ValueError(f"max_age_s must be in [0, {MAX_MAX_AGE_S:g}], got {max_age_s}")
        self.store = store
        self.max_age_s = max_age_s
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._flights: dict[_Key, _Flight] = {}
        self._refreshing = False  # a background refresh is running

    def __len__(self) -> int:
        """Number of results held."""
        with self._lock:
            return len(self._entries)

    def get(self, fn: Callable[..., R], *, max_age_s: float | None = None,
            **kwargs: Any) -> CachedResult[R]:
        """``fn(reader, **kwargs)`` on a snapshot of the store, or a cached result of it
        no older than ``max_age_s`` (default: the cache's). ``kwargs`` must be hashable."""
        max_age = self.max_age_s if max_age_s is None else max_age_s
        key = (fn.__module__, fn.__qualname__, *sorted(kwargs.items()))
        with self._lock:
            entry = self._entries.get(key)
        if entry is not None and time.monotonic() - entry.started >= max_age / 2:
            with self.store.read() as reader:
                version = reader.data_version()
            age = time.monotonic() - entry.started
            if version != entry.version:
                if age >= max_age:
                    entry = None
                else:
                    self._refresh_in_background(key, fn, kwargs, entry)
        if entry is None:
            entry = self._compute(key, fn, kwargs)
        else:
            with self._lock:
                if key in self._entries:
                    self._entries.move_to_end(key)
        return CachedResult(entry.value, entry.computed_at_ns, max_age)

    def _compute(self, key: _Key, fn: Callable[..., Any], kwargs: dict[str, Any]) -> _Entry:
        """Compute ``key`` now, or wait for the computation of it already under way."""
        with self._lock:
            flight = self._flights.get(key)
            owner = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
        if owner:
            self._run(key, flight, fn, kwargs)
        else:
            flight.done.wait()
        if flight.error is not None:
            raise flight.error
        assert flight.entry is not None
        return flight.entry

    def _run(self, key: _Key, flight: _Flight, fn: Callable[..., Any],
             kwargs: dict[str, Any]) -> None:
        try:
            reader: StoreReader
            with self.store.read() as reader:
                started = time.monotonic()
                computed_at_ns = time.time_ns()
                version = reader.data_version()
                value = fn(reader, **kwargs)
            flight.entry = _Entry(value, version, started, computed_at_ns)
            with self._lock:
                self._entries[key] = flight.entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        except BaseException as exc:
            flight.error = exc
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()

    def _refresh_in_background(self, key: _Key, fn: Callable[..., Any],
                               kwargs: dict[str, Any], stale: _Entry) -> None:
        with self._lock:
            # not if another refresh replaced ``stale`` since the caller read it
            if self._refreshing or key in self._flights or self._entries.get(key) is not stale:
                return
            self._refreshing = True
            flight = self._flights[key] = _Flight()

        def refresh() -> None:
            try:
                self._run(key, flight, fn, kwargs)
                # a refresh that meets the store closing (the server stopping) says nothing
                if flight.error is not None and not isinstance(flight.error, StoreClosed):
                    logger.warning("insights refresh of %s failed: %s", key[1], flight.error)
            finally:
                with self._lock:
                    self._refreshing = False

        threading.Thread(target=refresh, name="insights-refresh", daemon=True).start()
