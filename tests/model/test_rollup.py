"""model.rollup: per-batch session and user rollups, their merge rules, ``owner_deltas``,
and extract's precomputed rollup."""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from phospho_otel.aggregator.extract import extract
from phospho_otel.model.records import TASK_STATUSES, TaskRecord
from phospho_otel.model.rollup import (
    SESSION_RULES,
    USER_RULES,
    Rollup,
    SessionRollup,
    UserRollup,
    merge_session,
    merge_user,
    owner_deltas,
    rollup,
    session_row,
    user_row,
)
from tests.support.otlp import BASE_NS, SEC, make_request, task_span

SEEDS = range(300)


class TestRollup:
    """The partial rows follow the merge rules."""

    def test_session_and_user_rows(self) -> None:
        """Counts add, min/max times, first/last by (start, task id), smallest user; the
        last flag is the last task's."""
        x = extract(
            make_request(
                [
                    task_span("b", session_id="s", user_id="u2", input="in b", start_ns=BASE_NS,
                              end_ns=BASE_NS + 5),
                    task_span("a", session_id="s", user_id="u1", input="in a", start_ns=BASE_NS,
                              end_ns=BASE_NS + 3, status_code=2),
                    task_span("c", session_id="s", user_id="u2", input="in c", output="out c",
                              start_ns=BASE_NS + 9, end_ns=BASE_NS + 10),
                    task_span("d", user_id="u1", start_ns=BASE_NS - 7, end_ns=BASE_NS - 1),
                ]
            )
        )
        r = rollup(x.tasks, {"b": "success", "c": "failure"})
        assert r.sessions == {
            "s": ["u1", 3, BASE_NS, BASE_NS + 10, "a", BASE_NS, "in a",
                  "c", BASE_NS + 9, "in c", "out c", "unset", 1, 1, 1, "failure"],
        }
        assert r.users == {
            "u1": [2, 0, BASE_NS - 7, BASE_NS + 3, 0, 0, 1],
            "u2": [2, 0, BASE_NS, BASE_NS + 10, 1, 1, 0],
        }
        counts = [*r.sessions["s"][12:15], *r.users["u1"][4:], *r.users["u2"][4:]]
        assert all(type(c) is int for c in counts)
        assert SessionRollup("s", *r.sessions["s"]).last_flag == "failure"
        assert UserRollup("u2", *r.users["u2"]).success_count == 1

    def test_extract_precomputes_without_feedback(self) -> None:
        """extract's rollup is the rollup of its tasks as if none had feedback."""
        x = extract(make_request([task_span("a", session_id="s"), task_span("b", session_id="s")]))
        assert x.rollup == rollup(x.tasks)
        assert x.rollup is not None
        assert x.rollup.sessions["s"][1] == 2

    def test_extract_skips_repeated_task_ids(self) -> None:
        """A task id twice in one request: no precomputed rollup (the store sorts it out)."""
        x = extract(make_request([task_span("a"), task_span("a", end_ns=BASE_NS + 7)]))
        assert x.rollup is None
        assert extract(make_request([])).rollup is None


# ------------------------------------------------------------- rollup() == the rules


SESSIONS = (None, "s1", "s2", "s3")
USERS = (None, "alice", "bob", "carol")
FLAGS = ("success", "failure")


def random_tasks(rng: random.Random) -> tuple[list[TaskRecord], dict[str, str]]:
    """Up to 30 tasks over a few sessions and users (None included), starting at one of
    five times (so ties on start_ns are common), with task ids in no particular order,
    and a random flag on about half of them."""
    n = rng.randrange(31)
    ids = rng.sample(range(1000), n)
    tasks = []
    for i, number in enumerate(ids):
        start = BASE_NS + rng.randrange(5) * SEC
        tasks.append(TaskRecord(
            f"t{number:03d}", rng.randbytes(16), rng.randbytes(8), rng.choice(SESSIONS),
            rng.choice(USERS), "task", "svc", "phospho", rng.choice((None, f"in {i}")),
            rng.choice((None, f"out {i}")), None, None, "{}", start,
            start + rng.randrange(4) * SEC, rng.choice(TASK_STATUSES),
        ))
    flags = {t.task_id: rng.choice(FLAGS) for t in tasks if rng.random() < 0.5}
    return tasks, flags


def fold(tasks: Iterable[TaskRecord], flags: Mapping[str, str]) -> Rollup:
    """The rollup of ``tasks`` by the generic rules: each task's one-task rows, merged
    one by one with ``merge_session`` / ``merge_user``."""
    sessions: dict[str, list[Any]] = {}
    users: dict[str, list[Any]] = {}
    for task in tasks:
        flag = flags.get(task.task_id)
        if task.session_id is not None:
            row = session_row(task, flag)
            if task.session_id in sessions:
                merge_session(sessions[task.session_id], row)
            else:
                sessions[task.session_id] = row
        if task.user_id is not None:
            row = user_row(task, flag)
            if task.user_id in users:
                merge_user(users[task.user_id], row)
            else:
                users[task.user_id] = row
    return Rollup(sessions, users)


def merged(a: Rollup, b: Rollup) -> Rollup:
    """Two partial rollups merged by the rules (neither is modified)."""
    out = copy.deepcopy(a)
    for key, row in b.sessions.items():
        if key in out.sessions:
            merge_session(out.sessions[key], row)
        else:
            out.sessions[key] = list(row)
    for key, row in b.users.items():
        if key in out.users:
            merge_user(out.users[key], row)
        else:
            out.users[key] = list(row)
    return out


