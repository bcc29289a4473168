"""Collectors that never answer, for the shutdown tests: real TCP servers on 127.0.0.1.

- ``SilentServer``: accepts every connection and reads what the client sends, but never
  answers: an OTLP/HTTP request never gets a response. With ``http2=True`` it first
  writes an HTTP/2 server preface (an empty SETTINGS frame), so a gRPC client sees a
  live HTTP/2 connection, sends its call, and waits for an answer that never comes
  (without it, gRPC gives up on the connection after its connect timeout).
- ``FullBacklog``: a listening socket that never accepts, its backlog filled, so a new
  connection's SYN is never answered and ``connect()`` hangs.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType

__all__ = ["FullBacklog", "SilentServer"]


class SilentServer:
    """Accepts and reads, never answers. ``connections`` counts accepted connections."""

    SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # HTTP/2: empty SETTINGS frame

    def __init__(self, *, http2: bool = False) -> None:
        self._http2 = http2
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            if self._http2:
                try:
                    conn.sendall(self.SETTINGS)
                except OSError:
                    pass
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        try:
            while conn.recv(65536):
                pass
        except OSError:
            pass

    def close(self) -> None:
        self._closed.set()
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            for conn in self._open:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
        self._thread.join(5)

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class FullBacklog:
    """A port whose listener never accepts and whose backlog is full: connecting hangs."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(0)
        self.port: int = self._listener.getsockname()[1]
        self._fillers: list[socket.socket] = []
        for _ in range(4):  # Linux queues backlog + 1 handshakes; more to be sure
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(("127.0.0.1", self.port))
            except BlockingIOError:
                pass
            self._fillers.append(filler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._listener.close()

    def __enter__(self) -> FullBacklog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
