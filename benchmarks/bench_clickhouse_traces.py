"""Jaeger API latency on ClickHouse 18.16 against SQLite, at 1,000,000 stored spans, side by
side in one run: every ``TraceReader`` method and the Jaeger HTTP routes.

    .venv/bin/python benchmarks/bench_clickhouse_traces.py              # 1,000,000 spans
    .venv/bin/python benchmarks/bench_clickhouse_traces.py --quick      # 100,000 spans
    .venv/bin/python benchmarks/bench_clickhouse_traces.py --keep DIR   # fill DIR once, reuse it

Both stores are filled with the same spans through their own write path (``store.write``
of ``Extraction``s of 50,000 spans: ``bench_traces``' data set, traces of 5 spans in 3
services, 10 traces per session, 4 sessions per user, no tasks). ClickHouse is Debian's
``clickhouse-server`` (18.16), started on free ports of 127.0.0.1
(``tests/support/clickhouse.py``). With ``--keep DIR`` the SQLite file and the ClickHouse
data directory stay in ``DIR`` and a later run with the same ``DIR`` and span count reuses
them (the fill takes minutes; the reads are then measured on the parts as they are).

Measured, ``--samples`` runs each (p50 / p95 ms), on both stores:

* the store API (``store.read()`` and one ``TraceReader`` call): trace by id, 20 traces
  by id, searches by service, service + operation + duration, ``session.id``, ``user.id``
  (``find_trace_ids`` then ``get_traces``, as the Jaeger routes do), services, operations,
  dependencies of the last hour;
* the Jaeger routes over HTTP (a real uvicorn): v1 search by service / ``session.id`` /
  ``user.id``, trace by id (v1 and api_v3), services, operations, dependencies.

Every answer is compared on the two stores before timing. Printed: p50/p95 on each
store, ClickHouse p95 / SQLite p95, and ClickHouse's p95 against the 100 ms target. Exit
status 1 when the stores answer differently or a ClickHouse p95 misses the target.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

import httpx
import uvicorn
from _common import BASE_NS, pct, write_data_set
from bench_traces import SERVICES, SPANS_PER_TRACE, _extractions
from starlette.applications import Starlette
from starlette.routing import Mount

from phospho_otel.api.jaeger import jaeger_routes
from phospho_otel.model.records import Extraction
from phospho_otel.receiver.decode import parse_json
from phospho_otel.store import open_store
from phospho_otel.store.api import MAX_SPANS_PER_SEARCH, Store, TraceQuery
from tests.support.clickhouse import ClickHouseServer

TARGET_MS = 100.0
DATABASE = "jaeger_bench"
HOUR_NS = 3600 * 10**9


class DataSet:
    """The ids the fill made (re-made from the same seed when a kept fill is reused)."""

    def __init__(self, spans: int) -> None:
        self.sessions: list[str] = []
        self.users: list[str] = []
        self.trace_ids: list[bytes] = []
        self.spans = spans

    def extractions(self) -> Iterator[Extraction]:
        return _extractions(self.spans, random.Random(7), self.sessions, self.users,
                            self.trace_ids)

    @property
    def end_ns(self) -> int:
        return BASE_NS + len(self.trace_ids) * 50_000_000 + 10**10


def fill(store: Store, data: DataSet) -> float:
    started = time.perf_counter()
    write_data_set(store, data.extractions())
    return time.perf_counter() - started


def open_stores(directory: Path, data: DataSet) -> tuple[ClickHouseServer, Store, Store]:
    """The ClickHouse server and both stores, filled (or reused when ``directory`` holds a
    fill of the same size)."""
    marker = directory / "filled.json"
    reuse = marker.exists() and json.loads(marker.read_text()).get("spans") == data.spans
    (directory / "clickhouse").mkdir(parents=True, exist_ok=True)
    server = ClickHouseServer(directory / "clickhouse")
    sqlite_path = directory / "sqlite.db"
    if not reuse:
        marker.unlink(missing_ok=True)
        sqlite_path.unlink(missing_ok=True)
        client = server.client()
        client.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        client.disconnect()
    ch_url = f"clickhouse://127.0.0.1:{server.port}/{DATABASE}"
    sqlite = open_store(str(sqlite_path), synchronous="NORMAL")
    clickhouse = open_store(ch_url)
    if reuse:
        for _ in data.extractions():  # the ids only
            pass
        print(f"reusing the fill in {directory}", flush=True)
    else:
        s = fill(sqlite, data)
        for ids in (data.sessions, data.users, data.trace_ids):
            ids.clear()  # made again by the second fill
        c = fill(clickhouse, data)
        print(f"filled {data.spans:,} spans: SQLite {s:.0f} s, ClickHouse {c:.0f} s",
              flush=True)
        marker.write_text(json.dumps({"spans": data.spans}))
    return server, sqlite, clickhouse


# ----------------------------------------------------------------------- the queries

Call = Callable[[Store, random.Random], object]


def store_calls(data: DataSet) -> dict[str, Call]:
    lo, hi = BASE_NS - 10**9, data.end_ns

    def pick_trace(rng: random.Random) -> bytes:
        return data.trace_ids[rng.randrange(len(data.trace_ids))]

    def search(store: Store, query: TraceQuery) -> object:
        with store.read() as reader:
            ids = reader.find_trace_ids(query)
            return ids, [(t.trace_id, [s.span.span_id for s in t.spans], t.truncated)
                         for t in reader.get_traces(ids, max_total_spans=MAX_SPANS_PER_SEARCH)]

    def trace(store: Store, rng: random.Random) -> object:
        with store.read() as reader:
            return [[s.span.SerializeToString() for s in t.spans]
                    for t in reader.get_traces([pick_trace(rng)])]

    def traces20(store: Store, rng: random.Random) -> object:
        ids = [pick_trace(rng) for _ in range(20)]
        with store.read() as reader:
            return [(t.trace_id, len(t.spans)) for t in reader.get_traces(ids)]

    def services(store: Store, rng: random.Random) -> object:
        with store.read() as reader:
            return reader.services()

    def operations(store: Store, rng: random.Random) -> object:
        with store.read() as reader:
            return reader.operations(rng.choice(SERVICES))

    def dependencies(store: Store, rng: random.Random) -> object:
        with store.read() as reader:
            return reader.dependencies(data.end_ns - HOUR_NS, data.end_ns)

    return {
        "get_traces, 1 trace": trace,
        "get_traces, 20 traces": traces20,
        "search: service": lambda s, rng: search(s, TraceQuery(
            service=rng.choice(SERVICES), start_min_ns=lo, start_max_ns=hi)),
        "search: service+op+minDuration": lambda s, rng: search(s, TraceQuery(
            service=SERVICES[1], operation="retrieve", duration_min_ns=50_000_000,
            start_min_ns=lo, start_max_ns=hi)),
        "search: session.id": lambda s, rng: search(s, TraceQuery(
            tags={"session.id": data.sessions[rng.randrange(len(data.sessions))]},
            start_min_ns=lo, start_max_ns=hi)),
        "search: user.id": lambda s, rng: search(s, TraceQuery(
            tags={"user.id": data.users[rng.randrange(len(data.users))]},
            start_min_ns=lo, start_max_ns=hi)),
        "services": services,
        "operations": operations,
        "dependencies, last hour": dependencies,
    }


def http_calls(data: DataSet) -> dict[str, Callable[[random.Random], tuple[str, dict[str, str]]]]:
    window = {"start": str(BASE_NS // 1000 - 10**6), "end": str(data.end_ns // 1000)}

    def trace(rng: random.Random) -> str:
        return data.trace_ids[rng.randrange(len(data.trace_ids))].hex()

    return {
        "GET /api/traces?service": lambda rng: (
            "/api/traces", {**window, "limit": "20", "service": rng.choice(SERVICES)}),
        "GET /api/traces?tags=session.id": lambda rng: (
            "/api/traces", {**window, "limit": "20", "tags": json.dumps(
                {"session.id": data.sessions[rng.randrange(len(data.sessions))]})}),
        "GET /api/traces?tag=user.id": lambda rng: (
            "/api/traces", {**window, "limit": "20",
                            "tag": f"user.id:{data.users[rng.randrange(len(data.users))]}"}),
        "GET /api/traces/{id}": lambda rng: (f"/api/traces/{trace(rng)}", {}),
        "GET /api/v3/traces/{id}": lambda rng: (f"/api/v3/traces/{trace(rng)}", {}),
        "GET /api/services": lambda rng: ("/api/services", {}),
        "GET /api/operations": lambda rng: ("/api/operations",
                                            {"service": rng.choice(SERVICES)}),
        "GET /api/dependencies": lambda rng: ("/api/dependencies", {
            "endTs": str(data.end_ns // 10**6), "lookback": str(HOUR_NS // 10**6)}),
    }


def time_store(store: Store, calls: dict[str, Call], samples: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for name, call in calls.items():
        rng = random.Random(name)
        call(store, rng)  # warm-up
        times = []
        for _ in range(samples):
            t = time.perf_counter()
            call(store, rng)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = times
    return out


class JaegerServer:
    """The Jaeger routes of a store on a real uvicorn, on a free port."""

    def __init__(self, store: Store) -> None:
        app = Starlette(routes=[Mount("/jaeger", routes=jaeger_routes(
            store, parse_otlp_json=parse_json))])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not (self.server.started and self.server.servers):
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.base = f"http://127.0.0.1:{port}/jaeger"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def time_http(store: Store, data: DataSet, samples: int) -> dict[str, list[float]]:
    server = JaegerServer(store)
    out: dict[str, list[float]] = {}
    try:
        with httpx.Client(base_url=server.base, timeout=300, trust_env=False) as client:
            for name, call in http_calls(data).items():
                rng = random.Random(name)
                times = []
                for i in range(samples + 1):
                    path, params = call(rng)
                    t = time.perf_counter()
                    r = client.get(path, params=params)
                    if i:
                        times.append((time.perf_counter() - t) * 1000)
                    if r.status_code != 200:
                        raise SystemExit(f"{name}: HTTP {r.status_code}: {r.text[:300]}")
                out[name] = times
    finally:
        server.stop()
    return out


def differences(sqlite: Store, clickhouse: Store, data: DataSet) -> list[str]:
    """The calls (3 draws each) and routes whose answers differ on the two stores."""
    out: list[str] = []
    for name, call in store_calls(data).items():
        if any(call(sqlite, random.Random(i)) != call(clickhouse, random.Random(i))
               for i in range(3)):
            out.append(name)
    server_a, server_b = JaegerServer(sqlite), JaegerServer(clickhouse)
    try:
        for name, route in http_calls(data).items():
            path, params = route(random.Random(1))
            a = httpx.get(server_a.base + path, params=params, timeout=300,
                          trust_env=False).json()
            b = httpx.get(server_b.base + path, params=params, timeout=300,
                          trust_env=False).json()
            if a != b:
                out.append(name)
    finally:
        server_a.stop()
        server_b.stop()
    return out


def report(title: str, sqlite: dict[str, list[float]], clickhouse: dict[str, list[float]]
           ) -> bool:
    print(f"\n== {title} (ms; target: ClickHouse p95 <= {TARGET_MS:.0f} ms)")
    print(f"{'':<34} {'SQLite p50':>10} {'p95':>7} {'ClickHouse p50':>15} {'p95':>7}"
          f" {'CH/SQLite':>10} {'target':>7}")
    ok = True
    for name, s in sqlite.items():
        c = clickhouse[name]
        s95, c95 = pct(s, 95), pct(c, 95)
        ok = ok and c95 <= TARGET_MS
        print(f"{name:<34} {pct(s, 50):>10.1f} {s95:>7.1f} {pct(c, 50):>15.1f} {c95:>7.1f}"
              f" {c95 / max(s95, 1e-3):>10.1f} {'ok' if c95 <= TARGET_MS else 'MISS':>7}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 spans, 10 samples")
    parser.add_argument("--spans", type=int, default=None, help="spans to store")
    parser.add_argument("--samples", type=int, default=None, help="runs per query (20)")
    parser.add_argument("--keep", type=Path, default=None,
                        help="fill this directory once and reuse the fill in later runs")
    args = parser.parse_args()
    spans = args.spans or (100_000 if args.quick else 1_000_000)
    samples = args.samples or (10 if args.quick else 20)
    data = DataSet(spans)
    with tempfile.TemporaryDirectory(prefix="bench-ch-traces-") as tmp:
        directory = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        server, sqlite, clickhouse = open_stores(directory, data)
        try:
            print(f"{spans:,} spans, {len(data.trace_ids):,} traces ({SPANS_PER_TRACE} spans"
                  f" each), {len(data.sessions):,} sessions, {len(data.users):,} users;"
                  f" {samples} runs per query", flush=True)
            differ = differences(sqlite, clickhouse, data)
            print("answers equal on both stores" if not differ else
                  "ANSWERS DIFFER on the two stores: " + ", ".join(differ), flush=True)
            calls = store_calls(data)
            ok = report("store API (store.read() + TraceReader)",
                        time_store(sqlite, calls, samples),
                        time_store(clickhouse, calls, samples))
            ok = report("Jaeger routes over HTTP", time_http(sqlite, data, samples),
                        time_http(clickhouse, data, samples)) and ok
        finally:
            sqlite.close()
            clickhouse.close()
            server.stop()
    if differ:
        print("FAIL: answers differ: " + ", ".join(differ))
        return 1
    print("PASS" if ok else "FAIL: a ClickHouse p95 above the target")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
