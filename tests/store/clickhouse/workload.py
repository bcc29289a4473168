"""The workload of the ClickHouse tests: tasks over many users and sessions, each task a
trace with a child span in another service; tasks logged again (later, earlier, in another
session or none); feedback before and after its task, and on tasks never logged; spans
shuffled into requests of random sizes, some overlapping the previous one (a retry), one
request sent twice."""

from __future__ import annotations

import random

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.support.otlp import BASE_NS, SEC, Batch, feedback_span, make_span, request_of, task_span

__all__ = ["DAY", "TASKS", "USERS", "workload"]

DAY = 86_400 * SEC
TASKS = 3000
USERS = 150


def workload(seed: int, tasks_n: int = TASKS, users_n: int = USERS
             ) -> tuple[list[ExportTraceServiceRequest], dict[str, list[str]]]:
    """The requests, in delivery order, and ids to look up (sessions, users, tasks)."""
    rng = random.Random(seed)
    spans: list[tuple[str, Span]] = []  # (service, span)
    sessions: list[tuple[str, str | None, int]] = []
    for u in range(users_n):
        for s in range(rng.randint(1, 4)):
            sessions.append((f"s{u}-{s}", f"user{u:03d}" if u % 20 else None,
                             BASE_NS + rng.randrange(10 * DAY)))
    tasks: list[Span] = []
    for i in range(tasks_n):
        session_id: str | None
        session_id, user_id, start = rng.choice(sessions)
        if i % 10 == 0:
            session_id = None
        task_start = start + rng.randrange(3600 * SEC)
        task = task_span(f"t{i:04d}", session_id=session_id, user_id=user_id,
                         input=rng.choice(["hello", "help", "bye", f"q{i}"]),
                         output=None if i % 17 == 0 else f"a{i}", start_ns=task_start,
                         end_ns=task_start + rng.randrange(1, 30 * SEC),
                         status_code=2 if i % 9 == 0 else 1, metadata={"n": i % 5}, rng=rng)
        tasks.append(task)
        spans.append(("app", task))
        spans.append(("llm", make_span(
            {"llm.model": rng.choice(["gpt-a", "gpt-b"]), "session.id": session_id or ""},
            trace_id=task.trace_id, parent_span_id=task.span_id, name="llm.call",
            kind=Span.SPAN_KIND_CLIENT, start_ns=task_start + 1000,
            end_ns=task_start + rng.randrange(2000, 10 * SEC), rng=rng)))
    for i in rng.sample(range(tasks_n), tasks_n // 20):  # logged again: later, earlier, elsewhere
        old = tasks[i]
        session_id, user_id, start = rng.choice(sessions)
        later = rng.random() < 0.8
        end = old.end_time_unix_nano + (SEC if later else -1)
        spans.append(("app", task_span(
            f"t{i:04d}", session_id=session_id if rng.random() < 0.5 else None,
            user_id=user_id, input=f"again {i}", output="redone",
            # one ns later: no two traces start at once (search order among ties is open)
            start_ns=old.start_time_unix_nano + 1, end_ns=max(end, old.start_time_unix_nano + 1),
            rng=rng)))
    for _ in range(tasks_n * 3 // 10):
        i = rng.randrange(tasks_n + 20)  # a few about tasks never logged
        spans.append(("app", feedback_span(
            f"t{i:04d}", rng.choice(["success", "failure"]),
            time_ns=BASE_NS + rng.randrange(11 * DAY), notes=rng.choice([None, "ok", "bad"]),
            source=rng.choice(["user", "owner"]), rng=rng)))
    rng.shuffle(spans)
    requests = []
    i = 0
    while i < len(spans):
        n = rng.randint(1, 600)
        chunk = spans[i : i + n]
        if rng.random() < 0.25:  # a retry overlapping the previous request
            chunk = chunk + spans[max(0, i - rng.randint(1, 100)) : i]
        by_service: dict[str, list[Span]] = {}
        for service, span in chunk:
            by_service.setdefault(service, []).append(span)
        requests.append(request_of([Batch(svc, ss, resource={"host.name": f"h-{svc}"})
                                    for svc, ss in sorted(by_service.items())]))
        i += n
    requests.append(requests[len(requests) // 2])  # one whole request again
    ids = {
        "sessions": [*(s for s, _, _ in rng.sample(sessions, min(25, len(sessions)))),
                     "missing"],
        "users": [*(f"user{u:03d}" for u in rng.sample(range(users_n), min(20, users_n))),
                  "missing"],
        "tasks": [f"t{i:04d}" for i in rng.sample(range(tasks_n + 20), min(40, tasks_n))],
    }
    return requests, ids
