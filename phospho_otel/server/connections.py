"""HTTP/1.1 connections that cannot be held open by a slow, idle or malformed client.

uvicorn (0.34 and later) closes a connection idle *between* requests
(``timeout_keep_alive``), and nothing else: a client that connects and sends nothing, or
sends its headers a byte at a time, or a body that never ends, keeps its connection, and
enough of them take every file descriptor (``limit_concurrency`` only answers 503 to new
*requests* once connections are many, idle ones included). ``guarded_protocol(limits)``
is uvicorn's h11 protocol with, per ``ConnectionLimits``:

* a **header deadline**: a request's headers must be complete ``header_timeout_s`` after
  the connection opened, or after the first byte that follows the previous response; else
  408 (silently closed when nothing at all was sent);
* a **body deadline**: a request body must be complete ``body_timeout_s`` after its
  headers plus one second per ``body_min_rate`` bytes received (a slow but steady upload
  keeps going; one trickling a byte at a time does not); else 408 when not answered yet,
  and closed either way: also a body the application answered without reading, which
  uvicorn would otherwise read and discard for as long as it comes;
* a **connection limit**: past ``max_connections`` open connections, the one idle the
  longest (no request in progress: between requests, or still sending headers) is closed
  to make room; when none is idle the new connection gets 503 + ``Retry-After`` and is
  closed. Idle connections thus never keep a valid client out;
* **framing**: a request with both ``Content-Length`` and ``Transfer-Encoding`` is read by
  its ``Transfer-Encoding`` (h11 does so) and its connection closed after the response
  (RFC 9112 §6.3).

The deadlines are checked by one timer per connection, moved only when it would fire too
early (not on every chunk). The protocol is h11's whatever is installed (``httptools``
would not have these guards), so ``run.AggregatorServer`` always passes it to uvicorn.
This relies on uvicorn's ``H11Protocol`` attributes (``conn``, ``cycle``, ``transport``,
``connections``), stable from 0.34 to 0.54 at least; ``tests/reliability/
test_transport_connections.py`` exercises each guard with real sockets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["ConnectionLimits", "GuardedH11Protocol", "guarded_protocol"]


@dataclass(frozen=True)
class ConnectionLimits:
    """What a client may take of an HTTP connection (see the module doc)."""

    header_timeout_s: float = 10.0
    body_timeout_s: float = 20.0
    body_min_rate: int = 65_536
    max_connections: int = 1000

    def __post_init__(self) -> None:
        if not (self.header_timeout_s > 0 and self.body_timeout_s > 0):
            raise ValueError("timeouts must be > 0")
        if self.body_min_rate < 1 or self.max_connections < 1:
            raise ValueError("body_min_rate and max_connections must be >= 1")


def _raw_response(status: int, reason: str, message: str,
                  headers: tuple[str, ...] = ()) -> bytes:
    """A whole HTTP/1.1 response closing its connection, for when there is no request to
    answer through h11 (or the connection is being dropped anyway)."""
    body = message.encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: text/plain; charset=utf-8",
            "connection: close", f"content-length: {len(body)}", *headers]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines and a connection limit; the limits are the
    class's ``limits`` (``guarded_protocol`` makes the subclass)."""

    limits: ClassVar[ConnectionLimits] = ConnectionLimits()

    _timer: asyncio.TimerHandle | None = None
    _header_since: float | None = None
    """When the current request's head began (connection opened / first byte)."""
    _body_since: float | None = None
    """When the current request's body began (its head complete)."""
    _body_bytes: int = 0
    _last_active: float = 0.0
    _framing_checked: object = None
    """The request cycle whose framing was checked last."""

    # ------------------------------------------------------------------ uvicorn's hooks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        now = self.loop.time()
        self._header_since = self._last_active = now
        if self._make_room():
            self._schedule()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self._last_active = now
        state = self.conn.their_state
        if state is h11.IDLE and self._header_since is None:
            self._header_since = now
        elif state is h11.SEND_BODY:
            self._body_bytes += len(data)
        super().data_received(data)
        self._after_events()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._after_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()
        super().connection_lost(exc)

    # ------------------------------------------------------------------ state

    def _after_events(self) -> None:
        """Follow h11's view of the client after it handled what arrived."""
        state = self.conn.their_state
        if state is not h11.IDLE:
            self._header_since = None
        if state is h11.SEND_BODY:
            if self._body_since is None:
                self._body_since = self.loop.time()
                self._body_bytes = 0
        else:
            self._body_since = None
        cycle = self.cycle
        if cycle is not None and cycle is not self._framing_checked:
            self._framing_checked = cycle
            names = {name for name, _ in cycle.scope["headers"]}
            if b"content-length" in names and b"transfer-encoding" in names:
                cycle.keep_alive = False  # RFC 9112 §6.3: close after responding
        self._schedule()

    def _idle(self) -> bool:
        """No request in progress: between requests, or its head still arriving."""
        return (not self.transport.is_closing() and self.conn.their_state is h11.IDLE
                and (self.cycle is None or self.cycle.response_complete))

    def _deadline(self) -> float | None:
        limits = self.limits
        if self._header_since is not None:
            return self._header_since + limits.header_timeout_s
        if self._body_since is not None:
            return (self._body_since + limits.body_timeout_s
                    + self._body_bytes / limits.body_min_rate)
        return None

    # ------------------------------------------------------------------ deadlines

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        deadline = self._deadline()
        if deadline is None:
            self._cancel_timer()
        elif self._timer is None or self._timer.when() > deadline:
            self._cancel_timer()
            self._timer = self.loop.call_at(deadline, self._on_timer)
        # else: the timer fires early and moves itself to the later deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        deadline = self._deadline()
        if deadline is None:
            return
        if self.loop.time() < deadline:
            self._timer = self.loop.call_at(deadline, self._on_timer)
            return
        self._expire()

    def _expire(self) -> None:
        limits = self.limits
        if self._header_since is not None:
            if self.conn.trailing_data[0]:  # part of a head arrived
                self.transport.write(_raw_response(
                    408, "Request Timeout",
                    f"request headers not complete within {limits.header_timeout_s:g} s"))
        else:
            cycle = self.cycle
            if cycle is not None and not cycle.response_started:
                self.transport.write(_raw_response(
                    408, "Request Timeout",
                    f"request body too slow: {self._body_bytes} bytes received; a body gets "
                    f"{limits.body_timeout_s:g} s plus 1 s per {limits.body_min_rate} bytes"))
            if cycle is not None:
                # The application's receive() now sees a disconnect; what it sends is
                # dropped (the 408 above is the answer).
                cycle.disconnected = True
                cycle.message_event.set()
        self.transport.close()

    # ------------------------------------------------------------------ the limit

    def _make_room(self) -> bool:
        """Keep open connections within the limit: close the longest-idle other one, or
        refuse this one (503) when none is idle. Whether this one stays."""
        open_ = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_) <= self.limits.max_connections:
            return True
        idle = [c for c in open_ if c is not self and isinstance(c, GuardedH11Protocol)
                and c._idle()]
        if idle:
            victim = min(idle, key=lambda c: c._last_active)
            victim._cancel_timer()
            victim.transport.close()
            return True
        self.transport.write(_raw_response(
            503, "Service Unavailable",
            f"{len(open_) - 1} connections are open and busy (the limit is "
            f"{self.limits.max_connections}); retry in 1 s", ("retry-after: 1",)))
        self.transport.close()
        return False


def guarded_protocol(limits: ConnectionLimits) -> type[GuardedH11Protocol]:
    """The protocol class to give uvicorn (``Config(http=...)``) for these limits."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"limits": limits})
