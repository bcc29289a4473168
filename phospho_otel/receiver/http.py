"""OTLP/HTTP trace receiver: ``POST /v1/traces`` as a Starlette endpoint.

Accepts ``application/x-protobuf`` (also ``application/protobuf``) and
``application/json``, with ``Content-Encoding: gzip`` or none. Replies as OTLP says:
200 with an ``ExportTraceServiceResponse`` in the request's encoding (``partial_success``
filled when spans were rejected or task spans skipped); errors carry a
``google.rpc.Status`` in the request's encoding (JSON for anything not protobuf):

* 400 malformed body (protobuf, JSON or gzip), with what is wrong;
* 413 body (raw or inflated) over ``max_body_bytes``;
* 415 unsupported ``Content-Type`` or ``Content-Encoding``;
* 503 + ``Retry-After`` when the writer is behind (the collector retries), or when the
  store failed to write (nothing was acknowledged).

Authentication is the application's middleware's job (``phospho_otel.api.app``).
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

from phospho_otel.receiver.decode import (
    BodyTooLarge,
    DecodeError,
    gunzip,
    parse_json,
    parse_protobuf,
)
from phospho_otel.receiver.ingest import Ingestor, IngestResult, Overloaded

__all__ = ["otlp_traces_endpoint"]

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
_JSON_DECODE_IN_THREAD = 256 * 1024
"""JSON bodies larger than this are parsed in a worker thread, not on the event loop."""

_HTTP_TO_RPC = {
    400: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    500: code_pb2.INTERNAL,
    503: code_pb2.UNAVAILABLE,
}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _error_response(error: _HTTPError, protobuf: bool) -> Response:
    code = _HTTP_TO_RPC.get(error.status, code_pb2.UNKNOWN)
    if protobuf:
        body = status_pb2.Status(code=code, message=error.message).SerializeToString()
        media_type = PROTOBUF
    else:
        body = json.dumps({"code": code, "message": error.message}).encode()
        media_type = JSON
    return Response(body, status_code=error.status, headers=error.headers, media_type=media_type)


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
            if int(declared) > limit:
                raise _HTTPError(413, f"body of {declared} bytes is over the limit of {limit}")
        except ValueError:
            raise _HTTPError(400, f"bad Content-Length {declared!r}") from None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _HTTPError(413, f"body is over the limit of {limit} bytes")
    return bytes(body)


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
            if not protobuf and media_type != JSON:
                raise _HTTPError(
                    415,
                    f"unsupported Content-Type {media_type or '(none)'!r}: "
                    f"use {PROTOBUF} or {JSON}",
                )
            encoding = request.headers.get("content-encoding", "identity").strip().lower()
            if encoding not in ("gzip", "identity", ""):
                raise _HTTPError(
                    415, f"unsupported Content-Encoding {encoding!r}: use gzip or none"
                )
            try:
                body = await _read_body(request, max_body_bytes)
            except ClientDisconnect:
                return Response(status_code=400)
            try:
                if encoding == "gzip":
                    if len(body) > 1024 * 1024:
                        body = await run_in_threadpool(gunzip, body, max_body_bytes)
                    else:
                        body = gunzip(body, max_body_bytes)
                export: ExportTraceServiceRequest
                if protobuf:
                    export = parse_protobuf(body)
                elif len(body) > _JSON_DECODE_IN_THREAD:
                    export = await run_in_threadpool(parse_json, body)
                else:
                    export = parse_json(body)
            except BodyTooLarge as exc:
                raise _HTTPError(413, str(exc)) from exc
            except DecodeError as exc:
                raise _HTTPError(400, str(exc)) from exc
            try:
                result = await ingestor.ingest(export)
            except Overloaded as exc:
                raise _HTTPError(
                    503, str(exc), {"Retry-After": str(math.ceil(exc.retry_after_s))}
                ) from exc
            except RuntimeError as exc:  # closed while shutting down
                raise _HTTPError(503, f"not accepting data: {exc}", {"Retry-After": "1"}) from exc
            except Exception as exc:
                logger.exception("storing an OTLP/HTTP request failed")
                raise _HTTPError(
                    503, f"store write failed: {exc}", {"Retry-After": "1"}
                ) from exc
        except _HTTPError as error:
            return _error_response(error, protobuf)
        return _success_response(result, protobuf)

    return receive_traces
