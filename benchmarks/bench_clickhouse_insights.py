"""The insights endpoints' reads on ClickHouse against SQLite, on the differential test's
workload (``tests/store/clickhouse/workload``: 3,000 tasks, 150 users, feedback, tasks
logged again, retries) after the analyzer has run over each store, measured in the same
run: p50 / p95 of each endpoint's store reads (the insights cache left out), and the
ClickHouse / SQLite ratio.

    .venv/bin/python benchmarks/bench_clickhouse_insights.py [--tasks 3000] [--runs 10]

Needs Debian's ``clickhouse-server`` (18.16; started on free ports, as the tests do).
The machine is shared and noisy (2 cores): compare the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from phospho_otel.aggregator.extract import extract
from phospho_otel.insights import session_insights, user_insights
from phospho_otel.insights.analyzer import Analyzer
from phospho_otel.insights.config import InsightsConfig
from phospho_otel.insights.sessions import session_outcomes
from phospho_otel.insights.users import user_class_counts, user_retention
from phospho_otel.store import open_store
from phospho_otel.store.api import (
    Page,
    SessionFilter,
    Store,
    StoreReader,
    TaskFilter,
    UserFilter,
)
from tests.store.clickhouse.workload import DAY, workload
from tests.support.clickhouse import open_clickhouse_store
from tests.support.otlp import BASE_NS


def _users_insights(r: StoreReader) -> Any:
    figures = user_insights(r)
    return figures, user_class_counts(r), r.user_analyses(
        u.rollup.user_id for u in figures.top_users)


ENDPOINTS: dict[str, Callable[[StoreReader], Any]] = {
    "/api/insights/sessions": lambda r: (session_insights(r), session_outcomes(r)),
    "/api/insights/users": _users_insights,
    "/api/insights/retention": user_retention,
    "/api/events": lambda r: r.event_days(),
    "/api/sessions?state=ended": lambda r: r.list_sessions(SessionFilter(state="ended"),
                                                           Page("start_time")),
    "/api/tasks?evaluation=failure": lambda r: r.list_tasks(TaskFilter(evaluation="failure"),
                                                            Page("start_time")),
    "/api/users?class=power": lambda r: r.list_users(UserFilter(user_class="power"),
                                                     Page("last_seen")),
    "/api/users?sort=success_rate": lambda r: r.list_users(UserFilter(), Page("success_rate")),
}
"""Each endpoint's store reads (``api.views``), without the insights cache."""


def _fill(store: Store, tasks: int) -> float:
    """Write the workload (four requests per write) and analyse it; the analyzer's s."""
    requests, _ = workload(13, tasks, max(10, tasks // 20))
    extractions = [extract(r) for r in requests]
    for i in range(0, len(extractions), 4):
        store.write(extractions[i:i + 4])
    analyzer = Analyzer(store, InsightsConfig(), classify_every_s=3600,
                        clock=lambda: BASE_NS + 40 * DAY)
    started = time.perf_counter()
    while analyzer.run_once():
        pass
    analyzer._classify_if_due(BASE_NS + 40 * DAY, force=True)
    return time.perf_counter() - started


def _timings(store: Store, runs: int) -> dict[str, tuple[float, float]]:
    out = {}
    for name, read in ENDPOINTS.items():
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            with store.read() as r:
                read(r)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        out[name] = (statistics.median(times), p95)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        sqlite = open_store(str(Path(directory) / "s.db"))
        clickhouse = open_clickhouse_store("bench_insights")
        try:
            analysed = {"sqlite": _fill(sqlite, args.tasks),
                        "clickhouse": _fill(clickhouse, args.tasks)}
            base, other = _timings(sqlite, args.runs), _timings(clickhouse, args.runs)
        finally:
            sqlite.close()
            clickhouse.close()
    print(f"{args.tasks} tasks; analyzer: SQLite {analysed['sqlite']:.1f} s,"
          f" ClickHouse {analysed['clickhouse']:.1f} s"
          f" ({analysed['clickhouse'] / analysed['sqlite']:.1f}x)")
    print(f"{'endpoint (store reads)':34} {'SQLite p50/p95 ms':>18} {'ClickHouse p50/p95':>19}"
          f" {'p95 ratio':>9}")
    for name in ENDPOINTS:
        (a50, a95), (b50, b95) = base[name], other[name]
        print(f"{name:34} {a50:8.1f} /{a95:7.1f} {b50:9.1f} /{b95:7.1f} {b95 / a95:8.0f}x")


if __name__ == "__main__":
    main()
