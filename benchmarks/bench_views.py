"""View latency: p95 of each ``GET /api/...`` at 1,000,000 tasks / 100,000 sessions /
10,000 users (``--quick``: 10x fewer). Target: p95 <= 50 ms.

    .venv/bin/python benchmarks/bench_views.py [--quick] [--db PATH] [--requests N]
        [--load-seconds S] [--write-every S] [--batch N]

The data set is written **directly with SQL** into ``phospho_otel.store.schema`` (tasks,
feedback flags, and the sessions/users rollups computed the way ingest computes them), not
through ``SQLiteStore.write``: that path is measured by the ingest benchmark, and SQL builds
a million tasks in well under a minute. The ``spans`` table stays empty (no view reads it).

The aggregator then serves that file (``AggregatorServer``, real HTTP on 127.0.0.1) and each
endpoint is requested ``--requests`` times with varying ids / pages over one keep-alive
connection. Baseline measured in the same run: ``GET /healthz`` (HTTP + framework cost with
no query); ratios are p95(endpoint) / p95(healthz).

Insights are served from a cache with bounded staleness (``api.views.InsightsCache``:
reused while younger than ``max_age_s``, default 2 s, refreshed in the background). So
that the figure is honest, two more measurements:

* **recompute**: ``queries.session_insights`` / ``user_insights`` called directly (no
  cache, no HTTP), each part timed; and the "cold" rows, which defeat the cache through
  HTTP (a new ``top`` each time, hence a new cache key);
* **under write load**: a thread writes small batches (a new session of
  ``--batch`` tasks, some with feedback) through ``SQLiteStore.write`` every
  ``--write-every`` seconds, in the server's process as ingest would, while the insight
  endpoints are requested (paced, for ``--load-seconds`` each, i.e. several max ages);
  the table adds the oldest result served (now - ``computed_at``) and how many
  distinct results (recomputes) were served. ``--db`` files are written to by this phase.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.semconv import (
    IOAttributes,
    PhosphoAttributes,
    SessionAttributes,
    UserAttributes,
)
from phospho_otel.server import AggregatorServer
from phospho_otel.server_settings import ServerSettings
from phospho_otel.store import queries
from phospho_otel.store.schema import DDL
from phospho_otel.store.sqlite import SQLiteStore

BASE_NS = 1_764_000_000 * 1_000_000_000  # 2025-11-24T16:00:00Z
S = 1_000_000_000
TARGET_MS = 50.0


def _task_rows(
    n_sessions: int,
    n_users: int,
    tasks_per_session: int,
    seed: int,
    session_rows: list[tuple[object, ...]],
) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    inputs = [
        f"question {i}: how do I {w}?"
        for i, w in enumerate(
            [
                "reset my password",
                "export data",
                "cancel",
                "upgrade",
                "get a refund",
                "log in",
                "change email",
                "delete my account",
                "contact support",
                "use the API",
            ]
        )
    ]
    t = 0
    for s in range(n_sessions):
        user = f"user-{s % n_users:05d}"
        sid = f"session-{s:06d}"
        start = BASE_NS + s * 50 * S + rng.randrange(0, 30) * S
        n = (
            max(1, tasks_per_session + rng.randrange(-5, 6))
            if tasks_per_session > 5
            else tasks_per_session
        )
        first = last = None
        succ = fail = err = 0
        for k in range(n):
            tid = f"task-{t:07d}"
            t_start = start + k * 20 * S
            t_end = t_start + rng.randrange(1, 5) * S
            text_in = inputs[(s + k) % len(inputs)]
            status = "error" if t % 50 == 0 else "ok"
            flag = "success" if t % 7 == 0 else ("failure" if t % 11 == 0 else None)
            succ += flag == "success"
            fail += flag == "failure"
            err += status == "error"
            row = (
                tid,
                t.to_bytes(16, "big"),
                t.to_bytes(8, "big"),
                sid,
                user,
                "chat",
                "bench",
                "phospho",
                text_in,
                f"answer {t}",
                '{"q": 1}',
                '{"a": 1}',
                '{"model": "m"}',
                t_start,
                t_end,
                status,
                flag,
                t_end + S if flag else None,
                None,
                "user" if flag else None,
            )
            if first is None:
                first = row
            last = row
            t += 1
            yield row
        assert first is not None and last is not None
        session_rows.append(
            (
                sid,
                user,
                n,
                start,
                last[14],
                first[0],
                first[13],
                first[8],
                last[0],
                last[13],
                last[8],
                last[9],
                last[15],
                succ,
                fail,
                err,
            )
        )


def populate(path: Path, n_tasks: int, n_sessions: int, n_users: int, seed: int = 1) -> None:
    """Write the synthetic data set into a fresh SQLite file at ``path``."""
    conn = sqlite3.connect(path)
    conn.executescript("PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;")
    conn.executescript(DDL)
    session_rows: list[tuple[object, ...]] = []
    with conn:
        conn.executemany(
            "INSERT INTO tasks (task_id, trace_id, span_id, session_id, user_id, name,"
            " service_name, convention, input, output, raw_input, raw_output, metadata,"
            " start_ns, end_ns, status, flag, flag_time_ns, notes, flag_source)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            _task_rows(n_sessions, n_users, n_tasks // n_sessions, seed, session_rows),
        )
        conn.executemany(
            "INSERT INTO sessions (session_id, user_id, task_count, start_ns, end_ns,"
            " first_task_id, first_start_ns, first_input, last_task_id, last_start_ns,"
            " last_input, last_output, last_status, success_count, failure_count, error_count)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            session_rows,
        )
        conn.execute(
            "UPDATE sessions SET last_flag ="
            " (SELECT flag FROM tasks WHERE task_id = sessions.last_task_id)"
        )
        conn.execute(
            "INSERT INTO users (user_id, task_count, session_count, first_seen_ns, last_seen_ns,"
            " success_count, failure_count, error_count)"
            " SELECT user_id, sum(task_count), count(*), min(start_ns), max(end_ns),"
            " sum(success_count), sum(failure_count), sum(error_count)"
            " FROM sessions GROUP BY user_id"
        )
    conn.execute("ANALYZE")
    conn.close()


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[-1]


def _attrs(values: dict[str, object]) -> list[KeyValue]:
    return [KeyValue(key=k, value=AnyValue(string_value=str(v))) for k, v in values.items()]


def _load_request(n: int, batch: int, n_users: int) -> ExportTraceServiceRequest:
    """Write ``n`` of the load: a new session of ``batch`` tasks (the last one flagged
    every third time), starting after the data set."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(_attrs({"service.name": "bench-load"}))
    ss = rs.scope_spans.add()
    start = BASE_NS + 10**7 * S + n * 100 * S
    for k in range(batch):
        tid = f"load-{n:06d}-{k:02d}"
        ss.spans.append(Span(
            trace_id=(10**9 + n).to_bytes(16, "big"), span_id=(k + 1).to_bytes(8, "big"),
            name="chat", kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start + k * S, end_time_unix_nano=start + k * S + S // 2,
            attributes=_attrs({
                PhosphoAttributes.SPAN_TYPE: "task", PhosphoAttributes.TASK_ID: tid,
                IOAttributes.INPUT_VALUE: f"load question {n % 50}",
                IOAttributes.OUTPUT_VALUE: f"answer {n}",
                SessionAttributes.SESSION_ID: f"load-session-{n:06d}",
                UserAttributes.USER_ID: f"user-{n % n_users:05d}",
            }),
        ))
    if n % 3 == 0:
        ss.spans.append(Span(
            trace_id=(10**9 + n).to_bytes(16, "big"), span_id=(batch + 1).to_bytes(8, "big"),
            name="feedback", kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start + batch * S, end_time_unix_nano=start + batch * S,
            attributes=_attrs({
                PhosphoAttributes.SPAN_TYPE: "feedback",
                PhosphoAttributes.TASK_ID: f"load-{n:06d}-{batch - 1:02d}",
                PhosphoAttributes.FEEDBACK_FLAG: "failure",
            }),
        ))
    return req


