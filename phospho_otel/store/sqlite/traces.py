"""Trace lookup and search over the ``spans`` table, for the Jaeger-compatible API.

Plain functions over a ``sqlite3.Connection`` (one from ``SQLiteStore.reader()``); they
only read. Spans come back decoded (``opentelemetry.proto.trace.v1.Span``) with their
resource and scope (``Origin``).

How searches stay fast at millions of spans:

* ``session.id`` / ``user.id`` tags use ``spans.session_id`` / ``spans.user_id``
  (indexes ``spans_by_session`` / ``spans_by_user``, ordered by start time); the columns
  are filled from any convention's session/user key (see ``aggregator/``).
* otherwise the service (``spans_by_service``), or service + operation
  (``spans_by_operation``), narrows the candidates, newest first;
* time window, duration, service and operation are SQL conditions; any other tag is
  matched on candidates, at most ``TraceQuery.max_candidates`` of them (a span whose
  bytes lack the tag's key is skipped without decoding);
* service and operation lists skip through the indexes (one index seek per distinct
  value) instead of scanning spans.

A trace matches when one of its spans matches every condition (Jaeger's rule).
"""

from __future__ import annotations

import base64
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = [
    "DEFAULT_MAX_CANDIDATES",
    "DERIVED_TAGS",
    "MAX_SPANS_PER_SEARCH",
    "MAX_SPANS_PER_TRACE",
    "SESSION_TAG",
    "SPAN_KIND_NAMES",
    "USER_TAG",
    "Origin",
    "StoredTrace",
    "TraceQuery",
    "TraceSpan",
    "attribute_text",
    "candidates_sql",
    "dependencies",
    "find_trace_ids",
    "get_trace",
    "get_traces",
    "operations",
    "services",
    "span_tag_texts",
]

SESSION_TAG = "session.id"
"""Tag answered from the indexed ``spans.session_id`` column."""
USER_TAG = "user.id"
"""Tag answered from the indexed ``spans.user_id`` column."""

DEFAULT_MAX_CANDIDATES = 20_000
"""Most candidate spans examined to match non-indexed tags, per search."""
MAX_SPANS_PER_TRACE = 20_000
"""A trace with more spans is cut (``StoredTrace.truncated``)."""
MAX_SPANS_PER_SEARCH = 200_000
"""A search stops loading traces once it holds this many spans."""
MAX_SERVICES = 10_000
MAX_OPERATIONS = 10_000

SPAN_KIND_NAMES: dict[int, str] = {
    Span.SPAN_KIND_UNSPECIFIED: "",
    Span.SPAN_KIND_INTERNAL: "internal",
    Span.SPAN_KIND_SERVER: "server",
    Span.SPAN_KIND_CLIENT: "client",
    Span.SPAN_KIND_PRODUCER: "producer",
    Span.SPAN_KIND_CONSUMER: "consumer",
}
"""OTLP span kind numbers to Jaeger's ``span.kind`` tag values ("" = no tag)."""


@dataclass(frozen=True)
class Origin:
    """The resource and instrumentation scope spans were sent with (``origins`` row)."""

    id: int
    service_name: str
    resource: Resource
    resource_bytes: bytes
    resource_schema_url: str
    scope: InstrumentationScope
    scope_schema_url: str


@dataclass(frozen=True)
class TraceSpan:
    """One stored span, decoded, with its origin."""

    span: Span
    origin: Origin


@dataclass(frozen=True)
class StoredTrace:
    """All stored spans of one trace (never empty), ordered by start time."""

    trace_id: bytes
    spans: list[TraceSpan]
    truncated: bool = False


@dataclass(frozen=True)
class TraceQuery:
    """A trace search. Times and durations are nanoseconds; ``None`` means no bound.

    ``tags`` match span attributes, resource attributes, event attributes and the
    Jaeger-derived tags (``span.kind``, ``error``, ``otel.status_code``...), comparing
    the value's text (``attribute_text``). ``limit`` counts traces.
    """

    service: str | None = None
    operation: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    start_min_ns: int | None = None
    start_max_ns: int | None = None
    duration_min_ns: int | None = None
    duration_max_ns: int | None = None
    limit: int = 20
    max_candidates: int = DEFAULT_MAX_CANDIDATES

    def is_indexed(self) -> bool:
        """True when an index narrows the search (a service, session or user)."""
        return bool(self.service) or SESSION_TAG in self.tags or USER_TAG in self.tags


