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
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

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
from phospho_otel.insights.sessions import quantile_ranks, session_outcomes
from phospho_otel.insights.users import user_class_counts, user_retention
from phospho_otel.model.analysis import (
    DetectedEvent,
    Evaluation,
    Sentiment,
    SessionAnalysis,
    TaskAnalysis,
    UserAnalysis,
    UserClass,
)
from phospho_otel.model.records import Extraction, FeedbackRecord, TaskRecord
from phospho_otel.server import AggregatorServer, ServerSettings
from phospho_otel.store import open_store
from phospho_otel.store.api import (
    AnalysisStore,
    AnalysisUpdate,
    Page,
    SessionFilter,
    Store,
    TaskFilter,
    UserFilter,
)

T = TypeVar("T")
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


# ----------------------------------------------------------------------- analyses

RARE_EVENT = "prompt_injection"
"""The rare event: on about 0.01% of the tasks."""
_COMMON_EVENTS = (("thanks", 40), ("goodbye", 20), ("frustration", 15), ("refusal", 12),
                  ("human_request", 8), ("abuse", 5))
"""The other default events and their weights among the ~15% of tasks with events."""
_END_REASONS = (("resolved", 45), ("abandoned_after_failure", 18), ("abandoned_after_error", 8),
                ("frustrated", 9), ("explicit", 12), ("other", 8))
_CLASS_SHARES = (("power", 0.05), ("struggling", 0.05), ("abusive", 0.01), ("dormant", 0.10),
                 ("new", 0.10))
_LANGUAGES = (("en", 80), ("fr", 8), ("es", 5), ("de", 4), (None, 3))
_HEURISTIC = {
    "success": (("heuristic:answered", 0.6, "the task has an answer, and nothing says it"
                 " failed"), ("heuristic:thanks", 0.9, "the next input thanks the assistant")),
    "failure": (("heuristic:refusal", 0.15, "refusal in the output"),
                ("heuristic:rephrase", 0.3, "the next input rephrases the question"),
                ("heuristic:complaint", 0.15, "the next input complains")),
    "unknown": (("heuristic:none", 0.5, "no evaluator could tell"),),
}
ANALYSIS_TASKS = 20_000
"""Task analyses per ``store.write_analysis`` when building the data set (whole sessions)."""


def _pick(rng: random.Random, weighted: Sequence[tuple[T, int]]) -> T:
    return rng.choices([v for v, _ in weighted], [w for _, w in weighted])[0]


def _task_analysis(rng: random.Random, task: TaskRecord, flag: str | None,
                   position: int) -> TaskAnalysis:
    """A task's analysis: its feedback's label if it has one (as the pipeline would), else
    ~70% success, 20% failure, 10% unknown; events on ~15% of the tasks (1 or 2 of the
    default names) and the rare one on ~0.01%; a sentiment and a language."""
    if flag is not None:
        evaluation = Evaluation(flag, 1.0 if flag == "success" else 0.0, "user_feedback",
                                f"the user said {flag}")
    elif task.status == "error":
        evaluation = Evaluation("failure", 0.05, "heuristic:error",
                                "the task ended with an error")
    else:
        r = rng.random()
        label = "success" if r < 0.70 else ("failure" if r < 0.90 else "unknown")
        source, score, reason = rng.choice(_HEURISTIC[label])
        evaluation = Evaluation(label, score, source, reason)
    names: list[str] = []
    if rng.random() < 0.15:
        names.append(_pick(rng, _COMMON_EVENTS))
        if rng.random() < 0.2:
            other = _pick(rng, _COMMON_EVENTS)
            if other not in names:
                names.append(other)
    if rng.random() < 0.0001:
        names.append(RARE_EVENT)
    events = tuple(DetectedEvent(n, "keywords", 1.0, "input") for n in names)
    r = rng.random()
    sentiment = (Sentiment(round(rng.uniform(0.05, 1), 3), "positive") if r < 0.2 else
                 Sentiment(round(rng.uniform(-1, -0.05), 3), "negative") if r < 0.35 else
                 Sentiment(0.0, "neutral"))
    return TaskAnalysis(task.task_id, task.session_id, task.user_id, task.start_ns, position,
                        evaluation, events, sentiment, _pick(rng, _LANGUAGES), task.end_ns + SEC)


def _session_analysis(rng: random.Random, tasks: Sequence[TaskRecord],
                      analyses: Sequence[TaskAnalysis]) -> SessionAnalysis:
    """~90% ended (30 minutes after the last task, end reasons spread), the rest active."""
    first, last = tasks[0], tasks[-1]
    counts: dict[str, int] = {}
    for a in analyses:
        for e in a.events:
            counts[e.name] = counts.get(e.name, 0) + 1
    active = sum(t.end_ns - t.start_ns for t in tasks) + sum(
        min(b.start_ns - a.end_ns, 300 * SEC) for a, b in itertools.pairwise(tasks)
        if b.start_ns > a.end_ns)
    if rng.random() >= 0.9:
        return SessionAnalysis(first.session_id or "", first.user_id, "active", None, None, (),
                               active, None, counts, last.end_ns + SEC)
    reason = _pick(rng, _END_REASONS)
    ok = reason in ("resolved", "explicit")
    evaluation = Evaluation("success" if ok else "failure", 0.8 if ok else 0.2,
                            "heuristic:session", f"the session ended {reason}")
    ended = last.end_ns + 1800 * SEC
    return SessionAnalysis(first.session_id or "", first.user_id, "ended", ended, reason,
                           (f"ended {reason}: last task {last.task_id}",), active, evaluation,
                           counts, ended)


