"""OTLP/HTTP trace receiver: ``POST /v1/traces`` as a Starlette endpoint.

Transport only: reads the body, decodes it (``receiver.decode``), hands the request to
the aggregator (``aggregator.Ingestor``) and replies once it is durable. Accepts
``application/x-protobuf`` (also ``application/protobuf``) and ``application/json``, with
``Content-Encoding: gzip`` or none. Replies as OTLP says: 200 with an
``ExportTraceServiceResponse`` in the request's encoding (``partial_success`` filled when
spans were rejected or task spans skipped); an error is a ``google.rpc.Status`` in the
request's encoding (JSON for anything not protobuf) with the status of its
``errors.ServerError``:

* 400 malformed body (protobuf, JSON or gzip), with what is wrong;
* 413 body (raw or inflated) over ``max_body_bytes``;
* 415 unsupported ``Content-Type`` or ``Content-Encoding``;
* 503 + ``Retry-After`` when the writer is behind or shutting down (the collector
  retries), or when the store failed to write (nothing was acknowledged).

Authentication is the application's middleware's job (``receiver.auth``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Awaitable, Callable

from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from phospho_otel.aggregator.ingest import Ingestor, IngestResult
from phospho_otel.errors import (
    BadRequest,
    PayloadTooLarge,
    ServerError,
    Unavailable,
    UnsupportedMediaType,
)
from phospho_otel.receiver.decode import gunzip, parse_json, parse_protobuf

__all__ = ["otlp_status_response", "otlp_traces_endpoint"]

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
_JSON_DECODE_IN_THREAD = 256 * 1024
"""JSON bodies larger than this are parsed in a worker thread, not on the event loop."""


def otlp_status_response(error: ServerError, protobuf: bool) -> Response:
    """An error as OTLP/HTTP answers it: a ``google.rpc.Status`` (protobuf or JSON) with
    the error's status, and ``Retry-After`` when it is retryable."""
    code = code_pb2.Code.Value(error.grpc_code)
    if protobuf:
        body = status_pb2.Status(code=code, message=error.message).SerializeToString()
        media_type = PROTOBUF
    else:
        body = json.dumps({"code": code, "message": error.message}).encode()
        media_type = JSON
    headers = None
    if isinstance(error, Unavailable):
        headers = {"Retry-After": str(max(1, math.ceil(error.retry_after_s)))}
    return Response(body, status_code=error.status, headers=headers, media_type=media_type)


def _success_response(result: IngestResult, protobuf: bool) -> Response:
    if protobuf:
        reply = ExportTraceServiceResponse()
        if result.rejected_spans or result.error_message:
            reply.partial_success.rejected_spans = result.rejected_spans
            reply.partial_success.error_message = result.error_message
        return Response(reply.SerializeToString(), media_type=PROTOBUF)
    doc: dict[str, object] = {}
    if result.rejected_spans or result.error_message:
        doc["partialSuccess"] = {
            "rejectedSpans": str(result.rejected_spans),
            "errorMessage": result.error_message,
        }
    return Response(json.dumps(doc).encode(), media_type=JSON)


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest(f"bad Content-Length {declared!r}") from None
        if size > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
    return bytes(body)


async def _decode(request: Request, media_type: str, protobuf: bool,
                  limit: int) -> ExportTraceServiceRequest:
    """The request's body as an export request (``ServerError`` if it is not one)."""
    if not protobuf and media_type != JSON:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type or '(none)'!r}: use {PROTOBUF} or {JSON}"
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}: use gzip or none"
        )
    body = await _read_body(request, limit)
    if encoding == "gzip":
        if len(body) > 1024 * 1024:
            body = await run_in_threadpool(gunzip, body, limit)
        else:
            body = gunzip(body, limit)
    if protobuf:
        return parse_protobuf(body)
    if len(body) > _JSON_DECODE_IN_THREAD:
        return await run_in_threadpool(parse_json, body)
    return parse_json(body)


def otlp_traces_endpoint(
    ingestor: Ingestor, max_body_bytes: int
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ``POST /v1/traces`` feeding ``ingestor``.

    ``max_body_bytes`` bounds the body both as received and once inflated."""
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be >= 1")

    async def receive_traces(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        protobuf = media_type in _PROTOBUF_TYPES
        try:
            export = await _decode(request, media_type, protobuf, max_body_bytes)
            result = await ingestor.ingest(export)
        except ClientDisconnect:
            return Response(status_code=400)
        except ServerError as error:
            return otlp_status_response(error, protobuf)
        except Exception as exc:  # a bug or a store failure: nothing was acknowledged
            logger.exception("storing an OTLP/HTTP request failed")
            return otlp_status_response(Unavailable(f"store write failed: {exc}"), protobuf)
        return _success_response(result, protobuf)

    return receive_traces
