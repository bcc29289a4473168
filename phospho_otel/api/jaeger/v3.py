"""Jaeger's api_v3 over HTTP (``/api/v3/...``), as the current Jaeger UI calls it.

Traces are answered as ``{"result": TracesData}`` in OTLP JSON, as Jaeger's HTTP
gateway does: camelCase fields, hex trace and span ids, enums (``kind``,
``status.code``) as numbers, 64-bit integers as strings. Errors are
``{"error": {"httpCode", "message"}}``; a search or lookup that finds nothing is 404
"No traces found". Query parameters use the canonical camelCase names
(``query.serviceName``...) and accept Jaeger's deprecated snake_case aliases.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phospho_otel.api.errors import guarded
from phospho_otel.api.jaeger.v1 import (
    MAX_LIMIT,
    MAX_NS,
    ns_param,
    parse_go_duration,
    parse_trace_id,
)
from phospho_otel.errors import BadRequest, NotFound, ServerError
from phospho_otel.store.api import (
    MAX_SPANS_PER_SEARCH,
    SESSION_TAG,
    USER_TAG,
    Store,
    StoredTrace,
    TraceQuery,
)
from phospho_otel.store.tags import SPAN_KIND_NAMES

__all__ = [
    "DEFAULT_SEARCH_DEPTH",
    "JaegerV3",
    "parse_rfc3339_nano",
    "trace_summary",
    "traces_data_json",
]

DEFAULT_SEARCH_DEPTH = 100
"""Traces per search when ``query.searchDepth`` is not given (Jaeger's default)."""

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_rfc3339_nano(text: str) -> int:
    """An RFC 3339 time with up to nanosecond digits (Go's RFC3339Nano) in Unix ns."""
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        raise ValueError(f"{text!r} is not a valid time")
    seconds = calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))
    zone = m.group(8)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        seconds -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    fraction = int((m.group(7) or "0").ljust(9, "0"))
    return seconds * 1_000_000_000 + fraction


def _get(request: Request, canonical: str, deprecated: str) -> tuple[str, str]:
    """The value of a parameter and the name it was given under (canonical first)."""
    value = request.query_params.get(canonical, "")
    if value:
        return value, canonical
    return request.query_params.get(deprecated, ""), deprecated


# --- OTLP JSON ---------------------------------------------------------------------------


def _span_dict(span: Span) -> dict[str, Any]:
    out = MessageToDict(span, use_integers_for_enums=True)
    out["traceId"] = span.trace_id.hex()
    out["spanId"] = span.span_id.hex()
    if span.parent_span_id:
        out["parentSpanId"] = span.parent_span_id.hex()
    for link, link_dict in zip(span.links, out.get("links", []), strict=True):
        link_dict["traceId"] = link.trace_id.hex()
        link_dict["spanId"] = link.span_id.hex()
    return out


def traces_data_json(found: list[StoredTrace]) -> dict[str, Any]:
    """OTLP JSON ``TracesData`` of the traces: one ``resourceSpans`` per resource of each
    trace, one ``scopeSpans`` per scope within it."""
    resource_spans: list[dict[str, Any]] = []
    for trace in found:
        by_resource: dict[tuple[bytes, str], dict[str, Any]] = {}
        by_scope: dict[tuple[bytes, str, int], list[dict[str, Any]]] = {}
        for item in trace.spans:
            origin = item.origin
            rkey = (origin.resource_bytes, origin.resource_schema_url)
            rs = by_resource.get(rkey)
            if rs is None:
                rs = {"resource": MessageToDict(origin.resource), "scopeSpans": []}
                if origin.resource_schema_url:
                    rs["schemaUrl"] = origin.resource_schema_url
                by_resource[rkey] = rs
                resource_spans.append(rs)
            skey = (*rkey, origin.id)
            spans = by_scope.get(skey)
            if spans is None:
                spans = []
                ss: dict[str, Any] = {"scope": MessageToDict(origin.scope), "spans": spans}
                if origin.scope_schema_url:
                    ss["schemaUrl"] = origin.scope_schema_url
                rs["scopeSpans"].append(ss)
                by_scope[skey] = spans
            spans.append(_span_dict(item.span))
    return {"resourceSpans": resource_spans}


