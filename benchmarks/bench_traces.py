"""Jaeger API latency at 1,000,000 stored spans: search by ``session.id``, trace by id.

    .venv/bin/python benchmarks/bench_traces.py            # 1,000,000 spans
    .venv/bin/python benchmarks/bench_traces.py --quick    # 100,000 spans, smoke run
    .venv/bin/python benchmarks/bench_traces.py --fill-only  # time the fill, then stop

Fills a fresh store with realistic serialized OTLP spans (traces of 5 spans: a task span
with input/output and metadata, 4 child spans; 10 traces per session, 4 sessions per
user; 3 services) through the store's own write path: ``store.write`` of ``Extraction``s
holding ``model.records.SpanRecord``s (``FILL_SPANS`` per write, each with its service's
``Origin``), as the aggregator writes them, only without tasks (no task rows: the Jaeger
API reads spans only). The indexes grow as the spans arrive, as in production (the
earlier fill wrote the same rows with SQL, rebuilt the indexes after and ran ``ANALYZE``:
the Jaeger queries have the same plans either way). Then it opens the store, serves the
Jaeger routes on a real uvicorn and times HTTP requests from a client:

* v1 ``GET /api/traces?tags={"session.id": S}`` (10 traces, 50 spans, full JSON),
* v1 ``GET /api/traces/{id}`` and api_v3 ``GET /api/v3/traces/{id}``,
* v1 search by ``user.id`` and api_v3 ``trace-summaries`` by ``session.id``;
* for information: search by service, a service's operations, and a search by a tag
  without an index (``phospho.task.id`` of a recent task: decoded candidates).

Prints p50/p95/max per query, the p95 against the 50 ms target, and the ratio against a
baseline measured in the same run: the bare SQL index lookup of the same rows (no
decoding, no JSON, no HTTP), on its own read-only ``sqlite3`` connection (the one place
this benchmark goes around the store: it measures SQLite itself).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import httpx
import uvicorn
from _common import BASE_NS, attrs, kv, pct, records_extraction, timed, write_data_set
from opentelemetry.proto.common.v1.common_pb2 import InstrumentationScope
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.aggregator.extract import origin_of
from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.model.records import Extraction, Origin, SpanRecord
from phospho_otel.receiver.decode import parse_json
from phospho_otel.store import open_store

TARGET_MS = 50.0
SPANS_PER_TRACE = 5
TRACES_PER_SESSION = 10
SESSIONS_PER_USER = 4
SERVICES = ("chat-api", "retriever", "llm-gateway")
FILL_SPANS = 50_000
"""Spans per ``store.write`` when filling."""

T = TypeVar("T")


def _origin(service: str, host: str) -> Origin:
    """The ``Origin`` (resource + scope) the aggregator makes for a service's spans."""
    resource_spans = ResourceSpans(resource=Resource(attributes=attrs({
        "service.name": service,
        "host.name": host,
        "deployment.environment": "prod",
    })))
    scope_spans = ScopeSpans(scope=InstrumentationScope(name="phospho_otel", version="0.1.0"))
    return origin_of(resource_spans, scope_spans)