# --- values as text -------------------------------------------------------------------


def _plain(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        d = value.double_value
        return d if math.isfinite(d) else str(d)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind == "array_value":
        return [_plain(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value) for kv in value.kvlist_value.values}
    return None


def attribute_text(value: AnyValue) -> str:
    """The text of an attribute value, as the OpenTelemetry Collector's ``AsString``:
    strings as is, bools ``true``/``false``, numbers in decimal, bytes base64, arrays
    and maps as compact JSON, an empty value as ``""``."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        d = value.double_value
        return repr(d) if not d.is_integer() or not math.isfinite(d) else str(int(d))
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    if kind is None:
        return ""
    return json.dumps(_plain(value), separators=(",", ":"), ensure_ascii=False)


def _put_all(out: dict[str, set[str]], attributes: Iterable[KeyValue]) -> None:
    for kv in attributes:
        out.setdefault(kv.key, set()).add(attribute_text(kv.value))


def span_tag_texts(item: TraceSpan) -> dict[str, set[str]]:
    """Every tag a Jaeger search can match on this span, key -> texts of its values."""
    span, origin = item.span, item.origin
    out: dict[str, set[str]] = {}
    _put_all(out, span.attributes)
    _put_all(out, origin.resource.attributes)
    for event in span.events:
        _put_all(out, event.attributes)
        if event.name:
            out.setdefault("event", set()).add(event.name)
    kind = SPAN_KIND_NAMES.get(span.kind, "")
    if kind:
        out.setdefault("span.kind", set()).add(kind)
    if span.status.code == Status.STATUS_CODE_ERROR:
        out.setdefault("error", set()).add("true")
        out.setdefault("otel.status_code", set()).add("ERROR")
    elif span.status.code == Status.STATUS_CODE_OK:
        out.setdefault("otel.status_code", set()).add("OK")
    if span.status.message:
        out.setdefault("otel.status_description", set()).add(span.status.message)
    if origin.scope.name:
        out.setdefault("otel.scope.name", set()).add(origin.scope.name)
    if origin.scope.version:
        out.setdefault("otel.scope.version", set()).add(origin.scope.version)
    out.setdefault("service.name", set()).add(origin.service_name)
    return out


DERIVED_TAGS = frozenset(
    {
        "event",
        "span.kind",
        "error",
        "otel.status_code",
        "otel.status_description",
        "otel.scope.name",
        "otel.scope.version",
        "service.name",
    }
)
"""Tags made from span fields rather than attributes (see ``span_tag_texts``)."""


def _may_match(raw: bytes, resource_keys: frozenset[str], tags: Mapping[str, str]) -> bool:
    """False when a wanted attribute key is surely absent: not derived, not a resource
    attribute, and its UTF-8 bytes do not occur in the serialized span (cheap pre-check
    before decoding)."""
    for key in tags:
        if key in DERIVED_TAGS or key in resource_keys:
            continue
        if key.encode() not in raw:
            return False
    return True


def _has_tag(item: TraceSpan, key: str, wanted: str) -> bool:
    span = item.span
    for kv in span.attributes:
        if kv.key == key and attribute_text(kv.value) == wanted:
            return True
    for kv in item.origin.resource.attributes:
        if kv.key == key and attribute_text(kv.value) == wanted:
            return True
    for event in span.events:
        if key == "event" and event.name == wanted:
            return True
        for kv in event.attributes:
            if kv.key == key and attribute_text(kv.value) == wanted:
                return True
    if key in DERIVED_TAGS:
        return wanted in span_tag_texts(item).get(key, ())
    return False


def _tags_match(item: TraceSpan, tags: Mapping[str, str]) -> bool:
    """True when the span has every tag (same rules as ``span_tag_texts``)."""
    return all(_has_tag(item, key, wanted) for key, wanted in tags.items())


# --- origins --------------------------------------------------------------------------


class _Origins:
    """Decodes ``origins`` rows on demand, once per call."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._by_id: dict[int, Origin] = {}

    def load(self, ids: Iterable[int]) -> None:
        missing = sorted({i for i in ids if i not in self._by_id})
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                "SELECT id, service_name, resource, resource_schema_url, scope,"
                f" scope_schema_url FROM origins WHERE id IN ({marks})",
                chunk,
            ).fetchall()
            for row in rows:
                resource_bytes = bytes(row[2])
                self._by_id[row[0]] = Origin(
                    id=row[0],
                    service_name=row[1],
                    resource=Resource.FromString(resource_bytes),
                    resource_bytes=resource_bytes,
                    resource_schema_url=row[3],
                    scope=InstrumentationScope.FromString(bytes(row[4])),
                    scope_schema_url=row[5],
                )

    def get(self, origin_id: int, service_name: str) -> Origin:
        found = self._by_id.get(origin_id)
        if found is None:
            self.load([origin_id])
            found = self._by_id.get(origin_id)
        if found is None:  # a dangling reference; keep the span, with an empty origin
            found = Origin(origin_id, service_name, Resource(), b"", "", InstrumentationScope(), "")
            self._by_id[origin_id] = found
        return found


