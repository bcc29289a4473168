"""OTLP/gRPC trace receiver: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

The request is taken as raw bytes and parsed here, so a malformed message gets
``INVALID_ARGUMENT`` with a reason (grpcio's own deserializer would answer ``INTERNAL``).
gzip from the client is inflated by grpcio, under ``max_message_bytes`` (which also
lifts grpcio's 4 MiB default: a collector's 8192-span batch is ~8 MB). Replies once the
spans are durable; ``UNAVAILABLE`` with a ``RetryInfo`` when the writer is behind (the
collector retries);
``UNAUTHENTICATED`` without ``authorization: Bearer <token>`` when a token is set.
"""

from __future__ import annotations

import hmac
import logging
from concurrent.futures import ThreadPoolExecutor

import grpc
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from phospho_otel.receiver.decode import DecodeError, parse_protobuf
from phospho_otel.receiver.ingest import Ingestor, Overloaded

__all__ = ["RETRY_INFO_KEY", "SERVICE_NAME", "start_grpc_server"]

logger = logging.getLogger(__name__)

SERVICE_NAME = "opentelemetry.proto.collector.trace.v1.TraceService"
RETRY_INFO_KEY = "google.rpc.retryinfo-bin"
"""Trailing metadata with a ``google.rpc.RetryInfo`` on UNAVAILABLE: the OTel exporters
wait its ``retry_delay`` before retrying."""
WRITE_TIMEOUT_S = 60.0
"""How long an Export waits for its write before answering UNAVAILABLE (the write may
still land; the collector's retry is then a duplicate, which counts once)."""


class _TraceService:
    def __init__(self, ingestor: Ingestor, token: str | None) -> None:
        self.ingestor = ingestor
        self.expected = f"Bearer {token}".encode() if token else None

    def _check_token(self, context: grpc.ServicerContext) -> None:
        if self.expected is None:
            return
        given = ""
        for key, value in context.invocation_metadata():
            if key == "authorization":
                given = value if isinstance(value, str) else value.decode("latin-1")
                break
        if not given:
            context.abort(
                grpc.StatusCode.UNAUTHENTICATED,
                "missing authorization: Bearer <token> metadata",
            )
        if not hmac.compare_digest(given.encode("latin-1", "replace"), self.expected):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid bearer token")

    def export(self, body: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        self._check_token(context)
        try:
            request = parse_protobuf(body)
        except DecodeError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            result = self.ingestor.ingest_blocking(request, WRITE_TIMEOUT_S)
        except Overloaded as exc:
            delay = RetryInfo()
            delay.retry_delay.FromNanoseconds(int(exc.retry_after_s * 1e9))
            context.set_trailing_metadata(((RETRY_INFO_KEY, delay.SerializeToString()),))
            context.abort(grpc.StatusCode.UNAVAILABLE, str(exc))
        except TimeoutError:
            context.abort(grpc.StatusCode.UNAVAILABLE, "write did not finish in time; retry")
        except RuntimeError as exc:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"not accepting data: {exc}")
        except Exception as exc:
            logger.exception("storing an OTLP/gRPC request failed")
            context.abort(grpc.StatusCode.UNAVAILABLE, f"store write failed: {exc}")
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
