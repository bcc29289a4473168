"""The SQLite backend's ``TraceReader``: spans by trace, and trace search, over the
``spans`` table. Spans come back decoded (``opentelemetry.proto.trace.v1.Span``) with
their resource and scope (``StoredOrigin``).

How searches stay fast at millions of spans:

* ``session.id`` / ``user.id`` tags use ``spans.session_id`` / ``spans.user_id``
  (indexes ``spans_by_session`` / ``spans_by_user``, ordered by start time); the columns
  are filled from any convention's session/user key (see ``aggregator/conventions``).
* otherwise the service (``spans_by_service``), or service + operation
  (``spans_by_operation``), narrows the candidates, newest first;
* time window, duration, service and operation are SQL conditions; any other tag is
  matched on candidates (``store.tags``), at most ``TraceQuery.max_candidates`` of them
  (a span whose bytes lack the tag's key is skipped without decoding);
* service and operation lists skip through the indexes (one index seek per distinct
  value) instead of scanning spans.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.errors import BadRequest
from phospho_otel.model.records import SpanAnnotationRecord
from phospho_otel.store.api import (
    MAX_SPANS_PER_TRACE,
    SESSION_TAG,
    USER_TAG,
    StoredOrigin,
    StoredTrace,
    TraceQuery,
    TraceSpan,
)
from phospho_otel.store.tags import may_match, tags_match

__all__ = ["MAX_OPERATIONS", "MAX_SERVICES", "SQLiteTraces", "candidates_sql"]

MAX_SERVICES = 10_000
MAX_OPERATIONS = 10_000


class _Origins:
    """Decodes ``origins`` rows on demand, once per call."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._by_id: dict[int, StoredOrigin] = {}

    def load(self, ids: Iterable[int]) -> None:
        missing = sorted({i for i in ids if i not in self._by_id})
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            rows = self._conn.execute(
                "SELECT id, service_name, resource, resource_schema_url, scope,"
                f" scope_schema_url FROM origins WHERE id IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            for row in rows:
                resource_bytes = bytes(row[2])
                self._by_id[row[0]] = StoredOrigin(
                    id=row[0],
                    service_name=row[1],
                    resource=Resource.FromString(resource_bytes),
                    resource_bytes=resource_bytes,
                    resource_schema_url=row[3],
                    scope=InstrumentationScope.FromString(bytes(row[4])),
                    scope_schema_url=row[5],
                )

    def get(self, origin_id: int, service_name: str) -> StoredOrigin:
        found = self._by_id.get(origin_id)
        if found is None:
            self.load([origin_id])
            found = self._by_id.get(origin_id)
        if found is None:  # a dangling reference; keep the span, with an empty origin
            found = StoredOrigin(origin_id, service_name, Resource(), b"", "",
                                 InstrumentationScope(), "")
            self._by_id[origin_id] = found
        return found


def candidates_sql(q: TraceQuery) -> tuple[str, list[object]]:
    """The SQL (and its parameters) selecting a search's candidate spans, newest first:
    ``(trace_id, span, origin_id, service_name)`` rows. Raises ``BadRequest`` when ``q``
    has neither a service nor a session or user tag (it would scan every span)."""
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
        raise BadRequest("a trace search needs a service, a session.id or a user.id")
    if SESSION_TAG in q.tags and USER_TAG in q.tags:
        where.append("user_id = ?")
        params.append(q.tags[USER_TAG])
    for condition, value in (
        ("service_name = ?", q.service),
        ("name = ?", q.operation),
        ("start_ns >= ?", q.start_min_ns),
        ("start_ns <= ?", q.start_max_ns),
        ("end_ns - start_ns >= ?", q.duration_min_ns),
        ("end_ns - start_ns <= ?", q.duration_max_ns),
    ):
        if value is not None and value != "":
            where.append(condition)
            params.append(value)
    sql = (
        f"SELECT trace_id, span, origin_id, service_name FROM spans INDEXED BY {index}"
        f" WHERE {' AND '.join(where)} ORDER BY start_ns DESC"
    )
    return sql, params


class SQLiteTraces:
    """``store.api.TraceReader`` over ``self.conn`` (set by ``SQLiteReader``)."""

    conn: sqlite3.Connection

    def span_annotations(self, trace_ids: Iterable[bytes]) -> list[SpanAnnotationRecord]:
        out: list[SpanAnnotationRecord] = []
        ids = list(dict.fromkeys(trace_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            out.extend(SpanAnnotationRecord._make(row) for row in self.conn.execute(
                f"SELECT {', '.join(SpanAnnotationRecord._fields)} FROM span_annotations"
                f" WHERE trace_id IN ({', '.join('?' * len(chunk))})", chunk))
        return out

    def get_traces(self, trace_ids: Iterable[bytes], *,
                   max_total_spans: int | None = None) -> list[StoredTrace]:
        origins = _Origins(self.conn)
        out: list[StoredTrace] = []
        total = 0
        for trace_id in dict.fromkeys(trace_ids):
            if max_total_spans is not None and out and total >= max_total_spans:
                break
            rows = self.conn.execute(
                "SELECT span, origin_id, service_name FROM spans WHERE trace_id = ?"
                " ORDER BY start_ns LIMIT ?",
                (trace_id, MAX_SPANS_PER_TRACE + 1),
            ).fetchall()
            if not rows:
                continue
            truncated = len(rows) > MAX_SPANS_PER_TRACE
            rows = rows[:MAX_SPANS_PER_TRACE]
            origins.load(row[1] for row in rows)
            spans = [TraceSpan(Span.FromString(bytes(r[0])), origins.get(r[1], r[2]))
                     for r in rows]
            out.append(StoredTrace(trace_id, spans, truncated))
            total += len(spans)
        return out

    def find_trace_ids(self, query: TraceQuery) -> list[bytes]:
        residual = {k: v for k, v in query.tags.items() if k not in (SESSION_TAG, USER_TAG)}
        found: dict[bytes, None] = {}
        origins = _Origins(self.conn)
        resource_keys: dict[int, frozenset[str]] = {}
        examined = 0
        sql, params = candidates_sql(query)
        for row in self.conn.execute(sql, params):
            trace_id = bytes(row[0])
            if trace_id in found:
                continue
            if residual:
                examined += 1
                if examined > query.max_candidates:
                    break
                origin = origins.get(row[2], row[3])
                keys = resource_keys.get(origin.id)
                if keys is None:
                    keys = frozenset(kv.key for kv in origin.resource.attributes)
                    resource_keys[origin.id] = keys
                raw = bytes(row[1])
                if not may_match(raw, keys, residual):
                    continue
                if not tags_match(TraceSpan(Span.FromString(raw), origin), residual):
                    continue
            found[trace_id] = None
            if len(found) >= query.limit:
                break
        return list(found)

    def _skip_scan(self, first: str, after: str, params: tuple[str, ...],
                   cap: int) -> list[str]:
        out: list[str] = []
        row = self.conn.execute(first, params).fetchone()
        while row is not None and row[0] is not None and len(out) < cap:
            out.append(row[0])
            row = self.conn.execute(after, (*params, row[0])).fetchone()
        return out

    def services(self) -> list[str]:
        return self._skip_scan(
            "SELECT MIN(service_name) FROM spans INDEXED BY spans_by_service",
            "SELECT MIN(service_name) FROM spans INDEXED BY spans_by_service"
            " WHERE service_name > ?",
            (),
            MAX_SERVICES,
        )

    def operations(self, service: str) -> list[tuple[str, int]]:
        """The kind is the kind of the operation's first stored span."""
        names = self._skip_scan(
            "SELECT MIN(name) FROM spans INDEXED BY spans_by_operation WHERE service_name = ?",
            "SELECT MIN(name) FROM spans INDEXED BY spans_by_operation"
            " WHERE service_name = ? AND name > ?",
            (service,),
            MAX_OPERATIONS,
        )
        out: list[tuple[str, int]] = []
        for name in names:
            row = self.conn.execute(
                "SELECT kind FROM spans INDEXED BY spans_by_operation"
                " WHERE service_name = ? AND name = ? LIMIT 1",
                (service, name),
            ).fetchone()
            out.append((name, int(row[0]) if row else 0))
        return out

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        counts: dict[tuple[str, str], int] = {}
        for service in self.services():
            rows = self.conn.execute(
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