def _extractions(
    n_spans: int, rng: random.Random, sessions: list[str], users: list[str],
    trace_ids: list[bytes],
) -> Iterator[Extraction]:
    """The spans as ``Extraction``s of about ``FILL_SPANS`` spans; appends the session ids,
    user ids and trace ids it makes to the lists.

    Each span is its own (origin, spans) group, so that the store keeps the spans in the
    order they are made, a trace's five spans next to each other (as the earlier fill
    did), rather than grouped by service."""
    origins = [_origin(service, f"h{i}") for i, service in enumerate(SERVICES)]
    task = Span(kind=Span.SPAN_KIND_SERVER, name="task", status=Status(code=Status.STATUS_CODE_OK))
    task.attributes.extend(
        [
            kv("phospho.span.type", "task"),
            kv("phospho.semconv.version", "1.0.0"),
            kv("input.value", "What is the refund policy for orders shipped abroad? " * 3),
            kv("output.value", "Orders shipped abroad can be refunded within 30 days. " * 4),
            kv("input.mime_type", "text/plain"),
            kv("phospho.metadata.model", "gpt-4o"),
            kv("phospho.metadata.temperature", 0.2),
            kv("phospho.metadata.tokens", 512),
        ]
    )
    child_names = ["retrieve", "embed", "llm.chat", "postprocess"]
    child = Span(kind=Span.SPAN_KIND_CLIENT, name="child")
    child.attributes.extend(
        [
            kv("gen_ai.system", "openai"),
            kv("gen_ai.request.model", "gpt-4o"),
            kv("gen_ai.usage.input_tokens", 420),
            kv("http.status_code", 200),
        ]
    )
    ev = child.events.add()
    ev.name = "cache.miss"
    ev.attributes.append(kv("cache.key", "k-123"))

    n_traces = n_spans // SPANS_PER_TRACE
    groups: list[tuple[Origin, list[SpanRecord]]] = []
    for t in range(n_traces):
        if t % TRACES_PER_SESSION == 0:
            sessions.append(f"session-{len(sessions):07d}-{rng.getrandbits(32):08x}")
            if len(sessions) % SESSIONS_PER_USER == 1:
                users.append(f"user-{len(users):06d}")
        session, user = sessions[-1], users[-1]
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id)
        start = BASE_NS + t * 50_000_000 + rng.randrange(1_000_000)
        root_id = rng.randbytes(8)
        task.trace_id, task.span_id = trace_id, root_id
        task.start_time_unix_nano, task.end_time_unix_nano = start, start + 900_000_000
        del task.attributes[8:]
        task.attributes.extend(
            [
                kv("session.id", session),
                kv("user.id", user),
                kv("phospho.task.id", f"task-{t:08d}"),
            ]
        )
        groups.append((origins[0], [SpanRecord(
            trace_id, root_id, None, SERVICES[0], "task", task.kind, start,
            start + 900_000_000, 1, session, user, task.SerializeToString(),
        )]))
        for c in range(SPANS_PER_TRACE - 1):
            sid = rng.randbytes(8)
            svc = 1 + (c % 2)
            child.trace_id, child.span_id, child.parent_span_id = trace_id, sid, root_id
            child.name = child_names[c]
            cs = start + (c + 1) * 100_000_000
            child.start_time_unix_nano, child.end_time_unix_nano = cs, cs + 80_000_000
            ev.time_unix_nano = cs + 1_000
            groups.append((origins[svc], [SpanRecord(
                trace_id, sid, root_id, SERVICES[svc], child.name, child.kind, cs,
                cs + 80_000_000, 0, None, None, child.SerializeToString(),
            )]))
        if len(groups) >= FILL_SPANS or t == n_traces - 1:
            yield records_extraction(groups=groups)
            groups = []


