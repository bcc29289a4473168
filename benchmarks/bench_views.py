"""View latency: p95 of each ``GET /api/...`` at 1,000,000 tasks / 100,000 sessions /
10,000 users (``--quick``: 10x fewer). Target: p95 <= 50 ms.

    .venv/bin/python benchmarks/bench_views.py [--quick] [--db PATH] [--requests N]
        [--load-seconds S] [--write-every S] [--batch N] [--populate-only]

The data set (tasks and their feedback flags) is built as records
(``model.records.TaskRecord`` / ``FeedbackRecord``) and written through the store's own
write path (``store.write`` of ``Extraction``s without spans, ``POPULATE_TASKS`` tasks
per write), so that the sessions and users rollups are made by the store with the one
definition of the merge rules (``model.rollup``); no merge rule is restated here. The
``spans`` table stays empty (no view reads it). Like the store, it runs no ``ANALYZE``
(the earlier SQL-built data set did; every statement the endpoints run has the same
query plan with or without it). ``--populate-only`` stops once the data set is written
(to time it).

The aggregator then serves that file (``AggregatorServer``, real HTTP on 127.0.0.1) and each
endpoint is requested ``--requests`` times with varying ids / pages over one keep-alive
connection. Baseline measured in the same run: ``GET /healthz`` (HTTP + framework cost with
no query); ratios are p95(endpoint) / p95(healthz).

Insights are served from a cache with bounded staleness (``insights.cache.InsightsCache``:
reused while younger than ``max_age_s``, default 2 s, refreshed in the background). So
that the figure is honest, two more measurements:

* **recompute**: ``insights.session_insights`` / ``user_insights`` called directly on a
  ``store.read()`` reader (no cache, no HTTP), and the reader calls they are made of,
  each timed; and the "cold" rows, which defeat the cache through HTTP (a new ``top``
  each time, hence a new cache key);
* **under write load**: a thread writes small batches (a new session of
  ``--batch`` tasks, some with feedback; extracted, then ``store.write``) every
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
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path

from _common import (
    BASE_NS,
    SEC,
    export_request,
    feedback_attributes,
    records_extraction,
    task_attributes,
    timed,
    write_data_set,
)
from _common import p95 as _p95
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.aggregator import extract
from phospho_otel.api.serialize import iso_to_ns
from phospho_otel.insights import session_insights, user_insights
from phospho_otel.insights.sessions import quantile_ranks
from phospho_otel.model.records import Extraction, FeedbackRecord, TaskRecord
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import Page, SessionFilter, Store, TaskFilter, UserFilter

TARGET_MS = 50.0
POPULATE_TASKS = 20_000
"""Tasks per ``store.write`` when building the data set (whole sessions)."""

_INPUTS = [
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


def session_records(
    n_sessions: int, n_users: int, tasks_per_session: int, seed: int
) -> Iterator[tuple[list[TaskRecord], list[FeedbackRecord]]]:
    """The data set, one session at a time: its tasks and their feedback (every 7th task
    a success, else every 11th a failure, one second after it ends; every 50th task an
    error)."""
    rng = random.Random(seed)
    t = 0
    for s in range(n_sessions):
        user = f"user-{s % n_users:05d}"
        sid = f"session-{s:06d}"
        start = BASE_NS + s * 50 * SEC + rng.randrange(0, 30) * SEC
        n = (
            max(1, tasks_per_session + rng.randrange(-5, 6))
            if tasks_per_session > 5
            else tasks_per_session
        )
        tasks: list[TaskRecord] = []
        feedback: list[FeedbackRecord] = []
        for k in range(n):
            tid = f"task-{t:07d}"
            trace_id = t.to_bytes(16, "big")
            t_start = start + k * 20 * SEC
            t_end = t_start + rng.randrange(1, 5) * SEC
            tasks.append(TaskRecord(
                task_id=tid, trace_id=trace_id, span_id=t.to_bytes(8, "big"),
                session_id=sid, user_id=user, name="chat", service_name="bench",
                convention="phospho", input=_INPUTS[(s + k) % len(_INPUTS)],
                output=f"answer {t}", raw_input='{"q": 1}', raw_output='{"a": 1}',
                metadata='{"model": "m"}', start_ns=t_start, end_ns=t_end,
                status="error" if t % 50 == 0 else "ok",
            ))
            flag = "success" if t % 7 == 0 else ("failure" if t % 11 == 0 else None)
            if flag:
                feedback.append(FeedbackRecord(
                    trace_id=trace_id, span_id=(2**63 + t).to_bytes(8, "big"), task_id=tid,
                    flag=flag, notes=None, source="user", time_ns=t_end + SEC,
                ))
            t += 1
        yield tasks, feedback


def _extractions(n_tasks: int, n_sessions: int, n_users: int,
                 seed: int) -> Iterator[Extraction]:
    """The data set as ``Extraction``s of whole sessions, about ``POPULATE_TASKS`` tasks
    each."""
    tasks: list[TaskRecord] = []
    feedback: list[FeedbackRecord] = []
    for session_tasks, session_feedback in session_records(
        n_sessions, n_users, n_tasks // n_sessions, seed
    ):
        tasks += session_tasks
        feedback += session_feedback
        if len(tasks) >= POPULATE_TASKS:
            yield records_extraction(tasks=tasks, feedback=feedback)
            tasks, feedback = [], []
    if tasks:
        yield records_extraction(tasks=tasks, feedback=feedback)


def populate(path: Path, n_tasks: int, n_sessions: int, n_users: int, seed: int = 1) -> None:
    """Write the synthetic data set into a fresh store at ``path``, through its write
    path (``synchronous=NORMAL``: a benchmark's scratch file need not survive a power
    loss)."""
    store = open_store(str(path), synchronous="NORMAL")
    try:
        write_data_set(store, _extractions(n_tasks, n_sessions, n_users, seed))
    finally:
        store.close()


def _load_request(n: int, batch: int, n_users: int) -> ExportTraceServiceRequest:
    """Write ``n`` of the load: a new session of ``batch`` tasks (the last one flagged
    every third time), starting after the data set."""
    start = BASE_NS + 10**7 * SEC + n * 100 * SEC
    trace_id = (10**9 + n).to_bytes(16, "big")
    spans = [
        Span(
            trace_id=trace_id, span_id=(k + 1).to_bytes(8, "big"),
            name="chat", kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start + k * SEC, end_time_unix_nano=start + k * SEC + SEC // 2,
            attributes=task_attributes(
                f"load-{n:06d}-{k:02d}", input=f"load question {n % 50}",
                output=f"answer {n}", session_id=f"load-session-{n:06d}",
                user_id=f"user-{n % n_users:05d}",
            ),
        )
        for k in range(batch)
    ]
    if n % 3 == 0:
        spans.append(Span(
            trace_id=trace_id, span_id=(batch + 1).to_bytes(8, "big"),
            name="feedback", kind=Span.SPAN_KIND_INTERNAL,
            start_time_unix_nano=start + batch * SEC, end_time_unix_nano=start + batch * SEC,
            attributes=feedback_attributes(f"load-{n:06d}-{batch - 1:02d}", "failure"),
        ))
    return export_request(spans, service="bench-load")


class _Writer(threading.Thread):
    """Writes ``_load_request``s (extracted, then ``store.write``) every ``every``
    seconds."""

    def __init__(self, store: Store, every: float, batch: int, n_users: int) -> None:
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
            self.store.write([extract(req)])
            self.write_ms.append((time.perf_counter() - t0) * 1000)
            self.writes += 1
            next_at += self.every
            self.stop.wait(max(0.0, next_at - time.perf_counter()))


def _counts(path: Path) -> tuple[int, int, int]:
    """(tasks, sessions, users) in the store at ``path``."""
    store = open_store(str(path), read_only=True)
    try:
        with store.read() as reader:
            tasks = reader.list_tasks(TaskFilter(), Page("start_time", limit=1)).total
            sessions = reader.session_totals(SessionFilter()).session_count
            users = reader.user_totals(UserFilter()).user_count
    finally:
        store.close()
    assert tasks is not None
    return tasks, sessions, users


def _recompute_parts(path: Path) -> list[tuple[str, float]]:
    """Median ms of each reader call ``session_insights`` makes and of the whole (and of
    ``user_insights``), on one ``store.read()`` snapshot: no cache, no HTTP."""
    store = open_store(str(path), read_only=True)
    try:
        with store.read() as reader:
            everything = SessionFilter()
            n = reader.session_totals(everything).session_count

            def quantiles() -> list[list[int]]:  # what session_insights asks for each
                out = []
                for q in (0.5, 0.9):
                    lo, weight = quantile_ranks(n, q)
                    out.append(reader.session_durations_at(
                        everything, [lo, lo + 1] if weight else [lo]))
                return out

            parts: list[tuple[str, Callable[[], object]]] = [
                ("totals (one scan of sessions)", lambda: reader.session_totals(everything)),
                ("length histogram", lambda: reader.session_lengths(everything)),
                ("median + p90 (index OFFSET)", quantiles),
                ("sessions per day", lambda: reader.sessions_per_day(everything)),
                ("endings", lambda: reader.session_endings(everything)),
                ("session_insights (whole)", lambda: session_insights(reader)),
                ("user_insights (whole)", lambda: user_insights(reader)),
            ]
            out = []
            for name, fn in parts:
                fn()
                out.append((name, statistics.median(timed(fn, 5))))
            return out
    finally:
        store.close()


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
    parser.add_argument("--populate-only", action="store_true",
                        help="stop once the data set is written (to time it)")
    args = parser.parse_args(argv)
    load_seconds = args.load_seconds or (3.0 if args.quick else 8.0)
    scale = 10 if args.quick else 1
    n_tasks, n_sessions, n_users = 1_000_000 // scale, 100_000 // scale, 10_000 // scale
    tmp = tempfile.TemporaryDirectory(prefix="bench-views-")
    path = Path(args.db) if args.db else Path(tmp.name) / "views.db"
    if not path.exists():
        t0 = time.perf_counter()
        populate(path, n_tasks, n_sessions, n_users)
        print(f"data set written through store.write in {time.perf_counter() - t0:.1f} s")
    print("data set: {:,} tasks / {:,} sessions / {:,} users".format(*_counts(path)))
    if args.populate_only:
        tmp.cleanup()
        return 0
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
    settings = ServerSettings(store=str(path), http_port=0, grpc_port=0)
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
                    age = time.time() - iso_to_ns(doc["computed_at"]) / 1e9
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
