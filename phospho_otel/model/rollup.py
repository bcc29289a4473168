"""Session and user rollups, and their merge rules: defined once, here.

A **session** rollup sums up the tasks of one session, a **user** rollup the tasks of one
user. Rollups *merge*: any two partial rollups of the same id combine into the rollup of
all their tasks, whatever the order they were made in, so that spans arriving in any
order, any number of times, through any replica, give the same rows. Each column has one
rule (``SESSION_RULES``, ``USER_RULES``), a ``Merge`` kind over what each task
contributes (``Rule.source``):

* ``SUM``: counts add;
* ``MIN`` / ``MAX``: the smallest / largest non-null value (a session's ``user_id`` is
  the smallest user id among its tasks; tasks without a user do not count);
* ``FIRST`` / ``LAST``: taken together from the task with the smallest / largest
  ``(start_ns, task_id)`` (``ORDER_KEY``), so ties break by task id.

``users.session_count`` is the one column not made from tasks: it counts the sessions
whose ``user_id`` is that user; ``owner_deltas`` says how it moves when sessions merge.

Everything that builds rollups uses these rules: the aggregator (``rollup`` of a request's
tasks, off the writer thread), every store backend (the SQLite backend generates its
upsert and recompute SQL from the rules; ClickHouse maps them onto aggregate functions),
the tests' oracle and the benchmarks' data sets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from operator import itemgetter
from typing import Any, NamedTuple

from phospho_otel.model.records import TaskRecord

__all__ = [
    "COUNT",
    "ERROR",
    "FAILURE",
    "NONE",
    "ORDER_KEY",
    "SESSION_RULES",
    "SUCCESS",
    "TASK_FACTS",
    "USER_RULES",
    "Merge",
    "Rollup",
    "Rule",
    "SessionRollup",
    "UserRollup",
    "merge_session",
    "merge_user",
    "owner_deltas",
    "rollup",
    "session_row",
    "user_row",
]


class Merge(Enum):
    """How two partial values of a rollup column combine."""

    SUM = "sum"
    MIN = "min"
    MAX = "max"
    FIRST = "first"
    LAST = "last"


COUNT = "count"
"""Rule source: 1 per task."""
SUCCESS = "success"
"""Rule source: 1 if the task's flag (its latest feedback) is ``success``, else 0."""
FAILURE = "failure"
"""Rule source: 1 if the task's flag is ``failure``, else 0."""
ERROR = "error"
"""Rule source: 1 if the task's status is ``error``, else 0."""
NONE = "none"
"""Rule source: nothing (0); the column is not made from tasks."""

TASK_FACTS: tuple[str, ...] = (*TaskRecord._fields, "flag", COUNT, SUCCESS, FAILURE, ERROR, NONE)
"""What a task contributes to a rollup: its ``TaskRecord`` fields, its ``flag``, and the
derived sources above, in this order (``_facts`` builds them)."""

ORDER_KEY = ("start_ns", "task_id")
"""The task order of ``FIRST`` and ``LAST``."""


@dataclass(frozen=True, slots=True)
class Rule:
    """One rollup column: its merge kind and what each task contributes to it (one of
    ``TASK_FACTS``)."""

    column: str
    merge: Merge
    source: str


SESSION_RULES: tuple[Rule, ...] = (
    Rule("user_id", Merge.MIN, "user_id"),
    Rule("task_count", Merge.SUM, COUNT),
    Rule("start_ns", Merge.MIN, "start_ns"),
    Rule("end_ns", Merge.MAX, "end_ns"),
    Rule("first_task_id", Merge.FIRST, "task_id"),
    Rule("first_start_ns", Merge.FIRST, "start_ns"),
    Rule("first_input", Merge.FIRST, "input"),
    Rule("last_task_id", Merge.LAST, "task_id"),
    Rule("last_start_ns", Merge.LAST, "start_ns"),
    Rule("last_input", Merge.LAST, "input"),
    Rule("last_output", Merge.LAST, "output"),
    Rule("last_status", Merge.LAST, "status"),
    Rule("success_count", Merge.SUM, SUCCESS),
    Rule("failure_count", Merge.SUM, FAILURE),
    Rule("error_count", Merge.SUM, ERROR),
    Rule("last_flag", Merge.LAST, "flag"),
)
"""The session rollup's columns, in column order (after ``session_id``)."""

