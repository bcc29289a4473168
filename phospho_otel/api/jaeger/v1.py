"""Jaeger's v1 HTTP JSON API (``/api/...``), the one Grafana's Jaeger data source calls.

Every answer is Jaeger's envelope ``{data, total, limit, offset, errors}``; an error is
``errors: [{code, msg}]`` with the same HTTP status. Traces and spans are Jaeger's JSON
model, converted from the stored OTLP spans as Jaeger itself does (the OpenTelemetry
Collector's OTLP -> Jaeger translation, then Jaeger's UI JSON):

* ``processes`` ``p1``, ``p2``... one per (service, resource); resource attributes
  other than ``service.name`` become process tags;
* span tags: the attributes, then ``span.kind``, ``otel.status_code``, ``error``,
  ``otel.status_description``, ``w3c.tracestate``, ``otel.scope.name``/``version``;
* tag types ``string``/``bool``/``int64``/``float64``/``binary`` (base64); an int64
  outside JavaScript's safe range is sent as a string; arrays and maps as JSON text;
* the parent is a ``CHILD_OF`` reference, links are ``FOLLOWS_FROM``; events are logs
  (``event`` field = the event's name); times and durations in microseconds.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import time
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from phospho_otel.api.errors import guarded
from phospho_otel.errors import BadRequest, NotFound, ServerError
from phospho_otel.store.api import (
    MAX_SPANS_PER_SEARCH,
    MAX_SPANS_PER_TRACE,
    SESSION_TAG,
    USER_TAG,
    Store,
    StoredTrace,
    TraceQuery,
    TraceSpan,
)
from phospho_otel.store.tags import SPAN_KIND_NAMES, attribute_text

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_LOOKBACK_NS",
    "MAX_LIMIT",
    "JaegerV1",
    "kv_json",
    "parse_go_duration",
    "parse_trace_id",
    "trace_id_text",
    "trace_json",
]

logger = logging.getLogger(__name__)

DEFAULT_LIMIT = 100
"""Traces per search when ``limit`` is not given (Jaeger's default)."""
MAX_LIMIT = 1000
"""Most traces one search returns, whatever ``limit`` asks."""
DEFAULT_LOOKBACK_NS = 2 * 24 * 3600 * 10**9
"""Search window when ``start`` is not given: two days before ``end`` (Jaeger's)."""
DEFAULT_DEPENDENCY_LOOKBACK_MS = 24 * 3600 * 1000
JS_MAX_SAFE_INTEGER = 2**53 - 1


# --- parsing ----------------------------------------------------------------------------

_GO_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_GO_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


def parse_go_duration(text: str) -> int:
    """A Go ``time.ParseDuration`` string (``1.5s``, ``300ms``, ``1h2m``...) in ns."""
    s = text.strip()
    sign = 1
    if s[:1] in "+-" and s:
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(s):
        m = _GO_PART.match(s, pos)
        if m is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


MAX_NS = 2**63 - 1
"""The latest time, and the longest duration, a store holds (2262-04-11T23:47:16Z)."""


def ns_param(name: str, ns: int, *, low: int = 0) -> int:
    """``ns`` (a time or duration in ns given as parameter ``name``), or ``BadRequest``
    when it is outside ``low`` .. ``MAX_NS``."""
    if ns < low:
        raise BadRequest(f"parameter '{name}' must not be negative" if low == 0 else
                         f"parameter '{name}' is out of range")
    if ns > MAX_NS:
        raise BadRequest(f"parameter '{name}' is out of range: past 2^63-1 ns "
                         "(2262-04-11T23:47:16Z)")
    return ns


def parse_trace_id(text: str) -> bytes:
    """A trace id in hex (1 to 32 digits, Jaeger drops leading zeros) as 16 bytes."""
    s = text.strip()
    if not 0 < len(s) <= 32 or not all(c in "0123456789abcdefABCDEF" for c in s):
        raise ValueError(f"invalid trace id {text!r}: expected up to 32 hex digits")
    return bytes.fromhex(s.rjust(32, "0"))


def trace_id_text(trace_id: bytes) -> str:
    """Jaeger's text of a trace id: 16 hex digits when the high half is zero, else 32."""
    if trace_id[:8] == b"\0" * 8 and len(trace_id) == 16:
        return trace_id[8:].hex()
    return trace_id.hex()


def _int_param(request: Request, name: str, default: int | None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadRequest(f"unable to parse param '{name}': {raw!r} is not an integer") from None


def _duration_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        return ns_param(name, parse_go_duration(raw))
    except ValueError as exc:
        raise BadRequest(f"cannot parse {name}: {exc}") from None


def _tags_params(request: Request) -> dict[str, str]:
    tags: dict[str, str] = {}
    for raw in request.query_params.getlist("tags"):
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise BadRequest(f"malformed 'tags' parameter, cannot unmarshal JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise BadRequest("malformed 'tags' parameter: expected a JSON object of key: value")
        for key, value in parsed.items():
            if isinstance(value, str):
                tags[key] = value
            elif isinstance(value, bool | int | float):
                tags[key] = json.dumps(value)
            else:
                raise BadRequest(f"malformed 'tags' parameter: value of {key!r} must be a string")
    for raw in request.query_params.getlist("tag"):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise BadRequest(f"malformed 'tag' parameter, expecting key:value, received: {raw}")
        tags[key] = value
    return tags


# --- Jaeger JSON model ---------------------------------------------------------------------


def kv_json(key: str, value: AnyValue) -> dict[str, Any]:
    """One Jaeger ``KeyValue`` ({key, type, value}) from an OTLP attribute value."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return {"key": key, "type": "string", "value": value.string_value}
    if kind == "bool_value":
        return {"key": key, "type": "bool", "value": value.bool_value}
    if kind == "int_value":
        n = value.int_value
        return {
            "key": key,
            "type": "int64",
            "value": n if -JS_MAX_SAFE_INTEGER <= n <= JS_MAX_SAFE_INTEGER else str(n),
        }
    if kind == "double_value":
        d = value.double_value
        return {"key": key, "type": "float64", "value": d if math.isfinite(d) else str(d)}
    if kind == "bytes_value":
        encoded = base64.b64encode(value.bytes_value).decode("ascii")
        return {"key": key, "type": "binary", "value": encoded}
    return {"key": key, "type": "string", "value": attribute_text(value)}


def _kvs(attributes: Iterable[KeyValue], skip: str | None = None) -> list[dict[str, Any]]:
    return [kv_json(kv.key, kv.value) for kv in attributes if kv.key != skip]


def _str_tag(key: str, value: str) -> dict[str, Any]:
    return {"key": key, "type": "string", "value": value}


def _span_tags(item: TraceSpan) -> list[dict[str, Any]]:
    span, scope = item.span, item.origin.scope
    tags = _kvs(span.attributes)
    kind = SPAN_KIND_NAMES.get(span.kind, "")
    if kind:
        tags.append(_str_tag("span.kind", kind))
    if span.status.code == Status.STATUS_CODE_OK:
        tags.append(_str_tag("otel.status_code", "OK"))
    elif span.status.code == Status.STATUS_CODE_ERROR:
        tags.append(_str_tag("otel.status_code", "ERROR"))
        tags.append({"key": "error", "type": "bool", "value": True})
    if span.status.message:
        tags.append(_str_tag("otel.status_description", span.status.message))
    if span.trace_state:
        tags.append(_str_tag("w3c.tracestate", span.trace_state))
    if scope.name:
        tags.append(_str_tag("otel.scope.name", scope.name))
    if scope.version:
        tags.append(_str_tag("otel.scope.version", scope.version))
    return tags


def _span_json(item: TraceSpan, process_id: str) -> dict[str, Any]:
    span = item.span
    trace_id = trace_id_text(span.trace_id)
    references = []
    if span.parent_span_id:
        references.append(
            {"refType": "CHILD_OF", "traceID": trace_id, "spanID": span.parent_span_id.hex()}
        )
    for link in span.links:
        references.append(
            {
                "refType": "FOLLOWS_FROM",
                "traceID": trace_id_text(link.trace_id),
                "spanID": link.span_id.hex(),
            }
        )
    logs = []
    for event in span.events:
        fields = [_str_tag("event", event.name)] if event.name else []
        fields.extend(_kvs(event.attributes))
        logs.append({"timestamp": event.time_unix_nano // 1000, "fields": fields})
    out: dict[str, Any] = {
        "traceID": trace_id,
        "spanID": span.span_id.hex(),
    }
    if span.flags & 0xFF:
        out["flags"] = span.flags & 0xFF
    out.update(
        {
            "operationName": span.name,
            "references": references,
            "startTime": span.start_time_unix_nano // 1000,
            "duration": max(0, span.end_time_unix_nano - span.start_time_unix_nano) // 1000,
            "tags": _span_tags(item),
            "logs": logs,
            "processID": process_id,
            "warnings": None,
        }
    )
    return out


def trace_json(trace: StoredTrace) -> dict[str, Any]:
    """A stored trace in Jaeger's JSON model (``{traceID, spans, processes, warnings}``)."""
    process_ids: dict[tuple[str, bytes], str] = {}
    processes: dict[str, dict[str, Any]] = {}
    spans = []
    for item in trace.spans:
        key = (item.origin.service_name, item.origin.resource_bytes)
        pid = process_ids.get(key)
        if pid is None:
            pid = f"p{len(process_ids) + 1}"
            process_ids[key] = pid
            processes[pid] = {
                "serviceName": item.origin.service_name,
                "tags": _kvs(item.origin.resource.attributes, skip="service.name"),
            }
        spans.append(_span_json(item, pid))
    warnings = None
    if trace.truncated:
        warnings = [f"trace has more than {MAX_SPANS_PER_TRACE} spans; showing the first"]
    return {
        "traceID": trace_id_text(trace.trace_id),
        "spans": spans,
        "processes": processes,
        "warnings": warnings,
    }


# --- responses ----------------------------------------------------------------------------


def _envelope(
    data: Any, *, errors: list[dict[str, Any]] | None = None, status: int = 200
) -> Response:
    total = len(data) if isinstance(data, list) else 0
    body = {"data": data, "total": total, "limit": 0, "offset": 0, "errors": errors}
    return JSONResponse(body, status_code=status)


def render_error(exc: ServerError) -> Response:
    """A ``ServerError`` in Jaeger's v1 envelope: ``errors: [{code, msg}]``, same status."""
    return _envelope(None, errors=[{"code": exc.status, "msg": exc.message}],
                     status=exc.status)


_guarded = guarded(render_error)


# --- endpoints ----------------------------------------------------------------------------


class JaegerV1:
    """The v1 endpoints over one store; each method is a (sync) Starlette endpoint."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.services = _guarded(self._services)
        self.service_operations = _guarded(self._service_operations)
        self.operations = _guarded(self._operations)
        self.search = _guarded(self._search)
        self.trace = _guarded(self._trace)
        self.dependencies = _guarded(self._dependencies)

    def _services(self, request: Request) -> Response:
        """GET /api/services: names of the services."""
        with self.store.read() as reader:
            return _envelope(reader.services())

    def _service_operations(self, request: Request) -> Response:
        """GET /api/services/{service}/operations: span names of a service."""
        service = request.path_params["service"]
        with self.store.read() as reader:
            return _envelope([name for name, _ in reader.operations(service)])

    def _operations(self, request: Request) -> Response:
        """GET /api/operations?service=&spanKind=: [{name, spanKind}]."""
        service = request.query_params.get("service", "")
        if not service:
            raise BadRequest("parameter 'service' is required")
        wanted = request.query_params.get("spanKind", "")
        with self.store.read() as reader:
            ops = reader.operations(service)
        data = [{"name": name, "spanKind": SPAN_KIND_NAMES.get(kind, "")} for name, kind in ops]
        if wanted:
            data = [op for op in data if op["spanKind"] == wanted]
        return _envelope(data)

    def _trace(self, request: Request) -> Response:
        """GET /api/traces/{trace_id}: one trace, 404 when no span of it is stored."""
        raw = request.path_params["trace_id"]
        try:
            trace_id = parse_trace_id(raw)
        except ValueError as exc:
            raise BadRequest(f"malformed trace id: {exc}") from None
        with self.store.read() as reader:
            found = reader.get_traces([trace_id])
        if not found:
            raise NotFound("trace not found")
        return _envelope([trace_json(found[0])])

    def _search(self, request: Request) -> Response:
        """GET /api/traces: search, or fetch the repeated ``traceID`` parameters."""
        raw_ids = request.query_params.getlist("traceID")
        if raw_ids:
            return self._by_ids(raw_ids)
        query = self._search_query(request)
        with self.store.read() as reader:
            ids = reader.find_trace_ids(query)
            found = reader.get_traces(ids, max_total_spans=MAX_SPANS_PER_SEARCH)
        return _envelope([trace_json(t) for t in found])

    def _by_ids(self, raw_ids: list[str]) -> Response:
        ids: list[bytes] = []
        for raw in raw_ids[:MAX_LIMIT]:
            try:
                ids.append(parse_trace_id(raw))
            except ValueError as exc:
                raise BadRequest(f"malformed 'traceID' parameter: {exc}") from None
        with self.store.read() as reader:
            found = reader.get_traces(ids)
        present = {t.trace_id for t in found}
        errors = [
            {"msg": "trace not found", "traceID": trace_id_text(i)}
            for i in dict.fromkeys(ids)
            if i not in present
        ]
        return _envelope([trace_json(t) for t in found], errors=errors or None)

    @staticmethod
    def _search_query(request: Request) -> TraceQuery:
        params = request.query_params
        service = params.get("service", "")
        tags = _tags_params(request)
        if not service and SESSION_TAG not in tags and USER_TAG not in tags:
            raise BadRequest("parameter 'service' is required (unless tags has session.id or"
                             " user.id)")
        start_us = _int_param(request, "start", None)
        end_us = _int_param(request, "end", None)
        if start_us is not None:
            ns_param("start", start_us * 1000)
        end_ns = ns_param("end", end_us * 1000) if end_us is not None else time.time_ns()
        start_ns = start_us * 1000 if start_us is not None else end_ns - DEFAULT_LOOKBACK_NS
        limit = _int_param(request, "limit", DEFAULT_LIMIT) or DEFAULT_LIMIT
        if limit < 0:
            raise BadRequest("parameter 'limit' must not be negative")
        min_d = _duration_param(request, "minDuration")
        max_d = _duration_param(request, "maxDuration")
        if min_d is not None and max_d is not None and max_d < min_d:
            raise BadRequest("'maxDuration' should be greater than 'minDuration'")
        return TraceQuery(
            service=service or None,
            operation=params.get("operation") or None,
            tags=tags,
            start_min_ns=start_ns,
            start_max_ns=end_ns,
            duration_min_ns=min_d,
            duration_max_ns=max_d,
            limit=min(limit, MAX_LIMIT),
        )

    def _dependencies(self, request: Request) -> Response:
        """GET /api/dependencies?endTs=&lookback= (ms): [{parent, child, callCount}]."""
        end_ms = _int_param(request, "endTs", None)
        end_ns = (time.time_ns() if end_ms is None
                  else ns_param("endTs", end_ms * 1_000_000))
        lookback_ms = _int_param(request, "lookback", DEFAULT_DEPENDENCY_LOOKBACK_MS)
        assert lookback_ms is not None
        lookback_ns = ns_param("lookback", lookback_ms * 1_000_000)
        with self.store.read() as reader:
            links = reader.dependencies(end_ns - lookback_ns, end_ns)
        return _envelope([{"parent": p, "child": c, "callCount": n} for p, c, n in links])