class _Writer(threading.Thread):
    """Writes ``_load_request``s through ``store.write`` every ``every`` seconds."""

    def __init__(self, store: SQLiteStore, every: float, batch: int, n_users: int) -> None:
        super().__init__(name="bench-writer", daemon=True)
        self.store, self.every, self.batch, self.n_users = store, every, batch, n_users
        self.stop = threading.Event()
        self.writes = 0
        self.write_ms: list[float] = []

    def run(self) -> None:
        next_at = time.perf_counter()
        while not self.stop.is_set():
            req = _load_request(self.writes, self.batch, self.n_users)
            t0 = time.perf_counter()
            self.store.write(req)
            self.write_ms.append((time.perf_counter() - t0) * 1000)
            self.writes += 1
            next_at += self.every
            self.stop.wait(max(0.0, next_at - time.perf_counter()))


def _recompute_parts(path: Path) -> list[tuple[str, float]]:
    """Median ms of each part of ``session_insights`` and of the whole, no cache, no HTTP."""
    conn = sqlite3.connect(path)
    try:
        parts: list[tuple[str, Callable[[], object]]] = [
            ("totals (one scan of sessions)", lambda: conn.execute(
                "SELECT count(*), avg(end_ns - start_ns), avg(task_count), total(task_count),"
                " total(success_count), total(failure_count), total(error_count)"
                " FROM sessions").fetchone()),
            ("length histogram", lambda: conn.execute(
                "SELECT task_count, count(*) FROM sessions GROUP BY task_count"
                " ORDER BY task_count").fetchall()),
            ("median + p90 (index OFFSET)", lambda: [
                queries._quantile_ns(conn, [], [], n, q)
                for n in [conn.execute("SELECT count(*) FROM sessions").fetchone()[0]]
                for q in (0.5, 0.9)]),
            ("sessions per day", lambda: queries._sessions_per_day(conn, None, None, None)),
            ("endings", lambda: queries._endings(conn, [], [], 5)),
            ("session_insights (whole)", lambda: queries.session_insights(conn)),
            ("user_insights (whole)", lambda: queries.user_insights(conn)),
        ]
        out = []
        for name, fn in parts:
            fn()
            samples = []
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                samples.append((time.perf_counter() - t0) * 1000)
            out.append((name, statistics.median(samples)))
        return out
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller data set")
    parser.add_argument("--db", help="reuse (or create) this data file")
    parser.add_argument("--requests", type=int, default=200, help="requests per endpoint")
    parser.add_argument("--load-seconds", type=float, default=None,
                        help="under write load: seconds per endpoint (default 8, quick 3)")
    parser.add_argument("--write-every", type=float, default=0.01,
                        help="under write load: seconds between writes (default 0.01)")
    parser.add_argument("--batch", type=int, default=10,
                        help="under write load: tasks per write (default 10)")
    args = parser.parse_args(argv)
    load_seconds = args.load_seconds or (3.0 if args.quick else 8.0)
    scale = 10 if args.quick else 1
    n_tasks, n_sessions, n_users = 1_000_000 // scale, 100_000 // scale, 10_000 // scale
    tmp = tempfile.TemporaryDirectory(prefix="bench-views-")
    path = Path(args.db) if args.db else Path(tmp.name) / "views.db"
    if not path.exists():
        t0 = time.perf_counter()
        populate(path, n_tasks, n_sessions, n_users)
        print(f"data set written with SQL in {time.perf_counter() - t0:.1f} s")
    with sqlite3.connect(path) as check:
        counts = [check.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                  for t in ("tasks", "sessions", "users")]
    print("data set: {:,} tasks / {:,} sessions / {:,} users".format(*counts))
    print("\ninsights recomputed, no cache, no HTTP (median of 5):")
    for name, ms in _recompute_parts(path):
        print(f"  {name:34} {ms:8.1f} ms")
    rng = random.Random(2)
    from_iso = "2025-11-30T00:00:00Z"
    to_iso = "2025-12-07T00:00:00Z"

    def uid() -> str:
        return f"user-{rng.randrange(n_users):05d}"

    endpoints: list[tuple[str, Callable[[], tuple[str, dict[str, object]]]]] = [
        ("GET /healthz (baseline)", lambda: ("/healthz", {})),
        ("GET /api/sessions", lambda: ("/api/sessions", {})),
        (
            "GET /api/sessions?offset=1000&sort=duration_s",
            lambda: ("/api/sessions", {"sort": "duration_s", "offset": 1000}),
        ),
        (
            "GET /api/sessions?sort=task_count&order=asc",
            lambda: ("/api/sessions", {"sort": "task_count", "order": "asc"}),
        ),
        (
            "GET /api/sessions?from&to (1 week)",
            lambda: ("/api/sessions", {"from": from_iso, "to": to_iso}),
        ),
        ("GET /api/sessions?user_id", lambda: ("/api/sessions", {"user_id": uid()})),
        (
            "GET /api/sessions/{id}",
            lambda: (f"/api/sessions/session-{rng.randrange(n_sessions):06d}", {}),
        ),
        ("GET /api/users", lambda: ("/api/users", {})),
        ("GET /api/users?sort=task_count", lambda: ("/api/users", {"sort": "task_count"})),
        ("GET /api/users/{id}", lambda: (f"/api/users/{uid()}", {})),
        ("GET /api/tasks", lambda: ("/api/tasks", {})),
        ("GET /api/tasks?user_id", lambda: ("/api/tasks", {"user_id": uid()})),
        ("GET /api/tasks/{id}", lambda: (f"/api/tasks/task-{rng.randrange(n_tasks):07d}", {})),
        ("GET /api/insights/sessions", lambda: ("/api/insights/sessions", {})),
        (
            "GET /api/insights/sessions?from&to (1 week)",
            lambda: ("/api/insights/sessions", {"from": from_iso, "to": to_iso}),
        ),
        ("GET /api/insights/users", lambda: ("/api/insights/users", {})),
        # Insights are cached until the data changes (a write); these rows defeat the cache
        # (a new `top` each time, so a new cache key) to show the cost right after a write.
        ("GET /api/insights/sessions (cold, no cache)",
         lambda: ("/api/insights/sessions", {"top": next(cold_top)})),
        ("GET /api/insights/users (cold, no cache)",
         lambda: ("/api/insights/users", {"top": next(cold_top)})),
    ]
    cold_top = itertools.cycle(range(1, 101))
    settings = ServerSettings(db=str(path), http_port=0, grpc_port=0)
    results: list[tuple[str, float, float]] = []
    with AggregatorServer(settings) as server:
        assert server.http_port is not None
        # http.client: one keep-alive connection, each request sent in one write (httpx's
        # sync client adds ~40 ms of Nagle/delayed-ACK wait on loopback here).
        conn = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=120)

        def get(path: str, params: dict[str, object]) -> tuple[int, bytes]:
            query = urllib.parse.urlencode(params)
            conn.request("GET", path + (f"?{query}" if query else ""))
            response = conn.getresponse()
            return response.status, response.read()

        for name, make in endpoints:
            for _ in range(3):  # warm-up: page cache, statement cache
                get(*make())
            samples = []
            for _ in range(min(args.requests, 40) if "cold" in name else args.requests):
                p, q = make()
                t0 = time.perf_counter()
                status, body = get(p, q)
                json.loads(body)
                samples.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    print(f"{name}: HTTP {status} {body[:200]!r}", file=sys.stderr)
                    return 1
            results.append((name, statistics.median(samples), _p95(samples)))

        # Under write load: the writer runs during the whole phase; each endpoint is
        # requested every 10 ms for load_seconds.
        assert server.store is not None
        writer = _Writer(server.store, args.write_every, args.batch, n_users)
        writer.start()
        loaded: list[tuple[str, float, float, float, int]] = []
        load_endpoints = [(f"{name} [under writes]", make) for name, make in endpoints
                          if name in ("GET /healthz (baseline)", "GET /api/insights/sessions",
                                      "GET /api/insights/sessions?from&to (1 week)",
                                      "GET /api/insights/users", "GET /api/sessions")]
        for name, make in load_endpoints:
            samples, oldest, computed = [], 0.0, set()
            end_at = time.perf_counter() + load_seconds
            while time.perf_counter() < end_at:
                p, q = make()
                t0 = time.perf_counter()
                status, body = get(p, q)
                doc = json.loads(body)
                samples.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    print(f"{name}: HTTP {status} {body[:200]!r}", file=sys.stderr)
                    return 1
                if "computed_at" in doc:
                    computed.add(doc["computed_at"])
                    age = time.time() - queries.iso_to_ns(doc["computed_at"]) / 1e9
                    oldest = max(oldest, age)
                time.sleep(0.01)
            loaded.append((name, statistics.median(samples), _p95(samples), oldest,
                           len(computed)))
        writer.stop.set()
        writer.join()
        conn.close()
    base = results[0][2]
    print(
        f"{'endpoint':48} {'p50 ms':>8} {'p95 ms':>8} {'x base':>8}  target p95 <= "
        f"{TARGET_MS:.0f} ms"
    )
    worst = {"served": 0.0, "cold": 0.0}
    for name, p50, p95 in results:
        ok = "" if name.startswith("GET /healthz") else ("ok" if p95 <= TARGET_MS else "SLOW")
        print(f"{name:48} {p50:8.2f} {p95:8.2f} {p95 / base:8.1f}  {ok}")
        if not name.startswith("GET /healthz"):
            kind = "cold" if "cold" in name else "served"
            worst[kind] = max(worst[kind], p95)
    loaded_base = loaded[0][2]
    print(f"\nunder write load: {writer.writes:,} writes of {args.batch} tasks in"
          f" {len(loaded) * load_seconds:.0f} s ({writer.writes / (len(loaded) * load_seconds):.0f}"
          f" writes/s, write p95 {_p95(writer.write_ms):.1f} ms)")
    print(f"{'endpoint':58} {'p50 ms':>8} {'p95 ms':>8} {'x base':>8} {'oldest s':>9}"
          f" {'computed':>9}")
    for name, p50, p95, oldest, n_computed in loaded:
        ok = "" if name.startswith("GET /healthz") else ("ok" if p95 <= TARGET_MS else "SLOW")
        extra = f"{oldest:9.2f} {n_computed:9d}" if n_computed else f"{'':9} {'':9}"
        print(f"{name:58} {p50:8.2f} {p95:8.2f} {p95 / loaded_base:8.1f} {extra}  {ok}")
        if not name.startswith("GET /healthz"):
            worst["loaded"] = max(worst.get("loaded", 0.0), p95)
    for kind, label in (("served", "every endpoint as served, idle store"),
                        ("loaded", "insights and lists under write load"),
                        ("cold", "insights recomputed in the request (no cache)")):
        verdict = "within" if worst[kind] <= TARGET_MS else "OVER"
        print(f"worst p95, {label}: {worst[kind]:.1f} ms ({verdict} target)")
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