def trace_summary(trace: StoredTrace) -> dict[str, Any]:
    """Jaeger's ``TraceSummary`` of a trace (root, time span, span/error/orphan counts)."""
    span_ids = {item.span.span_id for item in trace.spans}
    roots = [i for i in trace.spans if not i.span.parent_span_id]
    root = roots[0] if roots else trace.spans[0]
    services: dict[str, dict[str, Any]] = {}
    errors = orphans = 0
    for item in trace.spans:
        span = item.span
        is_error = span.status.code == Status.STATUS_CODE_ERROR
        errors += is_error
        orphans += bool(span.parent_span_id) and span.parent_span_id not in span_ids
        svc = services.setdefault(
            item.origin.service_name,
            {"name": item.origin.service_name, "spanCount": 0, "errorSpanCount": 0},
        )
        svc["spanCount"] += 1
        svc["errorSpanCount"] += is_error
    return {
        "traceId": trace.trace_id.hex(),
        "rootServiceName": root.origin.service_name,
        "rootOperationName": root.span.name,
        "minStartTimeUnixNano": str(min(i.span.start_time_unix_nano for i in trace.spans)),
        "maxEndTimeUnixNano": str(max(i.span.end_time_unix_nano for i in trace.spans)),
        "spanCount": len(trace.spans),
        "errorSpanCount": errors,
        "orphanSpanCount": orphans,
        "services": list(services.values()),
    }


# --- responses ---------------------------------------------------------------------------


def render_error(exc: ServerError) -> Response:
    """A ``ServerError`` as Jaeger's api_v3 answers it: ``{"error": {httpCode, message}}``."""
    return JSONResponse({"error": {"httpCode": exc.status, "message": exc.message}},
                        status_code=exc.status)


_guarded = guarded(render_error)


def _not_found() -> NotFound:
    return NotFound("No traces found")


def _parse_trace_id_v3(text: str) -> bytes:
    """Hex (as v1), or base64 of the 16 bytes (standard or URL-safe, padded or not)."""
    try:
        return parse_trace_id(text)
    except ValueError as hex_error:
        if len(text) <= 24:
            for decode in (base64.b64decode, base64.urlsafe_b64decode):
                try:
                    raw = decode(text + "=" * (-len(text) % 4))
                except (binascii.Error, ValueError):
                    continue
                if len(raw) == 16:
                    return raw
        raise hex_error from None


# --- endpoints ---------------------------------------------------------------------------


