"""``WebhookSender``: POSTs JSON payloads (event detections) to URLs from one background
thread, bounded and never blocking its caller.

* ``send(url, payload)`` serialises the payload (a ``TypeError`` at the call site if it is
  not JSON) and queues it; when ``max_queue`` deliveries are already waiting (queued or
  waiting for a retry) it drops it, counts it in ``dropped``, returns False and warns
  (once per minute at most, with the number dropped since).
* One daemon thread, started by the first ``send``, posts each delivery with httpx
  (``Content-Type: application/json``). A 2xx answer is a success (``sent``). Connection
  errors, timeouts, 429 and 5xx are retried after ``backoff_s``, doubling each time (or
  the ``Retry-After`` the server gave, up to ``MAX_BACKOFF_S``), up to ``max_attempts``
  attempts in all; then, or at once for any other answer (3xx, 4xx), the delivery is
  given up (``failed``, warned about once per minute at most). A delivery waiting for its
  retry does not hold up the others.
* ``close(timeout_s)`` stops accepting, delivers what it can within ``timeout_s`` (retries
  due after that are not awaited) and drops the rest (``dropped``).

Thread-safe. The counters are totals since creation.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

__all__ = ["MAX_BACKOFF_S", "WebhookSender", "event_payload"]

logger = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0
"""The longest wait between two attempts of one delivery."""
_WARN_EVERY_S = 60.0


def event_payload(event: Any, *, task_id: str | None = None, session_id: str | None = None,
                  user_id: str | None = None, time_ns: int | None = None,
                  **extra: Any) -> dict[str, Any]:
    """The JSON body of one event detection: ``{"event", "source", "score", "scope",
    "task_id", "session_id", "user_id", "time_ns", ...extra}`` from a
    ``model.analysis.DetectedEvent``."""
    return {"event": event.name, "source": event.source, "score": event.score,
            "scope": event.scope, "task_id": task_id, "session_id": session_id,
            "user_id": user_id, "time_ns": time_ns, **extra}


@dataclass(slots=True)
class _Delivery:
    url: str
    body: bytes
    attempts: int = 0


class _Throttled:
    """A warning logged at most once per ``_WARN_EVERY_S``, with the count since."""

    def __init__(self, message: str) -> None:
        self.message = message
        self.last = -_WARN_EVERY_S
        self.suppressed = 0

    def warn(self, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < _WARN_EVERY_S:
            self.suppressed += 1
            return
        note = f" ({self.suppressed} more since the last warning)" if self.suppressed else ""
        logger.warning(self.message + note, *args)
        self.last = now
        self.suppressed = 0


class WebhookSender:
    """Delivers JSON payloads to URLs in the background (see the module docstring)."""

    def __init__(self, max_queue: int = 10_000, timeout_s: float = 5, max_attempts: int = 5,
                 backoff_s: float = 0.5) -> None:
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {max_queue}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if backoff_s < 0:
            raise ValueError(f"backoff_s must be 0 or more, got {backoff_s}")
        self.max_queue = max_queue
        self.timeout_s = float(timeout_s)
        self.max_attempts = max_attempts
        self.backoff_s = float(backoff_s)
        self._cond = threading.Condition()
        self._ready: deque[_Delivery] = deque()
        self._waiting: list[tuple[float, int, _Delivery]] = []  # heap by due time
        self._order = itertools.count()
        self._in_flight = 0
        self._closing = False
        self._deadline = float("inf")
        self._thread: threading.Thread | None = None
        self._sent = 0
        self._failed = 0
        self._dropped = 0
        self._full_warning = _Throttled(
            "webhooks: %d deliveries are waiting; dropping a new one")
        self._failed_warning = _Throttled("webhooks: gave up a delivery to %s: %s")

    # -- counters ------------------------------------------------------------------------

    @property
    def sent(self) -> int:
        """Deliveries answered 2xx."""
        return self._sent

    @property
    def failed(self) -> int:
        """Deliveries given up: non-retryable answer, or every attempt failed."""
        return self._failed

    @property
    def dropped(self) -> int:
        """Deliveries not attempted (the queue was full, or closed) or not finished by
        ``close``."""
        return self._dropped

    @property
    def pending(self) -> int:
        """Deliveries queued, waiting for a retry or under way."""
        with self._cond:
            return len(self._ready) + len(self._waiting) + self._in_flight

    # -- API -----------------------------------------------------------------------------

    def send(self, url: str, payload: Mapping[str, Any]) -> bool:
        """Queue ``payload`` (JSON-serialisable) to be POSTed to ``url``; False (and
        counted in ``dropped``) when the queue is full or the sender is closed."""
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False).encode()
        with self._cond:
            if self._closing:
                self._dropped += 1
                return False
            if len(self._ready) + len(self._waiting) >= self.max_queue:
                self._dropped += 1
                self._full_warning.warn(self.max_queue)
                return False
            self._ready.append(_Delivery(url, body))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="phospho-webhooks",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()
        return True

    def close(self, timeout_s: float = 5.0) -> bool:
        """Stop accepting, deliver what can be within ``timeout_s``, drop the rest. True
        when nothing was left undelivered by the close."""
        with self._cond:
            if not self._closing:
                self._closing = True
                self._deadline = time.monotonic() + max(timeout_s, 0.0)
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(max(self._deadline - time.monotonic(), 0.0) + 0.5)
        with self._cond:
            left = len(self._ready) + len(self._waiting)
            self._dropped += left
            self._ready.clear()
            self._waiting.clear()
            return left == 0 and self._in_flight == 0

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------------

    def _next(self) -> _Delivery | None:
        """The next delivery due, waiting for one; None when closing and done."""
        with self._cond:
            while True:
                now = time.monotonic()
                if self._closing and now >= self._deadline:
                    return None
                if self._waiting and self._waiting[0][0] <= now:
                    delivery = heapq.heappop(self._waiting)[2]
                    break
                if self._ready:
                    delivery = self._ready.popleft()
                    break
                if self._closing and (not self._waiting
                                      or self._waiting[0][0] > self._deadline):
                    return None  # nothing left, or no retry due before the deadline
                wait = self._waiting[0][0] - now if self._waiting else None
                if self._closing:
                    wait = min(wait if wait is not None else float("inf"),
                               self._deadline - now)
                self._cond.wait(wait)
            self._in_flight += 1
            return delivery

    def _run(self) -> None:
        with httpx.Client(headers={"Content-Type": "application/json",
                                   "User-Agent": "phospho-otel-webhooks"},
                          follow_redirects=False) as client:
            while True:
                delivery = self._next()
                if delivery is None:
                    return
                try:
                    self._attempt(client, delivery)
                except Exception:  # never let the thread die
                    logger.exception("webhooks: unexpected error delivering to %s",
                                     delivery.url)
                    with self._cond:
                        self._failed += 1
                finally:
                    with self._cond:
                        self._in_flight -= 1

    def _attempt(self, client: httpx.Client, delivery: _Delivery) -> None:
        delivery.attempts += 1
        retry_after: float | None = None
        timeout = self.timeout_s
        if self._closing:
            timeout = max(min(timeout, self._deadline - time.monotonic()), 0.001)
        try:
            response = client.post(delivery.url, content=delivery.body, timeout=timeout)
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
            retryable = True
        else:
            status = response.status_code
            if 200 <= status < 300:
                with self._cond:
                    self._sent += 1
                return
            problem = f"HTTP {status}"
            retryable = status == 429 or status >= 500
            if retryable:
                retry_after = _retry_after(response.headers.get("Retry-After"))
        if retryable and delivery.attempts < self.max_attempts:
            delay = self.backoff_s * 2 ** (delivery.attempts - 1)
            if retry_after is not None:
                delay = max(delay, retry_after)
            due = time.monotonic() + min(delay, MAX_BACKOFF_S)
            with self._cond:
                heapq.heappush(self._waiting, (due, next(self._order), delivery))
                self._cond.notify()
            return
        with self._cond:
            self._failed += 1
        self._failed_warning.warn(
            delivery.url, f"{problem} after {delivery.attempts} attempt(s)")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None
