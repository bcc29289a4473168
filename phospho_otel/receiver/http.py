"""OTLP/HTTP receivers: ``POST /v1/traces`` and ``POST /v1/logs`` as Starlette endpoints.

Both signals go through the same machinery (``_otlp_endpoint``): everything below holds
for each, the logs endpoint answering with an ``ExportLogsServiceResponse``
(``rejected_log_records``) and handing its requests to ``Ingestor.submit_logs``.

Transport only: reads the body, decodes it (``receiver.decode``), hands the request to
the aggregator (``aggregator.Ingestor``) and replies once it is durable. Accepts
``application/x-protobuf`` (also ``application/protobuf``) and ``application/json``, with
``Content-Encoding: gzip`` or none. Replies as OTLP says: 200 with an
``ExportTraceServiceResponse`` in the request's encoding (``partial_success`` filled when
spans were rejected or task spans skipped); an error is a ``google.rpc.Status`` in the
request's encoding (JSON for anything not protobuf) with the status of its
``errors.ServerError``:

* 400 malformed body (protobuf, JSON or gzip), with what is wrong;
* 413 body (raw or inflated) over ``max_body_bytes``, or holding more than the decoder
  materialises;
* 415 unsupported ``Content-Type`` or ``Content-Encoding``;
* 500 when the store cannot keep the request (``errors.StoreError``: a retry would fail
  the same way, so OTLP exporters, which do not retry a 500, drop it instead of retrying
  it forever); nothing of it was acknowledged;
* 503 + ``Retry-After`` when the writer is behind (``Ingestor.admit``, checked before the
  body is read), when the bytes held by requests in progress are at their budget
  (``receiver.budget``, checked against ``Content-Length`` before the body is read), when
  shutting down, or when the store is unavailable for now; the collector retries.

The event loop only moves bytes: inflating, parsing and extracting run in a small pool of
decode threads, whatever the body's size (a thread still shares the GIL, so the decoder's
bounds are what keeps a hostile body from taking the loop's time). Slow or idle clients
are the HTTP server's business (``server.connections``); authentication and Host checks
are the application's middleware's (``receiver.auth``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import Future, ThreadPoolExecutor

from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from phospho_otel.aggregator.ingest import Ingestor, IngestResult
from phospho_otel.errors import (
    BadRequest,
    PayloadTooLarge,
    ServerError,
    StoreError,
    Unavailable,
    UnsupportedMediaType,
)
from phospho_otel.receiver.budget import (
    DEFAULT_MAX_BUFFERED_BYTES,
    ByteBudget,
    Reservation,
    store_error,
)
from phospho_otel.receiver.decode import (
    gunzip,
    parse_json,
    parse_logs_json,
    parse_logs_protobuf,
    parse_protobuf,
)

__all__ = [
    "DECODE_THREADS",
    "OTLP_PATHS",
    "OTLPPathMiddleware",
    "canonical_path",
    "otlp_logs_endpoint",
    "otlp_status_response",
    "otlp_traces_endpoint",
]

logger = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
_PROTOBUF_TYPES = frozenset({PROTOBUF, "application/protobuf"})
DECODE_THREADS = min(4, os.cpu_count() or 1)
"""Threads inflating, parsing and extracting bodies (decoding mostly holds the GIL: more
would not decode faster, and each may hold a body inflated up to the size limit)."""


OTLP_PATHS = frozenset({"/v1/traces", "/v1/logs"})
"""The OTLP/HTTP paths ``OTLPPathMiddleware`` routes whatever their slashes."""


def canonical_path(path: str) -> str:
    """``path`` with runs of slashes collapsed and no trailing slash (``//v1/traces/``
    -> ``/v1/traces``)."""
    canonical = "/" + "/".join(part for part in path.split("/") if part)
    return canonical


class OTLPPathMiddleware:
    """ASGI middleware routing ``//v1/traces``, ``/v1/traces/`` (any repeated or trailing
    slashes) as ``/v1/traces``, and likewise the other ``OTLP_PATHS``: exporters that
    join a base URL ending in ``/`` with a path starting with one (Langfuse 5 with
    ``LANGFUSE_OTEL_TRACES_EXPORT_PATH=/v1/traces`` posts to ``//v1/traces``) would
    otherwise get a 404 and drop their spans. Other paths are left as they are."""

    def __init__(self, app: ASGIApp, paths: frozenset[str] = OTLP_PATHS) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path not in self.paths and ("//" in path or path.endswith("/")):
                canonical = canonical_path(path)
                if canonical in self.paths:
                    scope = dict(scope, path=canonical, raw_path=canonical.encode())
        await self.app(scope, receive, send)


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


def _success_response(result: IngestResult, protobuf: bool, logs: bool) -> Response:
    """The OTLP reply of a stored request (``logs``: an ``ExportLogsServiceResponse``,
    whose rejected count is ``rejected_log_records``)."""
    if protobuf:
        reply: Message = ExportLogsServiceResponse() if logs else ExportTraceServiceResponse()
        if result.rejected_spans or result.error_message:
            partial = reply.partial_success  # type: ignore[attr-defined]
            if logs:
                partial.rejected_log_records = result.rejected_spans
            else:
                partial.rejected_spans = result.rejected_spans
            partial.error_message = result.error_message
        return Response(reply.SerializeToString(), media_type=PROTOBUF)
    doc: dict[str, object] = {}
    if result.rejected_spans or result.error_message:
        doc["partialSuccess"] = {
            "rejectedLogRecords" if logs else "rejectedSpans": str(result.rejected_spans),
            "errorMessage": result.error_message,
        }
    return Response(json.dumps(doc).encode(), media_type=JSON)


async def _read_body(request: Request, limit: int, held: Reservation) -> list[bytes]:
    """The body's chunks, held in ``held``: its declared size is taken before anything is
    read (so a refusal comes first), a chunked body's chunks as they arrive."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise BadRequest(f"bad Content-Length {declared!r}") from None
        if size > limit:
            raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {limit}")
        held.take(size)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        if not chunk:
            continue
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(f"body is over the limit of {limit} bytes")
        if declared is None:
            held.take(len(chunk))
        chunks.append(chunk)
    return chunks


def _encoding(request: Request, media_type: str, protobuf: bool) -> bool:
    """Whether the body is gzip (``UnsupportedMediaType`` for what we do not read)."""
    if not protobuf and media_type != JSON:
        raise UnsupportedMediaType(
            f"unsupported Content-Type {media_type or '(none)'!r}: use {PROTOBUF} or {JSON}"
        )
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {encoding!r}: use gzip or none"
        )
    return encoding == "gzip"


