"""The ClickHouse store's view and insight reads at scale: each ``ViewReader`` /
``InsightReader`` method's p50 / p95 computed live from every task version (the rollups
off: the reads before stored rollups) and from the stored rollups (``rollup_store``),
measured in the same run on the same database.

    .venv/bin/python benchmarks/bench_clickhouse_views.py                 # 1,000,000 spans
    .venv/bin/python benchmarks/bench_clickhouse_views.py --spans 50000   # a quick run
    .venv/bin/python benchmarks/bench_clickhouse_views.py --port 9000 --database bench \\
        --no-fill                                                          # a filled store

The data is ``bench_scaleout``'s (traces of four spans, 10 tasks per session, 5 sessions
per user, a feedback span on one task in eight), extracted in this process and written
through the store's own ``write`` in batches of ``--batch`` spans, on Debian's ClickHouse
18.16 server started on free ports of 127.0.0.1 (``tests/support/clickhouse.py``) unless
``--port`` names one. Each timed call opens its own reader (``store.read()``), as one HTTP
request does. After the fill (or with ``--no-fill``) the rollups are folded
(``ClickHouseStore.refresh_rollups``), then each method is timed ``--runs`` times with the
rollups off (``rollups=False``: today's live SQL) and on, alternately per method. Printed:
p50 / p95 ms of both, the ratio, and whether the p95 meets the 100 ms target.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support

from bench_scaleout import SESSIONS_PER_USER, build_data

from phospho_otel.aggregator.extract import extract
from phospho_otel.receiver.decode import parse_protobuf
from phospho_otel.store.api import Page, SessionFilter, StoreReader, TaskFilter, UserFilter
from phospho_otel.store.clickhouse import ClickHouseStore
from tests.support.clickhouse import ClickHouseServer

TARGET_MS = 100.0

Call = Callable[[StoreReader, random.Random], Any]


def calls(sessions: int, users: int) -> dict[str, Call]:
    """The timed reads, each on a random session or user of the data."""
    def sid(rng: random.Random) -> str:
        return f"session-{rng.randrange(sessions):06d}"

    def uid(rng: random.Random) -> str:
        return f"user-{rng.randrange(users):05d}"

    every = SessionFilter()
    everyone = UserFilter()
    return {
        "list_sessions start_time": lambda r, g: r.list_sessions(every, Page("start_time")),
        "list_sessions task_count": lambda r, g: r.list_sessions(every, Page("task_count")),
        "list_sessions of a user": lambda r, g: r.list_sessions(
            SessionFilter(user_id=uid(g)), Page("start_time")),
        "get_session": lambda r, g: r.get_session(sid(g)),
        "session_tasks": lambda r, g: r.session_tasks(sid(g), 50),
        "list_users last_seen": lambda r, g: r.list_users(everyone, Page("last_seen")),
        "list_users task_count": lambda r, g: r.list_users(everyone, Page("task_count")),
        "get_user": lambda r, g: r.get_user(uid(g)),
        "user_sessions": lambda r, g: r.user_sessions(uid(g), 20),
        "user_tasks": lambda r, g: r.user_tasks(uid(g), 20),
        "user_activity": lambda r, g: r.user_activity(uid(g)),
        "list_tasks start_time": lambda r, g: r.list_tasks(TaskFilter(), Page("start_time")),
        "list_tasks of a session": lambda r, g: r.list_tasks(TaskFilter(session_id=sid(g)),
                                                             Page("start_time")),
        "get_task": lambda r, g: r.get_task(f"task-{g.randrange(sessions * 10):07d}"),
        "session_totals": lambda r, g: r.session_totals(every),
        "session_lengths": lambda r, g: r.session_lengths(every),
        "session_durations_at": lambda r, g: r.session_durations_at(every, [1, 50, 90]),
        "session_duration_counts": lambda r, g: r.session_duration_counts(
            every, [0, 10**9, 60 * 10**9, 3600 * 10**9]),
        "sessions_per_day": lambda r, g: r.sessions_per_day(every),
        "session_endings": lambda r, g: r.session_endings(every),
        "user_totals": lambda r, g: r.user_totals(everyone),
        "user_task_counts": lambda r, g: r.user_task_counts(everyone),
        "top_users": lambda r, g: r.top_users(everyone, 10),
    }


def fill(store: ClickHouseStore, spans: int, batch: int) -> tuple[int, int]:
    """Write ``bench_scaleout``'s data set; returns (sessions, users)."""
    data = build_data(spans, batch)
    started = time.perf_counter()
    for body in data.bodies:
        store.write([extract(parse_protobuf(body))])
    elapsed = time.perf_counter() - started
    print(f"filled {data.spans:,} spans ({data.sessions:,} sessions, {data.users:,} users)"
          f" in {elapsed:.1f} s ({data.spans / elapsed:,.0f} spans/s)", flush=True)
    return data.sessions, data.users


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed(store: ClickHouseStore, call: Call, runs: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        with store.read() as reader:
            call(reader, rng)
        out.append((time.perf_counter() - started) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=5000, help="spans per write")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--port", type=int, help="an already running server's native port")
    parser.add_argument("--database", default="bench_views")
    parser.add_argument("--no-fill", action="store_true", help="the database is filled")
    parser.add_argument("--only", help="time only the calls whose name contains this")
    args = parser.parse_args()

    server = None
    port = args.port
    if port is None:
        server = ClickHouseServer(Path(tempfile.mkdtemp(prefix="bench-ch-views-")))
        port = server.port
    try:
        store = ClickHouseStore("127.0.0.1", port, args.database)
        live = ClickHouseStore("127.0.0.1", port, args.database, rollups=False)
        try:
            if args.no_fill:
                tasks = args.spans * 8 // 33
                sessions, users = tasks // 10, tasks // 10 // SESSIONS_PER_USER
            else:
                sessions, users = fill(store, args.spans, args.batch)
            started = time.perf_counter()
            store.refresh_rollups()
            print(f"rollups folded in {time.perf_counter() - started:.1f} s", flush=True)
            print(f"\n{'p50 / p95 ms':<28}{'live (before)':>16}{'rollups':>16}"
                  f"{'p95 ratio':>11}  target {TARGET_MS:.0f} ms")
            for i, (name, call) in enumerate(calls(sessions, users).items()):
                if args.only and args.only not in name:
                    continue
                timed(store, call, 2, i)  # warm up both
                timed(live, call, 2, i)
                before = timed(live, call, args.runs, i)
                after = timed(store, call, args.runs, i)
                b50, b95, a50, a95 = (_pct(before, 0.5), _pct(before, 0.95),
                                      _pct(after, 0.5), _pct(after, 0.95))
                verdict = "ok" if a95 <= TARGET_MS else "MISSED"
                print(f"{name:<28}{b50:>7.1f} /{b95:>7.1f}{a50:>7.1f} /{a95:>7.1f}"
                      f"{b95 / a95:>10.1f}x  {verdict}", flush=True)
        finally:
            store.close()
            live.close()
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
