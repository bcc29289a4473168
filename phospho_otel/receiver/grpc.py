"""OTLP/gRPC trace receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

Transport only, as ``receiver.http``. The request is taken as raw bytes and parsed here,
so a malformed message gets ``INVALID_ARGUMENT`` with a reason (grpcio's own deserializer
would answer ``INTERNAL``). gzip from the client is inflated by grpcio, under
``max_message_bytes`` (which also lifts grpcio's 4 MiB default: a collector's 8192-span
batch is ~8 MB). Replies once the spans are durable; a ``errors.ServerError`` is answered
with its ``grpc_code`` (``UNAVAILABLE`` with a ``RetryInfo`` when the writer is behind or
shutting down: the collector retries); ``UNAUTHENTICATED`` without
``authorization: Bearer <token>`` when a token is set.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from phospho_otel.aggregator.ingest import Ingestor
from phospho_otel.errors import ServerError, Unavailable
from phospho_otel.receiver.auth import BearerToken
from phospho_otel.receiver.decode import parse_protobuf

__all__ = ["RETRY_INFO_KEY", "SERVICE_NAME", "start_grpc_server"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "opentelemetry.proto.collector.trace.v1.TraceService"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""Trailing metadata with a ``google.rpc.RetryInfo`` on UNAVAILABLE: the OTel exporters
wait its ``retry_delay`` before retrying."""
WRITE_TIMEOUT_S = 60.0
"""How long an Export waits for its write before answering UNAVAILABLE (the write may
still land; the collector's retry is then a duplicate, which counts once)."""


def _abort(context: grpc.ServicerContext, error: ServerError) -> NoReturn:
    """Answer ``error`` with its gRPC code (and a ``RetryInfo`` when it is retryable)."""
    if isinstance(error, Unavailable):
        delay = RetryInfo()
        delay.retry_delay.FromNanoseconds(int(error.retry_after_s * 1e9))
        context.set_trailing_metadata(((RETRY_INFO_KEY, delay.SerializeToString()),))
    context.abort(getattr(grpc.StatusCode, error.grpc_code), error.message)
    raise AssertionError("unreachable")  # context.abort raises


class _TraceService:
    def __init__(self, ingestor: Ingestor, token: str | None) -> None:
        self.ingestor = ingestor
        self.token = BearerToken(token) if token else None

    def export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        try:
            if self.token is not None:
                given = ""
                for key, value in context.invocation_metadata():
                    if key == "authorization":
                        given = value if isinstance(value, str) else value.decode("latin-1")
                        break
                self.token.check(given)
            request = parse_protobuf(body)
            try:
                result = self.ingestor.ingest_blocking(request, WRITE_TIMEOUT_S)
            except TimeoutError:
                raise Unavailable("write did not finish in time; retry") from None
        except ServerError as error:
            _abort(context, error)
        except Exception as exc:  # a bug or a store failure: nothing was acknowledged
            logger.exception("storing an OTLP/gRPC request failed")
            _abort(context, Unavailable(f"store write failed: {exc}"))
        reply = ExportTraceServiceResponse()
        if result.rejected_spans or result.error_message:
            reply.partial_success.rejected_spans = result.rejected_spans
            reply.partial_success.error_message = result.error_message
        return reply


def start_grpc_server(
    ingestor: Ingestor,
    *,
    host: str,
    port: int,
    token: str | None,
    max_message_bytes: int,
    max_workers: int = 8,
) -> tuple[grpc.Server, int]:
    """Start an OTLP/gRPC trace receiver; returns (server, bound port). Port 0 picks a
    free one. Stop it with ``server.stop(grace)``."""
    if max_message_bytes < 1:
        raise ValueError("max_message_bytes must be >= 1")
    service = _TraceService(ingestor, token)
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
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="phospho-grpc"),
        handlers=[handler],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=max_workers * 8,
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot bind the gRPC receiver to {address}")
    server.start()
    logger.info("OTLP/gRPC receiver on %s:%d", host, bound)
    return server, bound
