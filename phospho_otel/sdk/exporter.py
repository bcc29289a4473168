"""OTLP transports: send an already-encoded ``ExportTraceServiceRequest`` over gRPC or
HTTP/protobuf and classify the outcome (success, retryable, permanent failure).

Transports never raise: every error becomes an ``ExportOutcome``. Retrying, backoff and
counting belong to the span processor. A transport is used by one thread at a time
(the processor's export thread), except ``abort()``, which another thread (the one
shutting down) calls to end the request in flight at once: the HTTP transport shuts
its socket down (connecting or connected), the gRPC one cancels the call. Every export
after ``abort()`` fails at once.
"""

from __future__ import annotations

import gzip
import http.client
import logging
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

__all__ = ["ExportOutcome", "GrpcTransport", "HttpTransport", "Transport", "make_transport"]

logger = logging.getLogger(__name__)

_GRPC_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRYABLE_GRPC = frozenset({
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DATA_LOSS,
})
_RETRYABLE_HTTP = frozenset({408, 429, 502, 503, 504})


@dataclass(frozen=True)
class ExportOutcome:
    """What happened to one export request."""

    ok: bool
    retryable: bool = False
    retry_after_s: float | None = None
    rejected_spans: int = 0
    """Spans the receiver refused in an otherwise successful reply (partial success)."""
    message: str = ""


ABORTED = ExportOutcome(ok=False, message="aborted: the SDK is shutting down")
"""What ``export`` answers once ``abort()`` was called."""


class Transport(Protocol):
    """Sends one serialized ``ExportTraceServiceRequest``; must not raise."""

    def export(self, payload: bytes, timeout_s: float) -> ExportOutcome: ...

    def abort(self) -> None:
        """From any thread: end the request in flight now; later exports fail at once."""

    def close(self) -> None: ...


def _partial(body: bytes) -> ExportOutcome:
    if not body:
        return ExportOutcome(ok=True)
    try:
        reply = ExportTraceServiceResponse.FromString(body)
    except Exception:  # a reply we cannot read still means the request was accepted
        return ExportOutcome(ok=True)
    return _from_reply(reply)


