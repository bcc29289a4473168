"""The store oracle: what a store must hold after a set of export requests, computed in
plain Python from the requests alone (``expected_state``), and what a store does hold, read
through the store API only (``read_state``). ``check_store`` compares them: any backend,
any arrival order, any number of deliveries must give ``expected_state``.

The rules restated here are the store API's contracts (``store.api``): a span counts once
by (trace id, span id); a task id keeps its version with the latest (end, span id); a
task's flag is its latest feedback by (time, trace id, span id). The rollups come from
``model.rollup`` — the one definition of the merge rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from phospho_otel.aggregator.extract import extract
from phospho_otel.model.records import FeedbackRecord, TaskFeedback, TaskRecord
from phospho_otel.model.rollup import SessionRollup, UserRollup, rollup
from phospho_otel.store.api import (
    Page,
    SessionFilter,
    Store,
    StoreWriter,
    TaskFilter,
    TaskRow,
    UserFilter,
    WriteResult,
)

__all__ = ["State", "check_store", "expected_state", "read_state", "write"]


def write(store: StoreWriter, *requests: ExportTraceServiceRequest) -> list[WriteResult]:
    """Write each request in its own transaction, as the aggregator would."""
    return [store.write([extract(r)])[0] for r in requests]


@dataclass
class State:
    """The views' data: tasks (with feedback and position), sessions and users."""

    tasks: dict[str, TaskRow] = field(default_factory=dict)
    sessions: dict[str, SessionRollup] = field(default_factory=dict)
    users: dict[str, UserRollup] = field(default_factory=dict)


def expected_state(requests: Iterable[ExportTraceServiceRequest]) -> State:
    """What a store must hold after receiving ``requests``, in any order, any number of
    times."""
    tasks: dict[tuple[bytes, bytes], TaskRecord] = {}
    feedback: dict[tuple[bytes, bytes], FeedbackRecord] = {}
    for request in requests:
        x = extract(request)
        for t in x.tasks:
            tasks.setdefault((t.trace_id, t.span_id), t)
        for f in x.feedback:
            feedback.setdefault((f.trace_id, f.span_id), f)
    latest: dict[str, TaskRecord] = {}
    for t in tasks.values():
        seen = latest.get(t.task_id)
        if seen is None or (t.end_ns, t.span_id) > (seen.end_ns, seen.span_id):
            latest[t.task_id] = t
    flags: dict[str, FeedbackRecord] = {}
    for f in feedback.values():
        seen_f = flags.get(f.task_id)
        if seen_f is None or (f.time_ns, f.trace_id, f.span_id) > (
                seen_f.time_ns, seen_f.trace_id, seen_f.span_id):
            flags[f.task_id] = f
    roll = rollup(latest.values(), {k: f.flag for k, f in flags.items() if k in latest})
    state = State()
    for session_id, values in roll.sessions.items():
        state.sessions[session_id] = SessionRollup(session_id, *values)
    owned: dict[str, int] = {}
    for s in state.sessions.values():
        if s.user_id is not None:
            owned[s.user_id] = owned.get(s.user_id, 0) + 1
    for user_id, values in roll.users.items():
        u = UserRollup(user_id, *values)
        state.users[user_id] = u._replace(session_count=owned.get(user_id, 0))
    by_session: dict[str, list[TaskRecord]] = {}
    for t in latest.values():
        if t.session_id is not None:
            by_session.setdefault(t.session_id, []).append(t)
    positions: dict[str, tuple[int, bool]] = {}
    for members in by_session.values():
        members.sort(key=lambda t: (t.start_ns, t.task_id))
        for i, t in enumerate(members):
            positions[t.task_id] = (i + 1, i + 1 == len(members))
    for task_id, t in latest.items():
        flag = flags.get(task_id)
        task_feedback = (
            TaskFeedback(flag.flag, flag.time_ns, flag.notes, flag.source) if flag else None
        )
        position, is_last = positions.get(task_id, (None, None))
        state.tasks[task_id] = TaskRow(t, task_feedback, position, is_last)
    return state


def _pages(fetch: Any, sort: str) -> list[Any]:
    items: list[Any] = []
    cursor = None
    while True:
        listing = fetch(Page(sort, descending=False, limit=997, cursor=cursor))
        items.extend(listing.items)
        if listing.next_cursor is None:
            return items
        cursor = listing.next_cursor


def read_state(store: Store) -> State:
    """What ``store`` holds, read page by page through the store API."""
    state = State()
    with store.read() as reader:
        for t in _pages(lambda p: reader.list_tasks(TaskFilter(), p), "start_time"):
            state.tasks[t.task.task_id] = t
        for s in _pages(lambda p: reader.list_sessions(SessionFilter(), p), "session_id"):
            state.sessions[s.session_id] = s
        for u in _pages(lambda p: reader.list_users(UserFilter(), p), "user_id"):
            state.users[u.rollup.user_id] = u.rollup
    return state


def _differences(name: str, want: dict[str, Any], got: dict[str, Any]) -> list[str]:
    out = [f"{name} {k!r}: missing" for k in want.keys() - got.keys()]
    out += [f"{name} {k!r}: unexpected" for k in got.keys() - want.keys()]
    for k in want.keys() & got.keys():
        if want[k] != got[k]:
            fields = [f"{f}={a!r} (want {b!r})" for f, a, b in
                      zip(want[k]._fields, got[k], want[k], strict=True) if a != b]
            out.append(f"{name} {k!r}: {', '.join(fields)}")
    return out


def check_store(store: Store, requests: Sequence[ExportTraceServiceRequest]) -> State:
    """Assert that ``store`` holds exactly ``expected_state(requests)``; returns it."""
    want = expected_state(requests)
    got = read_state(store)
    problems = (_differences("task", want.tasks, got.tasks)
                + _differences("session", want.sessions, got.sessions)
                + _differences("user", want.users, got.users))
    assert not problems, "\n".join(problems[:20])
    return want
