"""``POST /api/transform``: an OTLP/JSON file in, its traces in Jaeger's v1 JSON model out.

The Jaeger UI posts the file a user uploads there (its "JSON File" tab, for a file in the
OTLP format) and shows the traces of ``{"data": [trace, ...]}``. The body is parsed as an
OTLP/JSON ``ExportTraceServiceRequest`` by the parser the server gives
(``receiver.decode.parse_json``, with its limits on spans and JSON values: the API does
not import the receiver) and each trace converted by ``v1.trace_json``, exactly as a
stored trace is: spans grouped by trace id (in the order the file first names them),
each trace's spans by start time. Nothing is stored.

Errors are Jaeger's v1 envelope (``{"data": null, "errors": [{"code", "msg"}]}``): a
body that is not OTLP/JSON is a 400 saying why, a body over ``max_body_bytes`` (or over
the decoder's limits) a 413.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phospho_otel.api.jaeger.v1 import render_error, trace_json
from phospho_otel.errors import BadRequest, PayloadTooLarge, ServerError
from phospho_otel.store.api import StoredOrigin, StoredTrace, TraceSpan

__all__ = ["MAX_TRANSFORM_BYTES", "OTLPJSONParser", "request_traces", "transform_endpoint"]

MAX_TRANSFORM_BYTES = 64 * 1024 * 1024
"""The largest file ``/api/transform`` takes by default (the OTLP receiver's limit)."""


def request_traces(request: ExportTraceServiceRequest) -> list[StoredTrace]:
    """The traces of an export request, as the store would give them back: one per trace
    id, in the order first seen, each with its spans by start time and their origin."""
    by_trace: dict[bytes, list[TraceSpan]] = defaultdict(list)
    origin_id = 0
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        service = next((kv.value.string_value for kv in resource.attributes
                        if kv.key == "service.name"), "") or "unknown_service"
        resource_bytes = resource.SerializeToString(deterministic=True)
        for scope_spans in resource_spans.scope_spans:
            origin_id += 1
            origin = StoredOrigin(origin_id, service, resource, resource_bytes,
                                  resource_spans.schema_url, scope_spans.scope,
                                  scope_spans.schema_url)
            for span in scope_spans.spans:
                by_trace[span.trace_id].append(TraceSpan(span, origin))
    return [StoredTrace(trace_id, sorted(spans, key=lambda t: t.span.start_time_unix_nano))
            for trace_id, spans in by_trace.items()]


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


OTLPJSONParser = Callable[[bytes], ExportTraceServiceRequest]
"""Parses an OTLP/JSON body, raising ``ServerError``s (``receiver.decode.parse_json``)."""


def _transform(parse: OTLPJSONParser, body: bytes) -> Response:
    if not body.strip():
        raise BadRequest("empty body: expected an OTLP/JSON file (ExportTraceServiceRequest)")
    traces = request_traces(parse(body))
    return JSONResponse({"data": [trace_json(t) for t in traces], "total": len(traces),
                         "limit": 0, "offset": 0, "errors": None})


def transform_endpoint(parse: OTLPJSONParser, max_body_bytes: int = MAX_TRANSFORM_BYTES,
                       ) -> Callable[[Request], Awaitable[Response]]:
    """The ``POST /api/transform`` endpoint (async: it reads the body as it comes, then
    converts in the thread pool)."""

    async def transform(request: Request) -> Response:
        """POST /api/transform: OTLP/JSON -> ``{"data": [Jaeger trace, ...]}``."""
        try:
            body = await _body(request, max_body_bytes)
            return await run_in_threadpool(_transform, parse, body)
        except ServerError as exc:
            return render_error(exc)

    return transform