def _from_reply(reply: ExportTraceServiceResponse) -> ExportOutcome:
    if reply.HasField("partial_success") and reply.partial_success.rejected_spans:
        return ExportOutcome(
            ok=True,
            rejected_spans=reply.partial_success.rejected_spans,
            message=reply.partial_success.error_message,
        )
    return ExportOutcome(ok=True)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class HttpTransport:
    """OTLP/HTTP with protobuf bodies over one kept-alive ``http.client`` connection."""

    def __init__(self, url: str, headers: Mapping[str, str], compression: str = "none") -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._path = parts.path + (f"?{parts.query}" if parts.query else "")
        self._gzip = compression == "gzip"
        self._headers = {**headers, "content-type": "application/x-protobuf"}
        if self._gzip:
            self._headers["content-encoding"] = "gzip"
        self._conn: http.client.HTTPConnection | None = None
        self._sock: socket.socket | None = None  # the last socket opened, for abort()
        self._aborted = threading.Event()  # set by abort(), from another thread

    def _open_socket(self, address: tuple[str, int], timeout: float | None = None,
                     source_address: tuple[str, int] | None = None,
                     *args: Any) -> socket.socket:
        """``socket.create_connection``, but the socket is known (to ``abort()``) before
        it connects, so that a connection attempt that hangs can be cut short."""
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _, target in socket.getaddrinfo(host, port, 0,
                                                                 socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            self._sock = sock
            if self._aborted.is_set():
                sock.close()
                raise ConnectionAbortedError("the SDK is shutting down")
            try:
                sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(target)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            return sock
        raise error if error is not None else OSError(f"cannot resolve {host!r}")

    def _connection(self, timeout_s: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._https:
                self._conn = http.client.HTTPSConnection(self._host, self._port, timeout=timeout_s)
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout_s)
            self._conn._create_connection = self._open_socket  # type: ignore[attr-defined]
        else:
            self._conn.timeout = timeout_s
            if self._conn.sock is not None:
                self._conn.sock.settimeout(timeout_s)
        return self._conn

    def export(self, payload: bytes, timeout_s: float) -> ExportOutcome:
        body = gzip.compress(payload, compresslevel=1) if self._gzip else payload
        for attempt in (1, 2):
            if self._aborted.is_set():
                self.close()
                return ABORTED
            reused = self._conn is not None
            try:
                conn = self._connection(timeout_s)
                conn.request("POST", self._path, body=body, headers=self._headers)
                response = conn.getresponse()
                data = response.read()
                break
            except Exception as exc:  # OSError, HTTPException; anything after abort()
                self.close()
                if self._aborted.is_set():
                    return ABORTED
                if not isinstance(exc, (OSError, http.client.HTTPException)):
                    return ExportOutcome(ok=False, retryable=True,
                                         message=f"{type(exc).__name__}: {exc}")
                stale = isinstance(exc, (http.client.RemoteDisconnected, BrokenPipeError,
                                         ConnectionResetError))
                if attempt == 1 and reused and stale:
                    continue  # the receiver closed an idle kept-alive connection
                return ExportOutcome(
                    ok=False, retryable=True, message=f"{type(exc).__name__}: {exc}"
                )
        if 200 <= response.status < 300:
            return _partial(data)
        message = f"HTTP {response.status}: {data[:200].decode('utf-8', 'replace')}"
        if response.getheader("connection", "").lower() == "close":
            self.close()
        if response.status in _RETRYABLE_HTTP:
            return ExportOutcome(
                ok=False,
                retryable=True,
                retry_after_s=_retry_after(response.getheader("retry-after")),
                message=message,
            )
        return ExportOutcome(ok=False, message=message)

    def abort(self) -> None:
        """Shut the socket of the request in flight down (connecting, sending or
        waiting for the reply: the export thread's call returns at once); every later
        export fails at once. The export thread closes the socket."""
        self._aborted.set()
        conn = self._conn
        for sock in (getattr(conn, "sock", None), self._sock):  # TLS wraps the socket
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except (OSError, ValueError):  # not connected, or closed already
                    pass

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
        self._sock = None

    def after_fork(self) -> None:
        """In a forked child: forget the parent's connection (open a new one)."""
        self._conn = None
        self._sock = None


class GrpcTransport:
    """OTLP/gRPC, sending pre-encoded bytes (no protobuf object is built)."""

    def __init__(
        self, endpoint: str, headers: Mapping[str, str], compression: str = "none"
    ) -> None:
        parts = urlsplit(endpoint)
        target = f"{parts.hostname}:{parts.port}"
        if ":" in (parts.hostname or ""):
            target = f"[{parts.hostname}]:{parts.port}"
        options = [
            ("grpc.max_send_message_length", -1),
            # reconnect quickly after an outage (grpc's default backoff grows to 120 s)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if parts.scheme == "https":
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options)
        else:
            self._channel = grpc.insecure_channel(target, options)
        self._call: grpc.UnaryUnaryMultiCallable[bytes, ExportTraceServiceResponse] = (
            self._channel.unary_unary(
                _GRPC_METHOD,
                request_serializer=None,
                response_deserializer=ExportTraceServiceResponse.FromString,
            )
        )
        self._metadata = tuple(headers.items()) or None
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._future: grpc.Future[ExportTraceServiceResponse] | None = None
        self._aborted = threading.Event()  # set by abort(), from another thread

    def export(self, payload: bytes, timeout_s: float) -> ExportOutcome:
        if self._aborted.is_set():
            return ABORTED
        try:
            future = self._call.future(
                payload,
                timeout=timeout_s,
                metadata=self._metadata,
                compression=self._compression,
            )
            self._future = future
            if self._aborted.is_set():  # abort() ran before the future was visible to it
                future.cancel()
            reply = future.result()
        except grpc.FutureCancelledError:
            return ABORTED
        except grpc.RpcError as exc:
            if self._aborted.is_set():
                return ABORTED
            code = exc.code() if hasattr(exc, "code") else None
            details = exc.details() if hasattr(exc, "details") else str(exc)
            return ExportOutcome(
                ok=False,
                retryable=code in _RETRYABLE_GRPC,
                message=f"gRPC {getattr(code, 'name', code)}: {details}",
            )
        except Exception as exc:  # never raise into the export loop
            if self._aborted.is_set():
                return ABORTED
            return ExportOutcome(ok=False, retryable=True, message=f"{type(exc).__name__}: {exc}")
        finally:
            self._future = None
        return _from_reply(reply)

    def abort(self) -> None:
        """Cancel the call in flight (the export thread's call returns at once); every
        later export fails at once."""
        self._aborted.set()
        future = self._future
        if future is not None:
            future.cancel()

    def close(self) -> None:
        self._channel.close()


def make_transport(
    protocol: str, endpoint: str, headers: Mapping[str, str], compression: str
) -> Transport:
    """The transport for a resolved protocol (``grpc`` or ``http/protobuf``)."""
    if protocol == "grpc":
        return GrpcTransport(endpoint, headers, compression)
    return HttpTransport(endpoint, headers, compression)
