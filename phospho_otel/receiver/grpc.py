"""OTLP/gRPC receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export`` and
``opentelemetry.proto.collector.logs.v1.LogsService/Export`` on one server, through the
same machinery (everything below holds for both; logs go to ``Ingestor.submit_logs`` and
are answered with an ``ExportLogsServiceResponse``).

Transport only, as ``receiver.http``. The request is taken as raw bytes and parsed here,
so a malformed message gets ``INVALID_ARGUMENT`` with a reason (grpcio's own deserializer
would answer ``INTERNAL``). gzip from the client is inflated by grpcio, under
``max_message_bytes`` (which also lifts grpcio's 4 MiB default: a collector's 8192-span
batch is ~8 MB). Replies once the spans are durable; a ``errors.ServerError`` is answered
with its ``grpc_code``; ``UNAUTHENTICATED`` without ``authorization: Bearer <token>`` when
a token is set.

Overload is always ``UNAVAILABLE`` with a ``RetryInfo`` (the OTel exporters retry it after
the delay; the Collector drops a ``RESOURCE_EXHAUSTED`` without one): when the writer is
behind (``Ingestor.admit``, then the request's spans), when the bytes held by requests in
progress are at their budget (``receiver.budget``), or when ``max_concurrent_exports``
Exports are already in progress. grpcio's own concurrency limit (which answers
``RESOURCE_EXHAUSTED``) is not used: the thread pool has ``REFUSAL_THREADS`` threads more
than the Exports admitted at once, so that a refusal never waits for a thread. A
``StoreError`` (the store cannot keep the request; a retry would fail the same way) is
``INTERNAL``, which exporters do not retry.

Connections: at most ``max_connections``; one that does not complete its HTTP/2 handshake
within ``handshake_timeout_s`` is closed, one idle (no call) for ``IDLE_TIMEOUT_S`` is
sent a GOAWAY (clients reconnect when they next export), and peers that vanish are found
by keepalive pings. The request message is read by grpcio before the handler runs, so at
most as many messages as there are threads are read at once.

Binding: ``0.0.0.0`` binds IPv4 only (grpcio would also bind IPv6 ``[::]``, a wider
exposure than asked for; see ``_bind``).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from phospho_otel.aggregator.ingest import Ingestor, IngestResult
from phospho_otel.errors import ServerError, StoreError, Unavailable
from phospho_otel.receiver.auth import BearerToken
from phospho_otel.receiver.budget import DEFAULT_MAX_BUFFERED_BYTES, ByteBudget, store_error
from phospho_otel.receiver.decode import parse_logs_protobuf, parse_protobuf

__all__ = [
    "DEFAULT_MAX_CONCURRENT_EXPORTS",
    "IDLE_TIMEOUT_S",
    "LOGS_SERVICE_NAME",
    "REFUSAL_THREADS",
    "RETRY_INFO_KEY",
    "SERVICE_NAME",
    "start_grpc_server",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = "opentelemetry.proto.collector.trace.v1.TraceService"
LOGS_SERVICE_NAME = "opentelemetry.proto.collector.logs.v1.LogsService"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""Trailing metadata with a ``google.rpc.RetryInfo`` on UNAVAILABLE: the OTel exporters
wait its ``retry_delay`` before retrying."""
WRITE_TIMEOUT_S = 60.0
"""How long an Export waits for its write before answering UNAVAILABLE (the write may
still land; the collector's retry is then a duplicate, which counts once). Shorter when
the client's deadline is nearer."""
DEFAULT_MAX_CONCURRENT_EXPORTS = 32
"""Exports admitted at once (each holds a thread while its write is under way)."""
REFUSAL_THREADS = 16
"""Threads beyond the admitted Exports: they answer refusals at once."""
IDLE_TIMEOUT_S = 60.0
"""A connection without a call for this long is closed (GOAWAY)."""
KEEPALIVE_S = 60.0
"""The server pings a connection quiet for this long; no answer in ``KEEPALIVE_TIMEOUT_S``
closes it (a peer that vanished without closing)."""
KEEPALIVE_TIMEOUT_S = 20.0


def _abort(context: grpc.ServicerContext, error: ServerError) -> NoReturn:
    """Answer ``error`` with its gRPC code (and a ``RetryInfo`` when it is retryable)."""
    if isinstance(error, Unavailable):
        delay = RetryInfo()
        delay.retry_delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        context.set_trailing_metadata(((RETRY_INFO_KEY, delay.SerializeToString()),))
    context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)
    raise AssertionError("unreachable")  # context.abort raises