# --- lookups --------------------------------------------------------------------------


def get_traces(
    conn: sqlite3.Connection, trace_ids: Iterable[bytes], *, max_total_spans: int | None = None
) -> list[StoredTrace]:
    """The stored traces among ``trace_ids`` (16 raw bytes each), in the order given;
    unknown ids are left out (never an empty trace). With ``max_total_spans``, no
    further trace is loaded once that many spans are (the first one always is)."""
    origins = _Origins(conn)
    out: list[StoredTrace] = []
    total = 0
    for trace_id in dict.fromkeys(trace_ids):
        if max_total_spans is not None and out and total >= max_total_spans:
            break
        rows = conn.execute(
            "SELECT span, origin_id, service_name FROM spans WHERE trace_id = ?"
            " ORDER BY start_ns LIMIT ?",
            (trace_id, MAX_SPANS_PER_TRACE + 1),
        ).fetchall()
        if not rows:
            continue
        truncated = len(rows) > MAX_SPANS_PER_TRACE
        rows = rows[:MAX_SPANS_PER_TRACE]
        origins.load(row[1] for row in rows)
        spans = [TraceSpan(Span.FromString(bytes(r[0])), origins.get(r[1], r[2])) for r in rows]
        out.append(StoredTrace(trace_id, spans, truncated))
        total += len(spans)
    return out


def get_trace(conn: sqlite3.Connection, trace_id: bytes) -> StoredTrace | None:
    """One stored trace, or None when no span of it is stored."""
    found = get_traces(conn, [trace_id])
    return found[0] if found else None


def candidates_sql(q: TraceQuery) -> tuple[str, list[object]]:
    """The SQL (and its parameters) selecting a search's candidate spans, newest first:
    ``(trace_id, span, origin_id, service_name)`` rows. Raises ValueError when ``q`` has
    neither a service nor a session or user tag (it would scan every span)."""
    where: list[str] = []
    params: list[object] = []
    if SESSION_TAG in q.tags:
        index = "spans_by_session"
        where.append("session_id = ?")
        params.append(q.tags[SESSION_TAG])
    elif USER_TAG in q.tags:
        index = "spans_by_user"
        where.append("user_id = ?")
        params.append(q.tags[USER_TAG])
    elif q.service and q.operation:
        index = "spans_by_operation"
    elif q.service:
        index = "spans_by_service"
    else:
        raise ValueError("a trace search needs a service, a session.id or a user.id")
    if SESSION_TAG in q.tags and USER_TAG in q.tags:
        where.append("user_id = ?")
        params.append(q.tags[USER_TAG])
    if q.service:
        where.append("service_name = ?")
        params.append(q.service)
    if q.operation:
        where.append("name = ?")
        params.append(q.operation)
    if q.start_min_ns is not None:
        where.append("start_ns >= ?")
        params.append(q.start_min_ns)
    if q.start_max_ns is not None:
        where.append("start_ns <= ?")
        params.append(q.start_max_ns)
    if q.duration_min_ns is not None:
        where.append("end_ns - start_ns >= ?")
        params.append(q.duration_min_ns)
    if q.duration_max_ns is not None:
        where.append("end_ns - start_ns <= ?")
        params.append(q.duration_max_ns)
    sql = (
        f"SELECT trace_id, span, origin_id, service_name FROM spans INDEXED BY {index}"
        f" WHERE {' AND '.join(where)} ORDER BY start_ns DESC"
    )
    return sql, params


