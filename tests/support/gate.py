"""A writer that falls behind on demand: ``GatedWriter`` stands between the aggregator's
``Ingestor`` and a store, and while its gate is closed every write waits, as a writer
stuck behind a slow disk or a lock would. Tests of queueing and back-pressure close it,
fill the queue, and open it again; open, it changes nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from phospho_otel.model.records import Extraction
from phospho_otel.store.api import StoreWriter, WriteResult

__all__ = ["GatedWriter"]


class GatedWriter:
    """A ``StoreWriter`` passing writes to ``store`` once its gate is open (it starts
    open). ``batches`` records the size of each write it passed on, in order."""

    def __init__(self, store: StoreWriter, timeout_s: float = 30.0) -> None:
        self.store = store
        self.timeout_s = timeout_s
        self.batches: list[int] = []
        self._open = threading.Event()
        self._open.set()
        self._waiting = threading.Event()

    def close(self) -> None:
        """Hold every write from now on until ``open``."""
        self._open.clear()
        self._waiting.clear()

    def open(self) -> None:
        """Let the held writes and every later one through."""
        self._open.set()

    def wait_until_blocked(self, timeout_s: float = 10.0) -> None:
        """Block until a write is waiting at the closed gate."""
        if not self._waiting.wait(timeout_s):
            raise TimeoutError("no write reached the gate")

    def write(self, batch: Sequence[Extraction]) -> list[WriteResult]:
        if not self._open.is_set():
            self._waiting.set()
            if not self._open.wait(self.timeout_s):
                raise TimeoutError(f"the gate stayed closed for {self.timeout_s} s")
        self.batches.append(len(batch))
        return self.store.write(batch)

    def counters(self) -> dict[str, int]:
        return self.store.counters()