USER_RULES: tuple[Rule, ...] = (
    Rule("task_count", Merge.SUM, COUNT),
    Rule("session_count", Merge.SUM, NONE),
    Rule("first_seen_ns", Merge.MIN, "start_ns"),
    Rule("last_seen_ns", Merge.MAX, "end_ns"),
    Rule("success_count", Merge.SUM, SUCCESS),
    Rule("failure_count", Merge.SUM, FAILURE),
    Rule("error_count", Merge.SUM, ERROR),
)
"""The user rollup's columns, in column order (after ``user_id``); ``session_count``
moves by ``owner_deltas``."""


class SessionRollup(NamedTuple):
    """A session's rollup as a store keeps it (see ``SESSION_RULES`` for each column)."""

    session_id: str
    user_id: str | None
    task_count: int
    start_ns: int | None
    end_ns: int | None
    first_task_id: str | None
    first_start_ns: int | None
    first_input: str | None
    last_task_id: str | None
    last_start_ns: int | None
    last_input: str | None
    last_output: str | None
    last_status: str | None
    success_count: int
    failure_count: int
    error_count: int
    last_flag: str | None


class UserRollup(NamedTuple):
    """A user's rollup as a store keeps it (see ``USER_RULES`` for each column)."""

    user_id: str
    task_count: int
    session_count: int
    first_seen_ns: int | None
    last_seen_ns: int | None
    success_count: int
    failure_count: int
    error_count: int


class Rollup(NamedTuple):
    """Partial session and user rollups of a batch of tasks, by id: lists of column
    values in rule order (without the id). Treat as read-only once made: a store may merge
    the same rollup again when a write is retried."""

    sessions: dict[str, list[Any]]
    users: dict[str, list[Any]]


class _Plan:
    """The rules of one rollup, prepared for merging rows in Python."""

    __slots__ = ("contribution", "first_key", "firsts", "last_key", "lasts", "maxs", "mins",
                 "sums")

    def __init__(self, rules: Sequence[Rule]) -> None:
        def where(kind: Merge) -> tuple[int, ...]:
            return tuple(i for i, r in enumerate(rules) if r.merge is kind)

        self.sums = where(Merge.SUM)
        self.mins = where(Merge.MIN)
        self.maxs = where(Merge.MAX)
        self.firsts = where(Merge.FIRST)
        self.lasts = where(Merge.LAST)
        self.first_key = self._key(rules, self.firsts)
        self.last_key = self._key(rules, self.lasts)
        self.contribution = itemgetter(*(TASK_FACTS.index(r.source) for r in rules))

    @staticmethod
    def _key(rules: Sequence[Rule], group: tuple[int, ...]) -> tuple[int, int]:
        """Indexes of the group's ``ORDER_KEY`` columns (a group must carry its key to be
        mergeable)."""
        if not group:
            return (0, 0)
        by_source = {rules[i].source: i for i in group}
        missing = [s for s in ORDER_KEY if s not in by_source]
        if missing:
            raise ValueError(f"a FIRST/LAST group needs columns from {missing}")
        return by_source[ORDER_KEY[0]], by_source[ORDER_KEY[1]]

    def merge(self, acc: list[Any], row: Sequence[Any]) -> None:
        """Merge ``row`` into ``acc`` (both in rule order) in place."""
        for i in self.sums:
            acc[i] += row[i]
        for i in self.mins:
            v = row[i]
            if v is not None:
                a = acc[i]
                if a is None or v < a:
                    acc[i] = v
        for i in self.maxs:
            v = row[i]
            if v is not None:
                a = acc[i]
                if a is None or v > a:
                    acc[i] = v
        if self.firsts:
            s, t = self.first_key
            v = row[s]
            if v is not None and (acc[s] is None or (v, row[t]) < (acc[s], acc[t])):
                for i in self.firsts:
                    acc[i] = row[i]
        if self.lasts:
            s, t = self.last_key
            v = row[s]
            if v is not None and (acc[s] is None or (v, row[t]) > (acc[s], acc[t])):
                for i in self.lasts:
                    acc[i] = row[i]


