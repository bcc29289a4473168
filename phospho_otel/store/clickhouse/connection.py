"""Connections to ClickHouse over its native protocol (``clickhouse-driver``), and what a
failure means for the caller.

A ``clickhouse_driver.Client`` is one connection, used by one thread at a time: the
store keeps one for its writer and a pool for readers (``ClientPool``). A failure is a
``StoreUnavailable`` (retryable: 503 / ``UNAVAILABLE``) when ClickHouse is away, slow or
overloaded, and a ``StoreError`` when a retry cannot help (bad SQL, a value the schema
cannot hold).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from phospho_otel.errors import StoreError, StoreUnavailable

__all__ = ["CLUSTER_SETTINGS", "DEFAULT_PORT", "ClientPool", "Endpoint", "failure", "first_line",
           "is_retryable"]

# The driver logs every failed connection attempt with its traceback (WARNING); the
# store's errors already say it in one line (``failure``), so only its errors are shown.
logging.getLogger("clickhouse_driver.connection").setLevel(logging.ERROR)

DEFAULT_PORT = 9000
"""ClickHouse's native-protocol port."""

_RETRYABLE_CODES = frozenset({
    159,  # TIMEOUT_EXCEEDED
    160,  # TOO_SLOW
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    203,  # NO_FREE_CONNECTION
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    319,  # UNKNOWN_STATUS_OF_INSERT
})
"""Server error codes that pass with time (``is_retryable``)."""


CLUSTER_SETTINGS: dict[str, str | int] = {
    # an INSERT into a Distributed table returns once the shard's replica has written
    # it (not once it is queued on the local disk): acknowledged means written
    "insert_distributed_sync": 1,
    # ``x IN (SELECT ... FROM <Distributed>)`` inside a distributed read: the subquery
    # runs once, on the server asked, and its result goes to every shard
    "distributed_product_mode": "global",
}
"""Query settings on a cluster (``Endpoint.cluster``); both exist in ClickHouse 18.16."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where the store lives: a server's native port and a database."""

    host: str
    port: int
    database: str
    user: str = "default"
    password: str = ""
    connect_timeout_s: float = 5.0
    query_timeout_s: float = 30.0
    cluster: str | None = None
    """A cluster of the server's ``remote_servers``: the schema is then created on every
    server of it (``schema.on_cluster``)."""

    def __str__(self) -> str:
        where = f"clickhouse://{self.host}:{self.port}/{self.database}"
        return where if self.cluster is None else f"{where}?cluster={self.cluster}"

    def client(self) -> Client:
        """A new (lazily connecting) client on the server's default database."""
        return Client(self.host, port=self.port, user=self.user, password=self.password,
                      connect_timeout=self.connect_timeout_s,
                      send_receive_timeout=self.query_timeout_s,
                      sync_request_timeout=self.connect_timeout_s,
                      settings={"strings_encoding": "utf-8", **self.settings()})

    def settings(self) -> dict[str, str | int]:
        """The query settings of this store's queries (beyond the driver's)."""
        if self.cluster is None:
            return {}
        return CLUSTER_SETTINGS


def is_retryable(exc: BaseException) -> bool:
    """True when the failure passes with time: the server away, slow or overloaded."""
    if isinstance(exc, (ch_errors.NetworkError, ch_errors.SocketTimeoutError,
                        ConnectionError, TimeoutError, EOFError)):
        return True
    if isinstance(exc, OSError):
        return True
    code = getattr(exc, "code", None)
    return code in _RETRYABLE_CODES


def first_line(exc: BaseException) -> str:
    text = str(exc).split("Stack trace:")[0].strip() or type(exc).__name__
    line = " ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= 300 else line[:297] + "..."


def failure(exc: BaseException, endpoint: Endpoint, doing: str) -> StoreError | StoreUnavailable:
    """The store error to raise for a failed call (``doing``: what was being done)."""
    if is_retryable(exc):
        return StoreUnavailable(f"ClickHouse at {endpoint} is unavailable ({doing}):"
                                f" {first_line(exc)}")
    return StoreError(f"ClickHouse at {endpoint} failed ({doing}): {first_line(exc)}")


class ClientPool:
    """Clients for readers: one per concurrent ``lease``, reused afterwards."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._idle: queue.SimpleQueue[Client] = queue.SimpleQueue()
        self._all: list[Client] = []
        self._lock = threading.Lock()

    @contextmanager
    def lease(self) -> Iterator[Client]:
        """A client for the duration of the block; dropped (not reused) after a failure."""
        try:
            client = self._idle.get_nowait()
        except queue.Empty:
            client = self._endpoint.client()
            with self._lock:
                self._all.append(client)
        ok = False
        try:
            yield client
            ok = True
        finally:
            if ok:
                self._idle.put(client)
            else:
                self._drop(client)

    def _drop(self, client: Client) -> None:
        try:
            client.disconnect()
        except Exception:  # already failing; disconnecting is best effort
            pass
        with self._lock:
            if client in self._all:
                self._all.remove(client)

    def close(self) -> None:
        with self._lock:
            clients, self._all = self._all, []
        for client in clients:
            try:
                client.disconnect()
            except Exception:  # closing is best effort
                pass