class _TraceService:
    def __init__(self, ingestor: Ingestor, token: str | None, budget: ByteBudget,
                 max_concurrent: int) -> None:
        self.ingestor = ingestor
        self.token = BearerToken(token) if token else None
        self.budget = budget
        self.max_concurrent = max_concurrent
        self._in_flight = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def _slot(self) -> Iterator[None]:
        with self._lock:
            if self._in_flight >= self.max_concurrent:
                raise Unavailable(f"{self._in_flight} Exports are in progress (the limit); "
                                  "retry in 1 s", 1.0)
            self._in_flight += 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight -= 1

    def _check_token(self, context: grpc.ServicerContext) -> None:
        if self.token is None:
            return
        given = ""
        for key, value in context.invocation_metadata():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
                break
        self.token.check(given)

    def export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        """``TraceService/Export``."""
        result = self._store(body, context, logs=False)
        reply = ExportTraceServiceResponse()
        if result.rejected_spans or result.error_message:
            reply.partial_success.rejected_spans = result.rejected_spans
            reply.partial_success.error_message = result.error_message
        return reply

    def export_logs(self, body: bytes,
                    context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        """``LogsService/Export``."""
        result = self._store(body, context, logs=True)
        reply = ExportLogsServiceResponse()
        if result.rejected_spans or result.error_message:
            reply.partial_success.rejected_log_records = result.rejected_spans
            reply.partial_success.error_message = result.error_message
        return reply

    def _store(self, body: bytes, context: grpc.ServicerContext, *,
               logs: bool) -> IngestResult:
        """Parse, queue and wait for one request; aborts the call when it cannot."""
        try:
            self._check_token(context)
            with self._slot(), self.budget.reserve() as held:
                self.ingestor.admit()
                held.take(len(body))
                written = (self.ingestor.submit_logs(parse_logs_protobuf(body)) if logs
                           else self.ingestor.submit(parse_protobuf(body)))
                remaining = context.time_remaining()
                timeout = WRITE_TIMEOUT_S if remaining is None else max(
                    0.1, min(WRITE_TIMEOUT_S, remaining - 0.2))
                try:
                    result = written.result(timeout)
                except TimeoutError:
                    raise Unavailable("write did not finish in time; retry") from None
        except ServerError as error:
            _abort(context, error)
        except StoreError as exc:  # the store cannot keep it; a retry would fail again
            logger.error("the store refused an OTLP/gRPC request: %s", exc)
            _abort(context, store_error(exc))
        except Exception as exc:  # a bug: nothing was acknowledged, so the client retries
            logger.exception("storing an OTLP/gRPC request failed")
            _abort(context, Unavailable(f"store write failed: {exc}"))
        return result


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def _ipv6_wildcard_held(port: int) -> Iterator[int]:
    """Hold ``[::]:port`` (IPv6 only, not listening) while grpcio binds ``0.0.0.0``:
    grpcio binds any wildcard as a dual-stack ``[::]`` first, and falls back to
    ``0.0.0.0`` alone when that is taken. Yields the port (a free one for 0), or ``port``
    when IPv6 is not there to hold (then grpcio cannot bind it either)."""
    try:
        blocker = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError:
        yield port
        return
    try:
        blocker.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            blocker.bind(("::", port))
        except OSError:
            yield port
            return
        yield int(blocker.getsockname()[1])
    finally:
        blocker.close()


def _bind(server: grpc.Server, host: str, port: int) -> int:
    """Bind ``server`` to exactly ``host:port`` and start it; the bound port."""
    if host != "0.0.0.0":
        bound = server.add_insecure_port(_address(host, port))
        server.start()
        return int(bound)
    for _ in range(5 if port == 0 else 1):
        with _ipv6_wildcard_held(port) as chosen:
            try:
                bound = server.add_insecure_port(_address(host, chosen))
            except RuntimeError:
                if port:
                    raise
                continue  # that port is taken on IPv4: try another
            server.start()
            return int(bound)
    raise RuntimeError(f"no free port found for {host}")


def start_grpc_server(
    ingestor: Ingestor,
    *,
    host: str,
    port: int,
    token: str | None,
    max_message_bytes: int,
    max_concurrent_exports: int = DEFAULT_MAX_CONCURRENT_EXPORTS,
    budget: ByteBudget | None = None,
    max_connections: int | None = None,
    handshake_timeout_s: float = 10.0,
) -> tuple[grpc.Server, int]:
    """Start an OTLP/gRPC trace and logs receiver; returns (server, bound port). Port 0 picks a
    free one. Stop it with ``server.stop(grace)``. Raises ``OSError`` naming the address
    when it cannot be bound.

    ``budget`` bounds the bytes of the requests in progress (shared with the HTTP receiver
    by the server; ``DEFAULT_MAX_BUFFERED_BYTES`` if none is given); ``max_connections``
    bounds open connections (grpcio refuses more)."""
    if max_message_bytes < 1:
        raise ValueError("max_message_bytes must be >= 1")
    if max_concurrent_exports < 1:
        raise ValueError("max_concurrent_exports must be >= 1")
    budget = budget if budget is not None else ByteBudget(DEFAULT_MAX_BUFFERED_BYTES)
    service = _TraceService(ingestor, token, budget, max_concurrent_exports)
    handler = grpc.method_handlers_generic_handler(
        SERVICE_NAME,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                service.export,
                request_deserializer=None,
                response_serializer=ExportTraceServiceResponse.SerializeToString,
            )
        },
    )
    logs_handler = grpc.method_handlers_generic_handler(
        LOGS_SERVICE_NAME,
        {
            "Export": grpc.unary_unary_rpc_method_handler(
                service.export_logs,
                request_deserializer=None,
                response_serializer=ExportLogsServiceResponse.SerializeToString,
            )
        },
    )
    options: list[tuple[str, int]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),
        ("grpc.server_handshake_timeout_ms", max(1, int(handshake_timeout_s * 1000))),
        ("grpc.max_connection_idle_ms", int(IDLE_TIMEOUT_S * 1000)),
        ("grpc.keepalive_time_ms", int(KEEPALIVE_S * 1000)),
        ("grpc.keepalive_timeout_ms", int(KEEPALIVE_TIMEOUT_S * 1000)),
    ]
    if max_connections is not None:
        options.append(("grpc.max_allowed_incoming_connections", max_connections))
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_concurrent_exports + REFUSAL_THREADS,
                           thread_name_prefix="phospho-grpc"),
        handlers=[handler, logs_handler],
        options=options,
        maximum_concurrent_rpcs=None,
    )
    try:
        bound = _bind(server, host, port)
    except RuntimeError as exc:  # grpcio's "Failed to bind to address"
        raise OSError(f"cannot listen for gRPC on {_address(host, port)}: {exc}") from exc
    if bound == 0:
        raise OSError(f"cannot listen for gRPC on {_address(host, port)}")
    logger.info("OTLP/gRPC receiver on %s:%d", host, bound)
    return server, bound