def find_trace_ids(conn: sqlite3.Connection, q: TraceQuery) -> list[bytes]:
    """Ids of the traces matching ``q``, newest matching span first, at most ``q.limit``.

    Raises ValueError when ``q`` has neither a service nor a session or user tag.
    """
    residual = {k: v for k, v in q.tags.items() if k not in (SESSION_TAG, USER_TAG)}
    found: dict[bytes, None] = {}
    origins = _Origins(conn)
    resource_keys: dict[int, frozenset[str]] = {}
    examined = 0
    sql, params = candidates_sql(q)
    for row in conn.execute(sql, params):
        trace_id = bytes(row[0])
        if trace_id in found:
            continue
        if residual:
            examined += 1
            if examined > q.max_candidates:
                break
            origin = origins.get(row[2], row[3])
            keys = resource_keys.get(origin.id)
            if keys is None:
                keys = frozenset(kv.key for kv in origin.resource.attributes)
                resource_keys[origin.id] = keys
            raw = bytes(row[1])
            if not _may_match(raw, keys, residual):
                continue
            if not _tags_match(TraceSpan(Span.FromString(raw), origin), residual):
                continue
        found[trace_id] = None
        if len(found) >= q.limit:
            break
    return list(found)


def _skip_scan(conn: sqlite3.Connection, first: str, after: str, params: tuple, cap: int) -> list:
    out: list = []
    row = conn.execute(first, params).fetchone()
    while row is not None and row[0] is not None and len(out) < cap:
        out.append(row[0])
        row = conn.execute(after, (*params, row[0])).fetchone()
    return out


def services(conn: sqlite3.Connection) -> list[str]:
    """Names of the services that sent spans, sorted."""
    return _skip_scan(
        conn,
        "SELECT MIN(service_name) FROM spans INDEXED BY spans_by_service",
        "SELECT MIN(service_name) FROM spans INDEXED BY spans_by_service WHERE service_name > ?",
        (),
        MAX_SERVICES,
    )


def operations(conn: sqlite3.Connection, service: str) -> list[tuple[str, int]]:
    """(span name, OTLP span kind) of a service's spans, sorted by name. The kind is the
    kind of the operation's first stored span."""
    names = _skip_scan(
        conn,
        "SELECT MIN(name) FROM spans INDEXED BY spans_by_operation WHERE service_name = ?",
        "SELECT MIN(name) FROM spans INDEXED BY spans_by_operation"
        " WHERE service_name = ? AND name > ?",
        (service,),
        MAX_OPERATIONS,
    )
    out: list[tuple[str, int]] = []
    for name in names:
        row = conn.execute(
            "SELECT kind FROM spans INDEXED BY spans_by_operation"
            " WHERE service_name = ? AND name = ? LIMIT 1",
            (service, name),
        ).fetchone()
        out.append((name, int(row[0]) if row else 0))
    return out


def dependencies(
    conn: sqlite3.Connection, start_ns: int, end_ns: int
) -> list[tuple[str, str, int]]:
    """(parent service, child service, call count) from child spans started in
    [start_ns, end_ns] whose parent span belongs to another service."""
    counts: dict[tuple[str, str], int] = {}
    for service in services(conn):
        rows = conn.execute(
            "SELECT p.service_name, COUNT(*) FROM spans AS c INDEXED BY spans_by_service"
            " JOIN spans AS p ON p.trace_id = c.trace_id AND p.span_id = c.parent_span_id"
            " WHERE c.service_name = ? AND c.start_ns BETWEEN ? AND ?"
            " AND c.parent_span_id IS NOT NULL AND p.service_name != c.service_name"
            " GROUP BY p.service_name",
            (service, start_ns, end_ns),
        ).fetchall()
        for parent, count in rows:
            counts[(parent, service)] = counts.get((parent, service), 0) + int(count)
    return sorted((p, c, n) for (p, c), n in counts.items())