def otlp_traces_endpoint(
    ingestor: Ingestor,
    max_body_bytes: int,
    *,
    budget: ByteBudget | None = None,
    decode_threads: int = DECODE_THREADS,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ``POST /v1/traces`` feeding ``ingestor``.

    ``max_body_bytes`` bounds the body both as received and once inflated; ``budget``
    bounds the bytes all requests in progress hold at once (shared with the gRPC receiver
    by the server; a budget of ``DEFAULT_MAX_BUFFERED_BYTES`` if none is given);
    ``decode_threads`` decode bodies."""
    return _otlp_endpoint(ingestor, max_body_bytes, budget, decode_threads, logs=False)


def otlp_logs_endpoint(
    ingestor: Ingestor,
    max_body_bytes: int,
    *,
    budget: ByteBudget | None = None,
    decode_threads: int = DECODE_THREADS,
) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint for ``POST /v1/logs`` feeding ``ingestor``
    (``Ingestor.submit_logs``); the arguments as ``otlp_traces_endpoint``'s (the server
    gives both endpoints the same budget)."""
    return _otlp_endpoint(ingestor, max_body_bytes, budget, decode_threads, logs=True)


def _otlp_endpoint(ingestor: Ingestor, max_body_bytes: int, budget: ByteBudget | None,
                   decode_threads: int, *, logs: bool) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint of one signal (``logs``: logs, else traces); see the module doc."""
    if max_body_bytes < 1:
        raise ValueError("max_body_bytes must be >= 1")
    if decode_threads < 1:
        raise ValueError("decode_threads must be >= 1")
    budget = budget if budget is not None else ByteBudget(DEFAULT_MAX_BUFFERED_BYTES)
    decoders = ThreadPoolExecutor(decode_threads, thread_name_prefix="phospho-decode")

    def decode_and_submit(chunks: list[bytes], gzip: bool, protobuf: bool,
                          held: Reservation) -> Future[IngestResult]:
        """In a decode thread: inflate, parse, extract and queue the request."""
        body = b"".join(chunks)
        chunks.clear()
        if gzip:
            body = gunzip(body, max_body_bytes)
            held.take(len(body))
        if logs:
            logs_export = parse_logs_protobuf(body) if protobuf else parse_logs_json(body)
            del body
            return ingestor.submit_logs(logs_export)
        export = parse_protobuf(body) if protobuf else parse_json(body)
        del body
        return ingestor.submit(export)

    async def receive(request: Request) -> Response:
        media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        protobuf = media_type in _PROTOBUF_TYPES
        try:
            with budget.reserve() as held:
                gzip = _encoding(request, media_type, protobuf)
                ingestor.admit()
                chunks = await _read_body(request, max_body_bytes, held)
                written = await asyncio.get_running_loop().run_in_executor(
                    decoders, decode_and_submit, chunks, gzip, protobuf, held)
                del chunks
                result = await asyncio.wrap_future(written)
        except ClientDisconnect:
            return Response(status_code=400)
        except ServerError as error:
            return otlp_status_response(error, protobuf)
        except StoreError as exc:  # the store cannot keep it; a retry would fail again
            logger.error("the store refused an OTLP/HTTP request: %s", exc)
            return otlp_status_response(store_error(exc), protobuf)
        except Exception as exc:  # a bug: nothing was acknowledged, so the client retries
            logger.exception("storing an OTLP/HTTP request failed")
            return otlp_status_response(Unavailable(f"store write failed: {exc}"), protobuf)
        return _success_response(result, protobuf, logs)

    return receive