def _user_analyses(rng: random.Random, n_users: int) -> list[UserAnalysis]:
    """Every user's classes: each class on its share of the users (independently, so a
    user can have several), with a reason in words."""
    out = []
    for u in range(n_users):
        classes = tuple(UserClass(label, (f"{label}: synthetic, {share:.0%} of users",))
                        for label, share in _CLASS_SHARES if rng.random() < share)
        out.append(UserAnalysis(f"user-{u:05d}", classes, {}, 0, 0, BASE_NS))
    return out


def _analysis_updates(n_tasks: int, n_sessions: int, n_users: int,
                      seed: int) -> Iterator[AnalysisUpdate]:
    """The analyses of the data set (``session_records``' tasks, same seed), about
    ``ANALYSIS_TASKS`` tasks per update, then every user's classes."""
    rng = random.Random(seed + 1000)
    tasks: list[TaskAnalysis] = []
    sessions: list[SessionAnalysis] = []
    for session_tasks, session_feedback in session_records(
        n_sessions, n_users, n_tasks // n_sessions, seed
    ):
        flags = {f.task_id: f.flag for f in session_feedback}
        analyses = [_task_analysis(rng, t, flags.get(t.task_id), k + 1)
                    for k, t in enumerate(session_tasks)]
        tasks += analyses
        sessions.append(_session_analysis(rng, session_tasks, analyses))
        if len(tasks) >= ANALYSIS_TASKS:
            yield AnalysisUpdate(tasks, sessions)
            tasks, sessions = [], []
    if tasks:
        yield AnalysisUpdate(tasks, sessions)
    yield AnalysisUpdate(users=_user_analyses(rng, n_users))


def populate(path: Path, n_tasks: int, n_sessions: int, n_users: int, seed: int = 1) -> None:
    """Write the synthetic data set into a fresh store at ``path``, through its write
    path (``synchronous=NORMAL``: a benchmark's scratch file need not survive a power
    loss), then its analyses (``populate_analyses``)."""
    store = open_store(str(path), synchronous="NORMAL")
    try:
        write_data_set(store, _extractions(n_tasks, n_sessions, n_users, seed))
        populate_analyses(store, n_tasks, n_sessions, n_users, seed)
    finally:
        store.close()


def populate_analyses(store: Store, n_tasks: int, n_sessions: int, n_users: int,
                      seed: int = 1) -> None:
    """Write the data set's analyses through ``store.write_analysis`` (as the analyzer
    would, without running its evaluators: ~2,000 tasks/s would take minutes per 100,000
    tasks), then mark every task analysed (the analyzer's token), so that the server's
    analyzer only takes the tasks written after."""
    assert isinstance(store, AnalysisStore)
    for update in _analysis_updates(n_tasks, n_sessions, n_users, seed):
        store.write_analysis(update)
    while True:
        with store.read() as reader:
            pending = reader.pending_analysis(100_000)
        if not pending.tasks and not pending.session_ids:
            return
        store.write_analysis(AnalysisUpdate(token=pending.token))


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


def _has_analyses(path: Path) -> bool:
    """Whether the store at ``path`` holds the data set's first task's analysis."""
    store = open_store(str(path), read_only=True)
    try:
        with store.read() as reader:
            return bool(reader.task_analyses(["task-0000000"]))
    finally:
        store.close()


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
                ("session_outcomes (whole)", lambda: session_outcomes(reader)),
                ("  end reasons + examples", lambda: reader.end_reasons(everything, 5)),
                ("  active durations (ended)", lambda: reader.active_durations(everything)),
                ("user_class_counts", lambda: user_class_counts(reader)),
                ("user_retention (whole)", lambda: user_retention(reader)),
                ("  user days", reader.user_days),
                ("event days (/api/events)", reader.event_days),
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
        print(f"data set written through store.write and store.write_analysis in"
              f" {time.perf_counter() - t0:.1f} s")
    elif not _has_analyses(path):  # a file from before the analyses: add them
        t0 = time.perf_counter()
        store = open_store(str(path), synchronous="NORMAL")
        try:
            populate_analyses(store, n_tasks, n_sessions, n_users)
        finally:
            store.close()
        print(f"analyses written through store.write_analysis in"
              f" {time.perf_counter() - t0:.1f} s")
    open_store(str(path), synchronous="NORMAL").close()  # as a server would: add new indexes
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
        # the analyses' filters and figures (issue 11)
        ("GET /api/sessions?state=ended", lambda: ("/api/sessions", {"state": "ended"})),
        ("GET /api/sessions?state=active", lambda: ("/api/sessions", {"state": "active"})),
        ("GET /api/sessions?end_reason=frustrated",
         lambda: ("/api/sessions", {"end_reason": "frustrated"})),
        ("GET /api/users?class=power", lambda: ("/api/users", {"class": "power"})),
        ("GET /api/users?class=struggling", lambda: ("/api/users", {"class": "struggling"})),
        ("GET /api/tasks?event=thanks", lambda: ("/api/tasks", {"event": "thanks"})),
        (f"GET /api/tasks?event={RARE_EVENT} (rare)",
         lambda: ("/api/tasks", {"event": RARE_EVENT})),
        ("GET /api/tasks?evaluation=failure", lambda: ("/api/tasks", {"evaluation": "failure"})),
        ("GET /api/events", lambda: ("/api/events", {})),
        ("GET /api/insights/retention", lambda: ("/api/insights/retention", {})),
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
                                      "GET /api/insights/users", "GET /api/sessions",
                                      "GET /api/sessions?state=active",
                                      "GET /api/users?class=power",
                                      "GET /api/tasks?evaluation=failure", "GET /api/events",
                                      "GET /api/insights/retention")]
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
