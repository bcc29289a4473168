"""The ClickHouse backend's ``TraceReader``: spans by trace from ``spans`` (a key range of
its ``(trace_id, span_id)`` order, up to ``_TRACES_PER_QUERY`` traces per query; origins
decoded once per process), searches through the lookup tables, never a scan of
``spans``:

* ``session.id`` / ``user.id`` tags: ``span_tags`` (ordered by tag, value, start);
* otherwise the service (and operation): ``span_index`` (ordered by service, name,
  start), read from the newest spans back (``_newest_traces``);
* the service and operation lists: ``span_operations`` (a row per operation and batch);
* time window, duration, service and operation are SQL conditions; any other tag is
  matched in Python (``store.tags``) on at most ``TraceQuery.max_candidates`` candidate
  spans, newest first, whose bytes are then read from ``spans`` by trace.

A span stored twice (a retry, two replicas) is one row at read (``LIMIT 1 BY``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from clickhouse_driver import Client
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

__all__ = ["MAX_OPERATIONS", "MAX_SERVICES", "ClickHouseTraces"]

MAX_SERVICES = 10_000
MAX_OPERATIONS = 10_000
_BYTES = {"strings_as_bytes": True}
_CANDIDATE_PAGE = 1000
"""Candidate spans read per query of a search with tags matched in Python."""
_FIRST_WINDOW = 256
"""A search first reads the last 1/256 of its time window (``_newest_traces``) ..."""
_WIDEN = 8
"""... then windows (and span counts) this many times larger."""
_FIRST_SPANS = 256
"""Spans read by a search's first query (at least 4 per trace asked for)."""
_TRACES_PER_QUERY = 100
"""Traces whose spans one query of ``get_traces`` reads."""


_DECODED: dict[str, StoredOrigin] = {}
"""Origins decoded by any reader of this process, by hash. A hash is a digest of the
origin's content (``aggregator.extract.origin_of``), so its row never changes, whichever
database it is in; cleared when it holds ``_MAX_DECODED``."""
_MAX_DECODED = 10_000


class _Origins:
    """Decodes ``origins`` rows on demand (once per process: ``_DECODED``); ids are their
    hex hashes."""

    def __init__(self, client: Client, db: str) -> None:
        self._client = client
        self._db = db
        self._by_hash: dict[str, StoredOrigin] = {}

    def load(self, hashes: Iterable[str]) -> None:
        missing = []
        for h in set(hashes):
            if h in self._by_hash:
                continue
            decoded = _DECODED.get(h)
            if decoded is None:
                missing.append(h)
            else:
                self._by_hash[h] = decoded
        if not missing:
            return
        missing.sort()
        if len(_DECODED) + len(missing) > _MAX_DECODED:
            _DECODED.clear()
        rows = self._client.execute(
            "SELECT hash, service_name, resource, resource_schema_url, scope, scope_schema_url"
            f" FROM {self._db}.origins WHERE hash IN %(ids)s LIMIT 1 BY hash",
            {"ids": tuple(missing)}, settings=_BYTES)
        for row in rows:
            key = row[0].decode()
            resource_bytes = bytes(row[2])
            self._by_hash[key] = StoredOrigin(
                id=int(key[:15], 16),
                service_name=row[1].decode(),
                resource=Resource.FromString(resource_bytes),
                resource_bytes=resource_bytes,
                resource_schema_url=row[3].decode(),
                scope=InstrumentationScope.FromString(bytes(row[4])),
                scope_schema_url=row[5].decode(),
            )
            _DECODED[key] = self._by_hash[key]

    def get(self, origin: str, service_name: str) -> StoredOrigin:
        found = self._by_hash.get(origin)
        if found is None:
            self.load([origin])
            found = self._by_hash.get(origin)
        if found is None:  # no origin row: keep the span, with an empty origin
            found = StoredOrigin(int(origin[:15] or "0", 16), service_name, Resource(), b"",
                                 "", InstrumentationScope(), "")
            self._by_hash[origin] = found
        return found


def _conditions(q: TraceQuery) -> tuple[str, list[str], dict[str, Any]]:
    """The lookup table of a search and its conditions. Raises ``BadRequest`` when ``q``
    has neither a service nor a session or user tag (it would scan every span)."""
    where: list[str] = []
    params: dict[str, Any] = {}
    if SESSION_TAG in q.tags or USER_TAG in q.tags:
        table = "span_tags"
        tag = SESSION_TAG if SESSION_TAG in q.tags else USER_TAG
        where += ["tag = %(tag)s", "value = %(value)s"]
        params.update(tag=tag, value=q.tags[tag])
        if tag == SESSION_TAG and USER_TAG in q.tags:
            where.append("user_id = %(user)s")
            params["user"] = q.tags[USER_TAG]
    elif q.service:
        table = "span_index"
    else:
        raise BadRequest("a trace search needs a service, a session.id or a user.id")
    for name, condition, value in (
        ("service", "service_name = %(service)s", q.service),
        ("operation", "name = %(operation)s", q.operation),
        ("start_min", "start_ns >= %(start_min)s", q.start_min_ns),
        ("start_max", "start_ns <= %(start_max)s", q.start_max_ns),
        ("duration_min", "end_ns - start_ns >= %(duration_min)s", q.duration_min_ns),
        ("duration_max", "end_ns - start_ns <= %(duration_max)s", q.duration_max_ns),
    ):
        if value is not None and value != "":
            where.append(condition)
            params[name] = value
    return table, where, params