class JaegerV3:
    """The api_v3 endpoints over one store; each attribute is a (sync) Starlette endpoint."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.services = _guarded(self._services)
        self.operations = _guarded(self._operations)
        self.trace = _guarded(self._trace)
        self.search = _guarded(self._search)
        self.summaries = _guarded(self._summaries)

    def _services(self, request: Request) -> Response:
        """GET /api/v3/services: {"services": [...]}."""
        with self.store.read() as reader:
            return JSONResponse({"services": reader.services()})

    def _operations(self, request: Request) -> Response:
        """GET /api/v3/operations?service=&spanKind=: {"operations": [{name, spanKind}]}."""
        service = request.query_params.get("service", "")
        if not service:
            raise BadRequest("parameter service is required")
        wanted, _ = _get(request, "spanKind", "span_kind")
        with self.store.read() as reader:
            ops = reader.operations(service)
        data = [
            {"name": name, "spanKind": SPAN_KIND_NAMES.get(kind, "") or "internal"}
            for name, kind in ops
        ]
        if wanted:
            data = [op for op in data if op["spanKind"] == wanted]
        return JSONResponse({"operations": data})

    def _trace(self, request: Request) -> Response:
        """GET /api/v3/traces/{trace_id}: {"result": TracesData}, 404 when unknown."""
        raw = request.path_params["trace_id"]
        try:
            trace_id = _parse_trace_id_v3(raw)
        except ValueError as exc:
            raise BadRequest(f"malformed parameter trace_id: {exc}") from None
        for canonical, deprecated in (("startTime", "start_time"), ("endTime", "end_time")):
            value, name = _get(request, canonical, deprecated)
            if value:
                try:
                    parse_rfc3339_nano(value)
                except ValueError as exc:
                    raise BadRequest(f"malformed parameter {name}: {exc}") from None
        value, name = _get(request, "rawTraces", "raw_traces")
        if value and value.lower() not in ("true", "false", "1", "0", "t", "f"):
            raise BadRequest(f"malformed parameter {name}: {value!r} is not a boolean")
        with self.store.read() as reader:
            found = reader.get_traces([trace_id])
        if not found:
            raise _not_found()
        return JSONResponse({"result": traces_data_json(found)})

    def _find(self, request: Request) -> list[StoredTrace]:
        query = _trace_query(request)
        with self.store.read() as reader:
            ids = reader.find_trace_ids(query)
            return reader.get_traces(ids, max_total_spans=MAX_SPANS_PER_SEARCH)

    def _search(self, request: Request) -> Response:
        """GET /api/v3/traces?query.*: {"result": TracesData} of the matching traces."""
        found = self._find(request)
        if not found:
            raise _not_found()
        return JSONResponse({"result": traces_data_json(found)})

    def _summaries(self, request: Request) -> Response:
        """GET /api/v3/trace-summaries?query.*: {"summaries": [...]}."""
        return JSONResponse({"summaries": [trace_summary(t) for t in self._find(request)]})


def _trace_query(request: Request) -> TraceQuery:
    service, _ = _get(request, "query.serviceName", "query.service_name")
    operation, _ = _get(request, "query.operationName", "query.operation_name")
    attributes: dict[str, str] = {}
    raw_attrs = request.query_params.get("query.attributes", "")
    if raw_attrs:
        try:
            parsed = json.loads(raw_attrs)
        except ValueError as exc:
            raise BadRequest(f"malformed parameter query.attributes: {exc}") from None
        if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
            raise BadRequest(
                "malformed parameter query.attributes: expected a JSON object of strings"
            )
        attributes = parsed
    min_raw, min_name = _get(request, "query.startTimeMin", "query.start_time_min")
    max_raw, max_name = _get(request, "query.startTimeMax", "query.start_time_max")
    if not min_raw or not max_raw:
        raise BadRequest("query.startTimeMin and query.startTimeMax are required")
    try:
        start_min = ns_param(min_name, parse_rfc3339_nano(min_raw), low=-MAX_NS - 1)
    except ValueError as exc:
        raise BadRequest(f"malformed parameter {min_name}: {exc}") from None
    try:
        start_max = ns_param(max_name, parse_rfc3339_nano(max_raw), low=-MAX_NS - 1)
    except ValueError as exc:
        raise BadRequest(f"malformed parameter {max_name}: {exc}") from None
    if start_min >= start_max:
        raise BadRequest("query.startTimeMin must be before query.startTimeMax")
    depth_raw, depth_name = _get(request, "query.searchDepth", "query.search_depth")
    if not depth_raw:
        depth_raw, depth_name = request.query_params.get("query.num_traces", ""), "query.num_traces"
    depth = DEFAULT_SEARCH_DEPTH
    if depth_raw:
        try:
            depth = int(depth_raw)
        except ValueError:
            raise BadRequest(f"malformed parameter {depth_name}: not an integer") from None
        if depth <= 0:
            depth = DEFAULT_SEARCH_DEPTH
    durations: dict[str, int | None] = {}
    for canonical, deprecated in (
        ("query.durationMin", "query.duration_min"),
        ("query.durationMax", "query.duration_max"),
    ):
        value, name = _get(request, canonical, deprecated)
        durations[canonical] = None
        if value:
            try:
                durations[canonical] = ns_param(name, parse_go_duration(value))
            except ValueError as exc:
                raise BadRequest(f"malformed parameter {name}: {exc}") from None
    d_min, d_max = durations["query.durationMin"], durations["query.durationMax"]
    if d_min is not None and d_max is not None and d_max < d_min:
        raise BadRequest("query.durationMax must not be less than query.durationMin")
    raw_value, raw_name = _get(request, "query.rawTraces", "query.raw_traces")
    if raw_value and raw_value.lower() not in ("true", "false", "1", "0", "t", "f"):
        raise BadRequest(f"malformed parameter {raw_name}: {raw_value!r} is not a boolean")
    if not service and SESSION_TAG not in attributes and USER_TAG not in attributes:
        raise BadRequest(
            "query.serviceName is required (unless query.attributes has session.id or user.id)"
        )
    return TraceQuery(
        service=service or None,
        operation=operation or None,
        tags=attributes,
        start_min_ns=start_min,
        start_max_ns=start_max,
        duration_min_ns=d_min,
        duration_max_ns=d_max,
        limit=min(depth, MAX_LIMIT),
    )
