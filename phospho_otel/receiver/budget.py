"""What the two receivers share about refusing work: one bound on the request bytes they
hold at once (``ByteBudget``), and how a store that cannot keep a request is answered
(``store_error``).

A request takes a ``Reservation`` when it starts and gives it back once answered; it
takes its body's declared size before reading it (HTTP ``Content-Length``), or each
chunk as it arrives (chunked bodies, gRPC messages), and the inflated size of a gzip body
once inflated. Past the budget ``take`` raises ``errors.Unavailable`` (HTTP 503 +
Retry-After, gRPC UNAVAILABLE + RetryInfo): the body is refused before it is read when its
size was declared, so memory is bounded before anything is parsed. A request holding
nothing else is always admitted, however large (under the body size limit), so it cannot
be refused forever.
"""

from __future__ import annotations

import threading
from types import TracebackType

from phospho_otel.errors import ServerError, StoreError, Unavailable

__all__ = ["DEFAULT_MAX_BUFFERED_BYTES", "ByteBudget", "Reservation", "store_error"]

DEFAULT_MAX_BUFFERED_BYTES = 128 * 1024 * 1024
"""The budget of a receiver not given one (the server gives ``max_buffered_bytes``)."""

RETRY_AFTER_S = 1.0
"""What a refusal asks the client to wait: bodies come and go in well under a second."""


class ByteBudget:
    """At most ``limit`` bytes held by all reservations together (thread-safe)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Bytes held now."""
        return self._held

    def reserve(self) -> Reservation:
        """A new, empty reservation (use it as a context manager to give it back)."""
        return Reservation(self)

    def _take(self, reservation: Reservation, size: int) -> None:
        with self._lock:
            others = self._held - reservation.size
            if others > 0 and self._held + size > self.limit:
                raise Unavailable(
                    f"{self._held} bytes of requests are being read, decoded or written (the "
                    f"limit is {self.limit}); retry in {RETRY_AFTER_S:.0f} s", RETRY_AFTER_S)
            self._held += size
            reservation.size += size

    def _give_back(self, reservation: Reservation) -> None:
        with self._lock:
            self._held -= reservation.size
            reservation.size = 0


class Reservation:
    """The bytes one request holds of a ``ByteBudget``."""

    __slots__ = ("budget", "size")

    def __init__(self, budget: ByteBudget) -> None:
        self.budget = budget
        self.size = 0

    def take(self, size: int) -> None:
        """Hold ``size`` more bytes; ``Unavailable`` (and nothing more held) if that would
        pass the budget while other requests hold some."""
        if size > 0:
            self.budget._take(self, size)

    def release(self) -> None:
        """Give everything back (idempotent)."""
        if self.size:
            self.budget._give_back(self)

    def __enter__(self) -> Reservation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def store_error(exc: StoreError) -> ServerError:
    """A ``StoreError`` as the receivers answer it: permanent (HTTP 500, gRPC INTERNAL:
    OTLP exporters retry neither, and a retry would fail the same way), with the store's
    message."""
    return ServerError(f"the store cannot keep this request: {exc}")