_SESSION = _Plan(SESSION_RULES)
_USER = _Plan(USER_RULES)
_FLAG_SUCCESS = {"success": 1}
_FLAG_FAILURE = {"failure": 1}

if SessionRollup._fields[1:] != tuple(r.column for r in SESSION_RULES):  # pragma: no cover
    raise ImportError("SessionRollup and SESSION_RULES disagree on the columns")
if UserRollup._fields[1:] != tuple(r.column for r in USER_RULES):  # pragma: no cover
    raise ImportError("UserRollup and USER_RULES disagree on the columns")


def _facts(task: TaskRecord, flag: str | None) -> tuple[Any, ...]:
    """``TASK_FACTS`` of one task."""
    return (*task, flag, 1, _FLAG_SUCCESS.get(flag, 0), _FLAG_FAILURE.get(flag, 0),  # type: ignore[arg-type]
            1 if task.status == "error" else 0, 0)


def session_row(task: TaskRecord, flag: str | None = None) -> list[Any]:
    """The session rollup of one task (rule order, without the session id)."""
    return list(_SESSION.contribution(_facts(task, flag)))


def user_row(task: TaskRecord, flag: str | None = None) -> list[Any]:
    """The user rollup of one task (rule order, without the user id)."""
    return list(_USER.contribution(_facts(task, flag)))


def merge_session(acc: list[Any], row: Sequence[Any]) -> None:
    """Merge a partial session rollup into another (both in rule order), in place."""
    _SESSION.merge(acc, row)


def merge_user(acc: list[Any], row: Sequence[Any]) -> None:
    """Merge a partial user rollup into another (both in rule order), in place."""
    _USER.merge(acc, row)


def rollup(tasks: Iterable[TaskRecord], flags: Mapping[str, str] | None = None) -> Rollup:
    """The session and user rollups of ``tasks`` (each task id once). ``flags`` maps a
    task id to its flag (``success`` or ``failure``); tasks not in it have none.
    ``session_count`` is 0 in the user rows: only a store knows which sessions are new
    (``owner_deltas``).

    This loop runs once per task on the ingest path, so it is ``SESSION_RULES`` and
    ``USER_RULES`` written out by hand (three times faster than applying them one by
    one); ``tests/model/test_rollup.py`` checks it against ``merge_session`` and
    ``merge_user``, which apply the rules, on random tasks."""
    sessions: dict[str, list[Any]] = {}
    users: dict[str, list[Any]] = {}
    for (
        task_id, _, _, session_id, user_id, _, _, _, input_, output, _, _, _, start, end,
        status,
    ) in tasks:
        if flags:
            flag = flags.get(task_id)
            ok = 1 if flag == "success" else 0
            ko = 1 if flag == "failure" else 0
        else:
            flag = None
            ok = ko = 0
        err = 1 if status == "error" else 0
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
            s[7], s[8], s[9], s[10], s[11], s[15] = task_id, start, input_, output, status, flag
        s[12] += ok
        s[13] += ko
        s[14] += err
    return Rollup(sessions, users)


_SESSION_USER = 0  # index of user_id in a session row
assert SESSION_RULES[_SESSION_USER].column == "user_id"


def owner_deltas(
    stored_owners: Mapping[str, str | None], batch: Mapping[str, Sequence[Any]]
) -> dict[str, int]:
    """How ``users.session_count`` moves when the batch's session rows merge into the
    stored ones: +1 for the new owner of a new session or of a session whose owner (the
    smallest user id) changes, -1 for the old owner. ``stored_owners`` maps the batch's
    sessions that are already stored to their stored ``user_id``; the others are new."""
    deltas: dict[str, int] = {}
    for session_id, row in batch.items():
        new_owner = row[_SESSION_USER]
        if session_id not in stored_owners:
            if new_owner is not None:
                deltas[new_owner] = deltas.get(new_owner, 0) + 1
            continue
        old_owner = stored_owners[session_id]
        if old_owner is not None and (new_owner is None or old_owner < new_owner):
            new_owner = old_owner
        if new_owner != old_owner:  # so new_owner is not None: it is old_owner or smaller
            if old_owner is not None:
                deltas[old_owner] = deltas.get(old_owner, 0) - 1
            deltas[new_owner] = deltas.get(new_owner, 0) + 1
    return deltas
