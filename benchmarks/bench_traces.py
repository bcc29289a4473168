"""Jaeger API latency at 1,000,000 stored spans: search by ``session.id``, trace by id.

    .venv/bin/python benchmarks/bench_traces.py            # 1,000,000 spans
    .venv/bin/python benchmarks/bench_traces.py --quick    # 100,000 spans, smoke run

Fills a fresh SQLite file (``store/schema.py``) with realistic serialized OTLP spans by
plain SQL inserts (traces of 5 spans: a task span with input/output and metadata, 4
child spans; 10 traces per session, 4 sessions per user; 3 services), then opens
it with ``SQLiteStore``, serves the Jaeger routes on a real uvicorn and times HTTP
requests from a client:

* v1 ``GET /api/traces?tags={"session.id": S}`` (10 traces, 50 spans, full JSON),
* v1 ``GET /api/traces/{id}`` and api_v3 ``GET /api/v3/traces/{id}``,
* v1 search by ``user.id`` and api_v3 ``trace-summaries`` by ``session.id``;
* for information: search by service, a service's operations, and a search by a tag
  without an index (``phospho.task.id`` of a recent task: decoded candidates).

Prints p50/p95/max per query, the p95 against the 50 ms target, and the ratio against a
baseline measured in the same run: the bare SQL index lookup of the same rows (no
decoding, no JSON, no HTTP).
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
from collections.abc import Callable
from pathlib import Path

import httpx
import uvicorn
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.server_settings import ServerSettings
from phospho_otel.store import schema
from phospho_otel.store.sqlite import SQLiteStore

TARGET_MS = 50.0
SPANS_PER_TRACE = 5
TRACES_PER_SESSION = 10
SESSIONS_PER_USER = 4
SERVICES = ("chat-api", "retriever", "llm-gateway")
T0 = 1_764_000_000_000_000_000


def _kv(key: str, value: object) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def fill(path: str, n_spans: int, rng: random.Random) -> tuple[list[str], list[str], list[bytes]]:
    """Writes ``n_spans`` spans; returns session ids, user ids and trace ids."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("PRAGMA cache_size=-1000000")
    conn.executescript(schema.DDL)
    indexes = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='spans'"
            " AND sql IS NOT NULL"
        )
    ]
    for name in indexes:
        conn.execute(f"DROP INDEX {name}")
    origin_ids = []
    for i, service in enumerate(SERVICES):
        resource = Resource(
            attributes=[
                _kv("service.name", service),
                _kv("host.name", f"h{i}"),
                _kv("deployment.environment", "prod"),
            ]
        )
        scope = InstrumentationScope(name="phospho_otel", version="0.1.0")
        conn.execute(
            "INSERT INTO origins (id, hash, service_name, resource, scope) VALUES (?,?,?,?,?)",
            (
                i + 1,
                os.urandom(16),
                service,
                resource.SerializeToString(),
                scope.SerializeToString(),
            ),
        )
        origin_ids.append(i + 1)

    task = Span(kind=Span.SPAN_KIND_SERVER, name="task", status=Status(code=Status.STATUS_CODE_OK))
    task.attributes.extend(
        [
            _kv("phospho.span.type", "task"),
            _kv("phospho.semconv.version", "1.0.0"),
            _kv("input.value", "What is the refund policy for orders shipped abroad? " * 3),
            _kv("output.value", "Orders shipped abroad can be refunded within 30 days. " * 4),
            _kv("input.mime_type", "text/plain"),
            _kv("phospho.metadata.model", "gpt-4o"),
            _kv("phospho.metadata.temperature", 0.2),
            _kv("phospho.metadata.tokens", 512),
        ]
    )
    child_names = ["retrieve", "embed", "llm.chat", "postprocess"]
    child = Span(kind=Span.SPAN_KIND_CLIENT, name="child")
    child.attributes.extend(
        [
            _kv("gen_ai.system", "openai"),
            _kv("gen_ai.request.model", "gpt-4o"),
            _kv("gen_ai.usage.input_tokens", 420),
            _kv("http.status_code", 200),
        ]
    )
    ev = child.events.add()
    ev.name = "cache.miss"
    ev.attributes.append(_kv("cache.key", "k-123"))

    sessions: list[str] = []
    users: list[str] = []
    trace_ids: list[bytes] = []
    n_traces = n_spans // SPANS_PER_TRACE
    rows: list[tuple] = []
    insert = (
        "INSERT INTO spans (trace_id, span_id, parent_span_id, origin_id, service_name,"
        " name, kind, start_ns, end_ns, status_code, session_id, user_id, span)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    conn.execute("BEGIN")
    for t in range(n_traces):
        if t % TRACES_PER_SESSION == 0:
            sessions.append(f"session-{len(sessions):07d}-{rng.getrandbits(32):08x}")
            if len(sessions) % SESSIONS_PER_USER == 1:
                users.append(f"user-{len(users):06d}")
        session, user = sessions[-1], users[-1]
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id)
        start = T0 + t * 50_000_000 + rng.randrange(1_000_000)
        root_id = rng.randbytes(8)
        task.trace_id, task.span_id = trace_id, root_id
        task.start_time_unix_nano, task.end_time_unix_nano = start, start + 900_000_000
        del task.attributes[8:]
        task.attributes.extend(
            [
                _kv("session.id", session),
                _kv("user.id", user),
                _kv("phospho.task.id", f"task-{t:08d}"),
            ]
        )
        rows.append(
            (
                trace_id,
                root_id,
                None,
                1,
                SERVICES[0],
                "task",
                task.kind,
                start,
                start + 900_000_000,
                1,
                session,
                user,
                task.SerializeToString(),
            )
        )
        for c in range(SPANS_PER_TRACE - 1):
            sid = rng.randbytes(8)
            svc = 1 + (c % 2)
            child.trace_id, child.span_id, child.parent_span_id = trace_id, sid, root_id
            child.name = child_names[c]
            cs = start + (c + 1) * 100_000_000
            child.start_time_unix_nano, child.end_time_unix_nano = cs, cs + 80_000_000
            ev.time_unix_nano = cs + 1_000
            rows.append(
                (
                    trace_id,
                    sid,
                    root_id,
                    svc + 1,
                    SERVICES[svc],
                    child.name,
                    child.kind,
                    cs,
                    cs + 80_000_000,
                    0,
                    None,
                    None,
                    child.SerializeToString(),
                )
            )
        if len(rows) >= 50_000:
            conn.executemany(insert, rows)
            rows.clear()
    conn.executemany(insert, rows)
    conn.execute("COMMIT")
    conn.executescript(schema.DDL)  # recreate the indexes, in one pass each
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("ANALYZE")
    conn.close()
    return sessions, users, trace_ids


def timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 spans, fewer requests")
    parser.add_argument("--spans", type=int, default=None)
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

        store = SQLiteStore(path)
        settings = ServerSettings(db=path)
        app = Starlette(routes=[Mount("/jaeger", routes=jaeger_routes(store, settings))])
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
            "start": str(T0 // 1000 - 10**6),
            "end": str((T0 + len(trace_ids) * 50_000_000) // 1000 + 10**7),
        }
        v3_window = {
            "query.startTimeMin": "2025-01-01T00:00:00Z",
            "query.startTimeMax": "2027-01-01T00:00:00Z",
        }
        raw = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

        def pick(seq: list) -> object:
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
                r = client.get(base + f"/api/traces/{pick(trace_ids).hex()}")  # type: ignore[union-attr]
                if r.status_code != 200 or len(r.json()["data"][0]["spans"]) != SPANS_PER_TRACE:
                    raise SystemExit(f"trace by id: {r.status_code}")

            def by_id_v3() -> None:
                get(f"/api/v3/traces/{pick(trace_ids).hex()}")  # type: ignore[union-attr]

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