def fill(path: str, n_spans: int, rng: random.Random) -> tuple[list[str], list[str], list[bytes]]:
    """Writes ``n_spans`` spans through the store's write path (``synchronous=NORMAL``: a
    scratch file); returns session ids, user ids and trace ids."""
    sessions: list[str] = []
    users: list[str] = []
    trace_ids: list[bytes] = []
    store = open_store(path, synchronous="NORMAL")
    try:
        write_data_set(store, _extractions(n_spans, rng, sessions, users, trace_ids))
    finally:
        store.close()
    return sessions, users, trace_ids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 spans, fewer requests")
    parser.add_argument("--spans", type=int, default=None)
    parser.add_argument("--fill-only", action="store_true",
                        help="stop once the spans are written (to time the fill)")
    args = parser.parse_args()
    n_spans = args.spans or (100_000 if args.quick else 1_000_000)
    n_requests = 100 if args.quick else 300
    rng = random.Random(7)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.db")
        t = time.perf_counter()
        sessions, users, trace_ids = fill(path, n_spans, rng)
        fill_s = time.perf_counter() - t
        size_mb = os.path.getsize(path) / 1e6
        print(
            f"filled {n_spans:,} spans ({len(trace_ids):,} traces, {len(sessions):,} sessions,"
            f" {len(users):,} users) in {fill_s:.1f} s; file {size_mb:.0f} MB"
        )
        if args.fill_only:
            return 0

        store = open_store(path)
        app = Starlette(routes=[Mount("/jaeger", routes=jaeger_routes(
            store, parse_otlp_json=parse_json))])
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not (server.started and server.servers):
            time.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}/jaeger"
        window = {
            "start": str(BASE_NS // 1000 - 10**6),
            "end": str((BASE_NS + len(trace_ids) * 50_000_000) // 1000 + 10**7),
        }
        v3_window = {
            "query.startTimeMin": "2025-01-01T00:00:00Z",
            "query.startTimeMax": "2027-01-01T00:00:00Z",
        }
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

        def pick(seq: Sequence[T]) -> T:
            return seq[rng.randrange(len(seq))]

        with httpx.Client(timeout=30, trust_env=False) as client:

            def get(path: str, params: dict[str, str] | None = None, expect: int = 200) -> None:
                r = client.get(base + path, params=params)
                if r.status_code != expect:
                    raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:300]}")

            def by_session() -> None:
                s = pick(sessions)
                r = client.get(
                    base + "/api/traces",
                    params={**window, "limit": "20", "tags": json.dumps({"session.id": s})},
                )
                data = r.json()["data"]
                if r.status_code != 200 or len(data) != TRACES_PER_SESSION:
                    raise SystemExit(f"session search: {r.status_code}, {len(data)} traces")

            def by_user() -> None:
                get("/api/traces", {**window, "limit": "20", "tag": f"user.id:{pick(users)}"})

            def by_id() -> None:
                r = client.get(base + f"/api/traces/{pick(trace_ids).hex()}")
                if r.status_code != 200 or len(r.json()["data"][0]["spans"]) != SPANS_PER_TRACE:
                    raise SystemExit(f"trace by id: {r.status_code}")

            def by_id_v3() -> None:
                get(f"/api/v3/traces/{pick(trace_ids).hex()}")

            def summaries_v3() -> None:
                get(
                    "/api/v3/trace-summaries",
                    {**v3_window, "query.attributes": json.dumps({"session.id": pick(sessions)})},
                )

            def by_service() -> None:
                get("/api/traces", {**window, "limit": "20", "service": pick(list(SERVICES))})

            def by_task_id() -> None:  # a tag without an index: matched on decoded spans
                t = rng.randrange(len(trace_ids) - 2000, len(trace_ids))
                get(
                    "/api/traces",
                    {
                        **window,
                        "limit": "1",
                        "service": SERVICES[0],
                        "tags": json.dumps({"phospho.task.id": f"task-{t:08d}"}),
                    },
                )

            def by_missing_tag() -> None:  # no index, no match: examines the bounded depth
                get(
                    "/api/traces",
                    {**window, "service": SERVICES[0], "tags": json.dumps({"phospho.x": "y"})},
                )

            def by_missing_value() -> None:  # key present in every span, value never
                get(
                    "/api/traces",
                    {
                        **window,
                        "service": SERVICES[0],
                        "tags": json.dumps({"input.mime_type": "nope"}),
                    },
                )

            def operations() -> None:
                get("/api/operations", {"service": pick(list(SERVICES))})

            def sql_service() -> None:
                raw.execute(
                    "SELECT trace_id FROM spans WHERE service_name = ?"
                    " ORDER BY start_ns DESC LIMIT 100",
                    (pick(list(SERVICES)),),
                ).fetchall()

            def sql_session() -> None:
                rows = raw.execute(
                    "SELECT DISTINCT trace_id FROM spans WHERE session_id = ?", (pick(sessions),)
                ).fetchall()
                for (tid,) in rows:
                    raw.execute("SELECT span FROM spans WHERE trace_id = ?", (tid,)).fetchall()

            def sql_trace() -> None:
                raw.execute(
                    "SELECT span FROM spans WHERE trace_id = ?", (pick(trace_ids),)
                ).fetchall()

            for fn in (by_session, by_id, by_user, by_id_v3, summaries_v3):
                timed(fn, 10)  # warm up
            results = {
                "search by session.id (v1)": (timed(by_session, n_requests), sql_session),
                "trace by id (v1)": (timed(by_id, n_requests), sql_trace),
                "search by user.id (v1)": (timed(by_user, n_requests // 2), sql_session),
                "trace by id (api_v3)": (timed(by_id_v3, n_requests // 2), sql_trace),
                "trace-summaries by session.id (api_v3)": (
                    timed(summaries_v3, n_requests // 2),
                    sql_session,
                ),
                "search by service, limit 20 (v1)": (timed(by_service, 50), sql_service),
                "operations of a service (v1)": (timed(operations, 50), sql_service),
                "search by phospho.task.id (no index)": (timed(by_task_id, 20), sql_service),
                "search, tag key absent (no index, no match)": (
                    timed(by_missing_tag, 10),
                    sql_service,
                ),
                "search, tag value absent (no index, no match)": (
                    timed(by_missing_value, 10),
                    sql_service,
                ),
            }
            print(
                f"\n{'query':46} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'p95/target':>10}"
                f" {'vs bare SQL':>12}"
            )
            ok = True
            for name, (samples, baseline_fn) in results.items():
                base_p95 = pct(timed(baseline_fn, 100), 95)
                p95 = pct(samples, 95)
                print(
                    f"{name:46} {statistics.median(samples):8.2f} {p95:8.2f}"
                    f" {max(samples):8.2f} {p95 / TARGET_MS:10.2f} {p95 / base_p95:11.1f}x"
                )
                if name in ("search by session.id (v1)", "trace by id (v1)") and p95 > TARGET_MS:
                    ok = False
            print(
                f"\n(target: p95 <= {TARGET_MS:.0f} ms for search by session.id and trace by id;"
                f" 'vs bare SQL' = p95 / p95 of the same index lookups in raw SQLite)"
            )
        server.should_exit = True
        thread.join(10)
        raw.close()
        store.close()
    print("PASS" if ok else "FAIL: above target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
