"""Per-batch session and user rollups of task records. Pure functions, no I/O.

A batch of brand-new tasks is rolled up per session and per user following the merge
rules of ``phospho_otel.store.schema`` (counts add, min/max times, first/last task by
``(start_ns, task_id)``, a session's user is the smallest user id among its tasks); the
store then merges each partial row into its table with one upsert.

``extract`` computes the rollup of a request's tasks (assuming every task is new and
has no feedback yet, the common case) in the receiving thread, so that the store's
single writer thread only has to merge it; the store recomputes it itself when the
assumption does not hold (a task seen before, a span delivered twice, earlier feedback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

__all__ = ["Rollup", "SessionAgg", "UserAgg", "rollup"]

SessionAgg = list[Any]
"""``[user_id, task_count, start_ns, end_ns, first_task_id, first_start_ns, first_input,
last_task_id, last_start_ns, last_input, last_output, last_status, success_count,
failure_count, error_count, last_flag]``: a ``sessions`` row without its id and in column
order (``last_flag`` is the flag of the last task, from ``flags``)."""

UserAgg = list[Any]
"""``[task_count, session_count, first_seen_ns, last_seen_ns, success_count,
failure_count, error_count]``: a ``users`` row without its id (``session_count`` is 0
here: the store counts a session for its user once it knows the session is new)."""


class Rollup(NamedTuple):
    """Partial ``sessions`` and ``users`` rows of a batch of new tasks, by id. Treat as
    read-only: the same rollup may be merged again if a write is retried."""

    sessions: dict[str, SessionAgg]
    users: dict[str, UserAgg]


def rollup(tasks: Iterable[Any], flags: Mapping[str, Any] | None = None) -> Rollup:
    """The rollup of ``tasks`` (``TaskRecord``s, each task id once). ``flags`` maps a task
    id to its latest feedback, a tuple whose first item is the flag (``success`` or
    ``failure``); tasks without feedback count for neither.

    Plain lists and tuple unpacking: this loop runs once per task."""
    sessions: dict[str, SessionAgg] = {}
    users: dict[str, UserAgg] = {}
    for (
        task_id, _, _, session_id, user_id, _, _, _, input_, output, _, _, _, start, end,
        status,
    ) in tasks:
        ok = ko = 0
        flag = None
        if flags:
            fb = flags.get(task_id)
            if fb is not None:
                flag = fb[0]
                ok = flag == "success"
                ko = flag == "failure"
        err = status == "error"
        if user_id is not None:
            u = users.get(user_id)
            if u is None:
                users[user_id] = [1, 0, start, end, ok, ko, err]
            else:
                u[0] += 1
                if start < u[2]:
                    u[2] = start
                if end > u[3]:
                    u[3] = end
                u[4] += ok
                u[5] += ko
                u[6] += err
        if session_id is None:
            continue
        s = sessions.get(session_id)
        if s is None:
            sessions[session_id] = [
                user_id, 1, start, end, task_id, start, input_,
                task_id, start, input_, output, status, ok, ko, err, flag,
            ]
            continue
        if user_id is not None and (s[0] is None or user_id < s[0]):
            s[0] = user_id
        s[1] += 1
        if start < s[2]:
            s[2] = start
        if end > s[3]:
            s[3] = end
        if start < s[5] or (start == s[5] and task_id < s[4]):
            s[4], s[5], s[6] = task_id, start, input_
        if start > s[8] or (start == s[8] and task_id > s[7]):
            s[7], s[8], s[9], s[10], s[11] = task_id, start, input_, output, status
            s[15] = flag
        s[12] += ok
        s[13] += ko
        s[14] += err
    return Rollup(sessions, users)