class TestRollupFollowsTheRules:
    """``rollup()`` is ``SESSION_RULES`` / ``USER_RULES`` written out by hand for speed;
    on random tasks it must equal the generic application of the rules."""

    def test_one_task_rows_are_in_rule_order(self) -> None:
        """A one-task row has one value per rule, and ``rollup`` of that task alone is
        that row."""
        (task,) = extract(make_request([task_span("t", session_id="s", user_id="u")])).tasks
        assert len(session_row(task)) == len(SESSION_RULES)
        assert len(user_row(task)) == len(USER_RULES)
        assert rollup([task], {"t": "success"}) == Rollup(
            {"s": session_row(task, "success")}, {"u": user_row(task, "success")})

    def test_equals_the_fold_of_one_task_rows(self) -> None:
        """rollup(tasks, flags) == folding the tasks' one-task rows with merge_session /
        merge_user, in any order; likewise without flags."""
        for seed in SEEDS:
            rng = random.Random(seed)
            tasks, flags = random_tasks(rng)
            shuffled = rng.sample(tasks, len(tasks))
            assert rollup(tasks, flags) == fold(shuffled, flags), f"seed {seed}"
            assert rollup(tasks) == rollup(tasks, {}) == fold(tasks, {}), f"seed {seed}"

    def test_partial_rollups_merge(self) -> None:
        """The rollups of any two halves of the tasks, merged by the rules, are the rollup
        of all of them (either way round)."""
        for seed in SEEDS:
            rng = random.Random(seed)
            tasks, flags = random_tasks(rng)
            cut = rng.randrange(len(tasks) + 1)
            first, second = rollup(tasks[:cut], flags), rollup(tasks[cut:], flags)
            whole = rollup(tasks, flags)
            assert merged(first, second) == whole, f"seed {seed}"
            assert merged(second, first) == whole, f"seed {seed}"

    def test_random_tasks_cover_the_edge_cases(self) -> None:
        """The random tasks above do exercise what a hand-written loop gets wrong: ties on
        the first and last start of a session, tasks without session or user, sessions of
        several users, flags of both kinds, errors."""
        seen: Counter[str] = Counter()
        for seed in SEEDS:
            tasks, flags = random_tasks(random.Random(seed))
            seen["no session"] += any(t.session_id is None for t in tasks)
            seen["no user"] += any(t.user_id is None for t in tasks)
            seen["error"] += any(t.status == "error" for t in tasks)
            seen["success"] += "success" in flags.values()
            seen["failure"] += "failure" in flags.values()
            by_session: dict[str, list[TaskRecord]] = {}
            for t in tasks:
                if t.session_id is not None:
                    by_session.setdefault(t.session_id, []).append(t)
            for members in by_session.values():
                starts = sorted(t.start_ns for t in members)
                seen["tie on first"] += len(starts) > 1 and starts[0] == starts[1]
                seen["tie on last"] += len(starts) > 1 and starts[-1] == starts[-2]
                users = {t.user_id for t in members}
                seen["several users"] += len(users - {None}) > 1
                seen["users and none"] += None in users and len(users) > 1
        assert all(seen[k] >= 20 for k in (
            "no session", "no user", "error", "success", "failure", "tie on first",
            "tie on last", "several users", "users and none")), seen


# ------------------------------------------------------------- owner_deltas


class TestOwnerDeltas:
    """How ``users.session_count`` moves when session rows merge."""

    @staticmethod
    def row(user_id: str | None) -> list[Any]:
        """A session row owned by ``user_id`` (only the owner matters here)."""
        (task,) = extract(make_request([task_span("t", session_id="s", user_id=user_id)])).tasks
        return session_row(task)

    @pytest.mark.parametrize(
        ("stored", "batch", "deltas"),
        [
            pytest.param({}, "a", {"a": 1}, id="new session: +1 its owner"),
            pytest.param({}, None, {}, id="new session without owner"),
            pytest.param({"s": "b"}, "a", {"b": -1, "a": 1}, id="smaller owner takes it"),
            pytest.param({"s": "a"}, "b", {}, id="larger user does not"),
            pytest.param({"s": None}, "a", {"a": 1}, id="an owner at last"),
            pytest.param({"s": "a"}, None, {}, id="no user keeps the owner"),
            pytest.param({"s": "a"}, "a", {}, id="same owner"),
        ],
    )
    def test_one_session(self, stored: dict[str, str | None], batch: str | None,
                         deltas: dict[str, int]) -> None:
        """One session's row merging into the stored one (or arriving new)."""
        assert owner_deltas(stored, {"s": self.row(batch)}) == deltas

    def test_deltas_add_up(self) -> None:
        """Several sessions moving to and from one user add up."""
        rows = {"s1": self.row("a"), "s2": self.row("a"), "s3": self.row("c")}
        assert owner_deltas({"s1": "b", "s3": "d"}, rows) == {"a": 2, "b": -1, "c": 1, "d": -1}

    def test_counts_follow_the_merged_owners(self) -> None:
        """On random stored rollups and batches: the stored owners' session counts plus
        the deltas are the session counts of the merged rollups' owners."""
        for seed in SEEDS:
            rng = random.Random(seed)
            stored_tasks, _ = random_tasks(rng)
            batch_tasks, _ = random_tasks(rng)
            stored = rollup(stored_tasks).sessions
            batch = rollup(batch_tasks).sessions
            after = merged(Rollup(stored, {}), Rollup(batch, {})).sessions
            deltas = owner_deltas({k: stored[k][0] for k in batch if k in stored}, batch)
            before = Counter(row[0] for row in stored.values() if row[0] is not None)
            after_counts = Counter(row[0] for row in after.values() if row[0] is not None)
            for user_id in set(before) | set(after_counts) | set(deltas):
                assert before[user_id] + deltas.get(user_id, 0) == after_counts[user_id], (
                    f"seed {seed}, user {user_id}")
