"""Scale-out: ingest over OTLP/HTTP with 1 and 2 aggregator replicas on one ClickHouse
against 1 aggregator on SQLite, then view and Jaeger latency on both stores, side by side
in one run.

    .venv/bin/python benchmarks/bench_scaleout.py                  # 1,000,000 spans
    .venv/bin/python benchmarks/bench_scaleout.py --quick          # 20,000 spans, smoke run
    .venv/bin/python benchmarks/bench_scaleout.py --spans 200000 --clients 4 --batch 4096

The data: traces of four spans (a task span of our convention with its session and user,
and three children in two other services), 10 tasks per session, 5 sessions per user, a
feedback span on one task in eight; pre-encoded OTLP/protobuf requests of ``--batch``
spans, sent by ``--clients`` threads, each request to one replica (round robin by client
thread), retried on 503 as a collector does. Each replica is its own process
(``bench_ingest.py --serve``: store, ingestor, OTLP/HTTP), on a fresh store: SQLite
(WAL, synchronous=FULL) or a database of Debian's ClickHouse 18.16 server, started on free
ports of 127.0.0.1 (``tests/support/clickhouse.py``). The two ClickHouse runs fill two
databases of the same server.

Reported:

* ingest spans/s (wall clock, first request sent to last acknowledged), and the ratio to
  SQLite;
* CPU seconds per ingested span of each replica process (``/proc/PID/stat`` utime+stime,
  over the sends) and of the ClickHouse server; "spans/s per added core" is 1 / (CPU per
  span): what one more core gives the aggregator tier (replica CPU only) and the whole
  path (replica + ClickHouse). The machine has 2 cores, shared by the clients, the
  replicas and ClickHouse, so absolute throughput says little; CPU per span per replica
  should stay constant from 1 to 2 replicas;
* p50/p95 (ms, over HTTP, one client) of the views (sessions list, session detail, users
  list, user detail, session and user insights computed now: ``max_age_s=0``) and the
  Jaeger API (search by service, by ``session.id``, trace by id), served by an aggregator
  on the SQLite store and on the ClickHouse database the two replicas filled; the ratio
  ClickHouse / SQLite, and ClickHouse's p95 against the 100 ms target.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

import httpx
from _common import BASE_NS, SEC, feedback_attributes, kv, p95, pct, task_attributes
from bench_ingest import Server
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from phospho_otel.server import AggregatorServer
from phospho_otel.server.settings import ServerSettings
from tests.support.clickhouse import ClickHouseServer

TARGET_MS = 100.0
TASKS_PER_SESSION = 10
SESSIONS_PER_USER = 5
SERVICES = ("chat-api", "retriever", "llm-gateway")
CLOCK_TICK_S = 1 / os.sysconf("SC_CLK_TCK")


# ----------------------------------------------------------------------- the data


@dataclass
class DataSet:
    bodies: list[bytes]
    spans_per_body: list[int]
    trace_ids: list[bytes]
    sessions: int
    users: int
    end_ns: int

    @property
    def spans(self) -> int:
        return sum(self.spans_per_body)


def _child(trace_id: bytes, parent: bytes, rng: random.Random, name: str, start: int,
           attributes: dict[str, object]) -> Span:
    return Span(trace_id=trace_id, span_id=rng.randbytes(8), parent_span_id=parent,
                name=name, kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randrange(10**7, 10**9),
                attributes=[kv(k, v) for k, v in attributes.items()])


def build_data(spans: int, batch: int, seed: int = 7) -> DataSet:
    """About ``spans`` spans (whole traces), in requests of about ``batch`` spans."""
    rng = random.Random(seed)
    tasks = max(1, spans * 8 // 33)  # 4 spans per task, plus a feedback span per 8 tasks
    sessions = max(1, tasks // TASKS_PER_SESSION)
    users = max(1, sessions // SESSIONS_PER_USER)
    bodies: list[bytes] = []
    counts: list[int] = []
    trace_ids: list[bytes] = []
    by_service: dict[str, list[Span]] = {s: [] for s in SERVICES}
    pending = 0

    def flush() -> None:
        nonlocal pending
        request = ExportTraceServiceRequest()
        for service, service_spans in by_service.items():
            if service_spans:
                resource_spans = request.resource_spans.add()
                resource_spans.resource.attributes.append(kv("service.name", service))
                resource_spans.resource.attributes.append(kv("host.name", f"{service}-1"))
                scope_spans = resource_spans.scope_spans.add()
                scope_spans.scope.name = "phospho_otel"
                scope_spans.spans.extend(service_spans)
                service_spans.clear()
        bodies.append(request.SerializeToString())
        counts.append(pending)
        pending = 0

    for i in range(tasks):
        session = i % sessions  # sessions interleave, as concurrent users do
        user = session % users
        start = BASE_NS + i * 20_000_000  # a task every 20 ms
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id)
        task_span_id = rng.randbytes(8)
        task_id = f"task-{i:07d}"
        session_id = f"session-{session:06d}"
        by_service["chat-api"].append(Span(
            trace_id=trace_id, span_id=task_span_id, name="chat", kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start, end_time_unix_nano=start + 2 * SEC,
            attributes=task_attributes(
                task_id, input=f"question {i % 997}: what does the contract say? " * 2,
                output=f"answer {i}: it says the opposite. " * 3, session_id=session_id,
                user_id=f"user-{user:05d}", semconv_version=True,
                metadata={"model": rng.choice(["gpt-4o-mini", "gpt-4o"])})))
        by_service["retriever"].append(_child(
            trace_id, task_span_id, rng, "retrieve", start + 10**6,
            {"db.system": "qdrant", "session.id": session_id, "k": 8}))
        by_service["retriever"].append(_child(
            trace_id, task_span_id, rng, "rerank", start + 3 * 10**8,
            {"session.id": session_id, "k": 8}))
        by_service["llm-gateway"].append(_child(
            trace_id, task_span_id, rng, "chat gpt-4o-mini", start + 5 * 10**8,
            {"gen_ai.system": "openai", "gen_ai.request.model": "gpt-4o-mini",
             "gen_ai.usage.input_tokens": rng.randrange(100, 4000),
             "gen_ai.usage.output_tokens": rng.randrange(10, 800), "session.id": session_id}))
        pending += 4
        if i % 8 == 7:
            by_service["chat-api"].append(Span(
                trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="feedback",
                kind=Span.SPAN_KIND_INTERNAL, start_time_unix_nano=start + 3 * SEC,
                end_time_unix_nano=start + 3 * SEC,
                attributes=feedback_attributes(task_id, rng.choice(["success", "failure"]))))
            pending += 1
        if pending >= batch:
            flush()
    if pending:
        flush()
    return DataSet(bodies, counts, trace_ids, sessions, users,
                   BASE_NS + tasks * 20_000_000 + 10 * SEC)


# ----------------------------------------------------------------------- ingest


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from ``/proc/PID/stat``."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * CLOCK_TICK_S


@dataclass
class IngestRun:
    name: str
    replicas: int
    seconds: float
    spans: int
    replica_cpu_per_span: list[float]
    clickhouse_cpu_per_span: float | None

    @property
    def rate(self) -> float:
        return self.spans / self.seconds


def send(data: DataSet, ports: Sequence[int], clients: int) -> tuple[float, list[int]]:
    """Send every body, client thread ``c`` to replica ``c % len(ports)``, retrying on
    503; returns the wall time and the spans each replica acknowledged."""
    queue = list(range(len(data.bodies)))
    lock = threading.Lock()
    errors: list[str] = []
    per_replica = [0] * len(ports)

    def worker(c: int) -> None:
        target = c % len(ports)
        url = f"http://127.0.0.1:{ports[target]}/v1/traces"
        with httpx.Client(timeout=300, trust_env=False) as client:
            while True:
                with lock:
                    if not queue or errors:
                        return
                    i = queue.pop(0)
                try:
                    while True:
                        r = client.post(url, content=data.bodies[i],
                                        headers={"Content-Type": "application/x-protobuf"})
                        if r.status_code != 503:
                            break
                        time.sleep(float(r.headers.get("Retry-After", "1")))
                    if r.status_code != 200:
                        raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
                except Exception as exc:  # reported below
                    with lock:
                        errors.append(repr(exc))
                    return
                with lock:
                    per_replica[target] += data.spans_per_body[i]

    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"send failed: {errors[0]}")
    return elapsed, per_replica


def ingest(name: str, urls: Sequence[str], data: DataSet, clients: int,
           clickhouse: ClickHouseServer | None) -> IngestRun:
    """Start one replica per URL, send the data set, stop them."""
    replicas = [Server(url, "FULL") for url in urls]  # type: ignore[arg-type]
    try:
        before = [cpu_seconds(r.proc.pid) for r in replicas]
        ch_before = cpu_seconds(clickhouse.process.pid) if clickhouse else 0.0
        elapsed, per_replica = send(data, [r.http_port for r in replicas],
                                    max(clients, len(replicas)))
        after = [cpu_seconds(r.proc.pid) for r in replicas]
        ch_after = cpu_seconds(clickhouse.process.pid) if clickhouse else 0.0
    finally:
        for r in replicas:
            r.stop()
    cpu = [(a - b) / max(1, n) for a, b, n in zip(after, before, per_replica, strict=True)]
    ch = (ch_after - ch_before) / data.spans if clickhouse else None
    run = IngestRun(name, len(urls), elapsed, data.spans, cpu, ch)
    print(f"  {name}: {run.rate:,.0f} spans/s in {elapsed:.1f} s; replica CPU "
          + ", ".join(f"{c * 1e6:.0f}" for c in cpu) + " us/span"
          + ("" if ch is None else f"; ClickHouse {ch * 1e6:.0f} us/span"), flush=True)
    return run


# ----------------------------------------------------------------------- reads


Query = Callable[[random.Random], tuple[str, dict[str, str]]]


def queries(data: DataSet) -> list[tuple[str, Query]]:
    window = {"start": str(BASE_NS // 1000 - 10**6), "end": str(data.end_ns // 1000)}

    def session(rng: random.Random) -> str:
        return f"session-{rng.randrange(data.sessions):06d}"

    def user(rng: random.Random) -> str:
        return f"user-{rng.randrange(data.users):05d}"

    def trace(rng: random.Random) -> str:
        return data.trace_ids[rng.randrange(len(data.trace_ids))].hex()

    return [
        ("GET /api/sessions", lambda rng: ("/api/sessions", {})),
        ("GET /api/sessions/{id}", lambda rng: (f"/api/sessions/{session(rng)}", {})),
        ("GET /api/users", lambda rng: ("/api/users", {})),
        ("GET /api/users/{id}", lambda rng: (f"/api/users/{user(rng)}", {})),
        ("GET /api/insights/sessions (now)",
         lambda rng: ("/api/insights/sessions", {"max_age_s": "0"})),
        ("GET /api/insights/users (now)",
         lambda rng: ("/api/insights/users", {"max_age_s": "0"})),
        ("Jaeger search by service",
         lambda rng: ("/jaeger/api/traces", {**window, "limit": "20",
                                             "service": rng.choice(SERVICES)})),
        ("Jaeger search by session.id",
         lambda rng: ("/jaeger/api/traces", {**window, "limit": "20", "tags": json.dumps(
             {"session.id": session(rng)})})),
        ("Jaeger trace by id", lambda rng: (f"/jaeger/api/traces/{trace(rng)}", {})),
    ]


def read_latencies(url: str, data: DataSet, samples: int, budget_s: float
                   ) -> dict[str, list[float]]:
    """Milliseconds of each query over HTTP, on an aggregator serving ``url`` (no
    analyzer): ``samples`` each, fewer (at least 3) when a query's ``budget_s`` runs
    out."""
    settings = ServerSettings(store=url, http_port=0, grpc_port=0, analyzer_interval_s=0)
    out: dict[str, list[float]] = {}
    with AggregatorServer(settings) as server, httpx.Client(
            base_url=f"http://127.0.0.1:{server.http_port}", timeout=600,
            trust_env=False) as client:
        for name, query in queries(data):
            rng = random.Random(name)
            path, params = query(rng)
            client.get(path, params=params)  # warm-up
            times: list[float] = []
            started = time.perf_counter()
            while len(times) < samples and (len(times) < 3
                                            or time.perf_counter() - started < budget_s):
                path, params = query(rng)
                t = time.perf_counter()
                r = client.get(path, params=params)
                times.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    raise SystemExit(f"{url}: {path}: HTTP {r.status_code}: {r.text[:300]}")
            out[name] = times
            print(f"  {name}: p95 {p95(times) if len(times) > 1 else times[0]:.1f} ms"
                  f" ({len(times)} samples)", flush=True)
    return out


# ----------------------------------------------------------------------- main


def _p95(values: list[float]) -> float:
    return p95(values) if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small smoke run (20,000 spans, 1024 per request)")
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans to ingest per run")
    parser.add_argument("--batch", type=int, default=4096, help="spans per request")
    parser.add_argument("--clients", type=int, default=4, help="client threads")
    parser.add_argument("--samples", type=int, default=30, help="samples per read query")
    args = parser.parse_args()
    spans, batch, samples, budget = ((20_000, 1024, 10, 10.0) if args.quick
                                     else (args.spans, args.batch, args.samples, 30.0))
    print(f"building ~{spans:,} spans in requests of {batch} ...", flush=True)
    data = build_data(spans, batch)
    print(f"{data.spans:,} spans, {len(data.trace_ids):,} tasks, {data.sessions:,} sessions,"
          f" {data.users:,} users, {len(data.bodies)} requests,"
          f" {sum(map(len, data.bodies)) / data.spans:.0f} bytes/span", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        (Path(tmp) / "clickhouse").mkdir()
        clickhouse = ClickHouseServer(Path(tmp) / "clickhouse")
        try:
            sqlite_path = str(Path(tmp) / "sqlite.db")
            ch = f"clickhouse://127.0.0.1:{clickhouse.port}"
            print("ingest:", flush=True)
            runs = [
                ingest("SQLite, 1 replica", [sqlite_path], data, args.clients, None),
                ingest("ClickHouse, 1 replica", [f"{ch}/one"], data, args.clients, clickhouse),
                ingest("ClickHouse, 2 replicas", [f"{ch}/two", f"{ch}/two"], data,
                       args.clients, clickhouse),
            ]
            print("reads, SQLite:", flush=True)
            sqlite_reads = read_latencies(sqlite_path, data, samples, budget)
            print("reads, ClickHouse (the 2 replicas' database):", flush=True)
            ch_reads = read_latencies(f"{ch}/two", data, samples, budget)
        finally:
            clickhouse.stop()

    base = runs[0]
    print(f"\n== ingest over OTLP/HTTP: {data.spans:,} spans per run, {args.clients} client"
          f" threads, {batch} spans/request")
    print(f"{'store':<24} {'spans/s':>9} {'vs SQLite':>10} {'replica CPU':>12}"
          f" {'ClickHouse':>11} {'spans/s per added core':>24}")
    print(f"{'':<24} {'':>9} {'':>10} {'us/span':>12} {'CPU us/span':>11}"
          f" {'aggregator':>11} {'+ClickHouse':>12}")
    for run in runs:
        replica = sum(run.replica_cpu_per_span) / len(run.replica_cpu_per_span)
        whole = replica + (run.clickhouse_cpu_per_span or 0.0)
        ch_text = ("-" if run.clickhouse_cpu_per_span is None
                   else f"{run.clickhouse_cpu_per_span * 1e6:.0f}")
        print(f"{run.name:<24} {run.rate:>9,.0f} {run.rate / base.rate:>10.2f}"
              f" {replica * 1e6:>12.0f} {ch_text:>11} {1 / replica:>11,.0f}"
              f" {1 / whole:>12,.0f}")
    one, two = runs[1], runs[2]
    per_one = one.replica_cpu_per_span[0]
    per_two = sum(two.replica_cpu_per_span) / 2
    print(f"CPU per span per replica, 2 replicas / 1 replica: {per_two / per_one:.2f}"
          " (target: 1.00, constant)")

    print(f"\n== reads over HTTP (ms; ClickHouse: the database the 2 replicas filled;"
          f" target p95 <= {TARGET_MS:.0f} ms)")
    print(f"{'query':<36} {'SQLite p50':>10} {'p95':>8} {'ClickHouse p50':>15} {'p95':>8}"
          f" {'CH/SQLite':>10} {'target':>7}")
    for name, sqlite_times in sqlite_reads.items():
        ch_times = ch_reads[name]
        s95, c95 = _p95(sqlite_times), _p95(ch_times)
        print(f"{name:<36} {pct(sqlite_times, 50):>10.1f} {s95:>8.1f}"
              f" {pct(ch_times, 50):>15.1f} {c95:>8.1f} {c95 / s95:>10.1f}"
              f" {'ok' if c95 <= TARGET_MS else 'MISS':>7}")


if __name__ == "__main__":
    main()