class ClickHouseTraces:
    """``store.api.TraceReader`` over ``self.client`` at snapshot ``self.visible``."""

    client: Client
    db: str
    visible: str

    def _span_rows(self, trace_ids: Sequence[str], limit: int | None = None) -> list[Any]:
        """(trace id, span id, span bytes, origin, service) of these traces' spans, each
        once, by trace then start time."""
        if not trace_ids:
            return []
        per_trace = "" if limit is None else f" LIMIT {int(limit)} BY trace_id"
        return list(self.client.execute(
            "SELECT trace_id, span_id, span, origin, service_name FROM"
            f" (SELECT trace_id, span_id, span, origin, service_name, start_ns FROM {self.db}.spans"
            f" PREWHERE trace_id IN %(ids)s WHERE {self.visible} LIMIT 1 BY trace_id, span_id)"
            f" ORDER BY trace_id, start_ns, span_id{per_trace}",
            {"ids": tuple(trace_ids)}, settings=_BYTES))

    def span_annotations(self, trace_ids: Iterable[bytes]) -> list[SpanAnnotationRecord]:
        ids = sorted({trace_id.hex() for trace_id in trace_ids})
        out: list[SpanAnnotationRecord] = []
        for start in range(0, len(ids), 2000):
            for trace_id, span_id, annotation_id, kind, body, time_ns in self.client.execute(
                    "SELECT trace_id, span_id, annotation_id, any(annotation_kind), any(body),"
                    " any(time_ns)"
                    f" FROM {self.db}.span_annotations WHERE trace_id IN %(ids)s"
                    f" AND {self.visible} GROUP BY trace_id, span_id, annotation_id",
                    {"ids": tuple(ids[start:start + 2000])}):
                out.append(SpanAnnotationRecord(
                    bytes.fromhex(trace_id), bytes.fromhex(span_id),
                    bytes.fromhex(annotation_id), kind, body, time_ns))
        return out

    def get_traces(self, trace_ids: Iterable[bytes], *,
                   max_total_spans: int | None = None) -> list[StoredTrace]:
        wanted = list(dict.fromkeys(trace_ids))
        origins = _Origins(self.client, self.db)
        out: list[StoredTrace] = []
        total = 0
        for start in range(0, len(wanted), _TRACES_PER_QUERY):
            chunk = wanted[start:start + _TRACES_PER_QUERY]
            if max_total_spans is not None and out and total >= max_total_spans:
                break
            by_trace: dict[bytes, list[Any]] = {}
            for row in self._span_rows([t.hex() for t in chunk], MAX_SPANS_PER_TRACE + 1):
                by_trace.setdefault(bytes(row[0]), []).append(row)
            origins.load(r[3].decode() for rows in by_trace.values() for r in rows)
            for trace_id in chunk:
                if max_total_spans is not None and out and total >= max_total_spans:
                    break
                rows = by_trace.get(trace_id.hex().encode())
                if not rows:
                    continue
                truncated = len(rows) > MAX_SPANS_PER_TRACE
                rows = rows[:MAX_SPANS_PER_TRACE]
                spans = [TraceSpan(Span.FromString(bytes(r[2])),
                                   origins.get(r[3].decode(), r[4].decode())) for r in rows]
                out.append(StoredTrace(trace_id, spans, truncated))
                total += len(spans)
        return out

    def _newest_traces(self, table: str, where: list[str], params: dict[str, Any],
                       query: TraceQuery) -> list[str]:
        """The ``query.limit`` traces of the newest matching spans (newest first, then by
        trace id), read from the newest spans rather than grouping every match: first
        the last ``1 / _FIRST_WINDOW`` of the time window (a search by service, with both
        bounds set: a service's spans are many), then windows ``_WIDEN`` times wider; in
        each, the newest ``k`` spans, ``k`` growing until the window holds enough traces
        or has no more spans. Exact: a trace outside a window's spans has no matching
        span as new as theirs. A tag search reads its tag's spans (a key range) at once."""
        limit = int(query.limit)
        if limit <= 0:
            return []
        lo, hi = query.start_min_ns, query.start_max_ns
        floors: list[int | None] = []  # the windows' lower bounds, the last one none
        if table == "span_index" and lo is not None and hi is not None and hi > lo:
            width = max(1, (hi - lo) // _FIRST_WINDOW)
            while hi - width > lo:
                floors.append(hi - width)
                width *= _WIDEN
        floors.append(None)
        k = max(_FIRST_SPANS, 4 * limit)
        found: list[str] = []
        for floor in floors:
            bound = "" if floor is None else f" AND start_ns >= {int(floor)}"
            while True:
                rows = self.client.execute(
                    f"SELECT trace_id FROM {self.db}.{table} WHERE {' AND '.join(where)}{bound}"
                    f" ORDER BY start_ns DESC, trace_id LIMIT {k}", params)
                found = list(dict.fromkeys(t for (t,) in rows))
                if len(found) >= limit:
                    return found[:limit]
                if len(rows) < k:  # every span of the window read: a wider window
                    break
                k *= _WIDEN
        return found

    def find_trace_ids(self, query: TraceQuery) -> list[bytes]:
        residual = {k: v for k, v in query.tags.items() if k not in (SESSION_TAG, USER_TAG)}
        table, where, params = _conditions(query)
        where.append(self.visible)
        source = (f"SELECT trace_id, span_id, origin, service_name, start_ns"
                  f" FROM {self.db}.{table} WHERE {' AND '.join(where)}")
        if not residual:
            return [bytes.fromhex(t) for t in self._newest_traces(table, where, params, query)]
        found: dict[str, None] = {}
        origins = _Origins(self.client, self.db)
        resource_keys: dict[str, frozenset[str]] = {}
        examined = 0
        offset = 0
        while examined <= query.max_candidates and len(found) < query.limit:
            candidates = list(self.client.execute(
                f"SELECT trace_id, span_id, origin, service_name FROM ({source})"
                " ORDER BY start_ns DESC, trace_id, span_id LIMIT 1 BY trace_id, span_id"
                f" LIMIT {offset}, {_CANDIDATE_PAGE}", params))
            if not candidates:
                break
            offset += len(candidates)
            loaded = {(t.decode(), s.decode()): bytes(raw) for t, s, raw, _, _ in
                      self._span_rows(list(dict.fromkeys(c[0] for c in candidates
                                                         if c[0] not in found)))}
            for trace_id, span_id, origin_hash, service in candidates:
                if trace_id in found:
                    continue
                examined += 1
                if examined > query.max_candidates:
                    break
                raw = loaded.get((trace_id, span_id))
                if raw is None:
                    continue
                origin = origins.get(origin_hash, service)
                keys = resource_keys.get(origin_hash)
                if keys is None:
                    keys = frozenset(kv.key for kv in origin.resource.attributes)
                    resource_keys[origin_hash] = keys
                if not may_match(raw, keys, residual):
                    continue
                if not tags_match(TraceSpan(Span.FromString(raw), origin), residual):
                    continue
                found[trace_id] = None
                if len(found) >= query.limit:
                    break
        return [bytes.fromhex(t) for t in found]

    def _operation_rows(self, where: str = "") -> str:
        """The visible ``span_operations`` rows (and ``span_operations_before``'s)."""
        return " UNION ALL ".join(
            f"SELECT service_name, name, first_kind FROM {self.db}.{table}"
            f" WHERE {where}{self.visible}"
            for table in ("span_operations", "span_operations_before"))

    def services(self) -> list[str]:
        return [s for (s,) in self.client.execute(
            f"SELECT service_name FROM ({self._operation_rows()}) GROUP BY service_name"
            f" ORDER BY service_name LIMIT {MAX_SERVICES}")]

    def operations(self, service: str) -> list[tuple[str, int]]:
        """The kind is the kind of the operation's earliest stored span."""
        return [(name, int(kind)) for name, kind in self.client.execute(
            f"SELECT name, argMinMerge(first_kind) FROM"
            f" ({self._operation_rows('service_name = %(service)s AND ')})"
            f" GROUP BY name ORDER BY name LIMIT {MAX_OPERATIONS}", {"service": service})]

    def dependencies(self, start_ns: int, end_ns: int) -> list[tuple[str, str, int]]:
        children = (
            f"SELECT DISTINCT trace_id, assumeNotNull(parent_span_id) AS parent_span_id,"
            f" span_id, service_name AS child FROM {self.db}.spans"
            f" WHERE start_ns >= %(lo)s AND start_ns <= %(hi)s AND isNotNull(parent_span_id)"
            f" AND {self.visible}")
        parents = (
            f"SELECT DISTINCT trace_id, span_id AS parent_span_id, service_name AS parent"
            f" FROM {self.db}.spans WHERE trace_id IN (SELECT trace_id FROM ({children}))"
            f" AND {self.visible}")
        rows = self.client.execute(
            f"SELECT parent, child, count() FROM ({children}) ALL INNER JOIN ({parents})"
            " USING (trace_id, parent_span_id) WHERE parent != child"
            " GROUP BY parent, child ORDER BY parent, child",
            {"lo": start_ns, "hi": end_ns})
        return [(p, c, int(n)) for p, c, n in rows]
