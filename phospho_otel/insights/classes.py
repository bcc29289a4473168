"""User classes, each with its reasons in words: ``power``, ``struggling``, ``abusive``,
``dormant``, ``new``. Pure functions, no I/O: the analyzer sums each user's figures into a
``UserStats`` (from the store's tasks, analyses and session analyses) and stores the classes
``classify_users`` returns. A user can be in several classes, or in none.

The rules, with the thresholds of ``ClassSettings`` (``reference_ns`` is the end of the
window, the latest activity in the store; a day is 86,400 s):

- ``power``: at least ``power_min_tasks`` tasks in the window, and in the top
  ``power_top_share`` of all the users given by tasks, sessions or active days in the
  window. The cut-off of each figure is the value of the ``ceil(share * users)``-th user in
  descending order; every user at or above it (and above 0) is in, so ties at the cut-off
  are all in. One reason per figure that qualifies ("31 tasks in the last 7 days, top 5%
  of users (rank 3 of 60)"; the share cited is the user's rank over the users, rounded up).
- ``struggling``, any of:
  at least ``struggling_min_tasks`` evaluated tasks (success or failure) of which at least
  ``struggling_failure_share`` failed ("9 of 14 evaluated tasks failed (64%)");
  at least ``struggling_min_tasks`` tasks and at least ``MIN_SESSIONS_ENDED_AFTER_FAILURE``
  sessions ended after a failure (``abandoned_after_failure``, ``abandoned_after_error``,
  ``frustrated``), being at least ``struggling_failure_share`` of its ended sessions
  ("3 of 5 sessions ended after a failure (60%)");
  at least ``struggling_min_rephrases`` tasks evaluated failure because the next message
  rephrased them (``heuristic:rephrase``) ("4 questions rephrased").
- ``abusive``: at least ``abusive_min_events`` events named in ``abusive_events`` in all
  ("2 abuse events, 1 prompt_injection event").
- ``dormant``: has tasks, and the last was ``dormant_days`` or more before ``reference_ns``
  ("silent for 21 days (last seen 2026-11-03)").
- ``new``: has tasks, and the first was at most ``new_days`` before ``reference_ns``
  ("first seen 2 days ago").
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from datetime import datetime, timezone

from phospho_otel.insights.config import ClassSettings
from phospho_otel.model.analysis import UserClass
from phospho_otel.store.api import UserFacts

__all__ = ["MIN_SESSIONS_ENDED_AFTER_FAILURE", "UserStats", "classify_users"]

MIN_SESSIONS_ENDED_AFTER_FAILURE = 2
"""``struggling`` by its sessions needs at least this many ended after a failure."""

_DAY_NS = 86_400 * 1_000_000_000


UserStats = UserFacts
"""What ``classify_users`` knows of one user: the store's ``UserFacts`` (the ``*_in_window``
figures count the ``ClassSettings.window_days`` before the reference time)."""


class _Rank:
    """One figure's cut-off for ``power`` and each value's rank, from one sort."""

    __slots__ = ("ascending", "cutoff", "users")

    def __init__(self, values: list[int], top: int) -> None:
        self.ascending = sorted(values)
        self.users = len(values)
        self.cutoff = max(self.ascending[-top], 1) if 0 < top <= len(values) else None

    def rank(self, value: int) -> int:
        """1 + how many users have more."""
        return self.users - bisect.bisect_right(self.ascending, value) + 1


def classify_users(stats: Sequence[UserStats], reference_ns: int,
                   settings: ClassSettings) -> dict[str, tuple[UserClass, ...]]:
    """The classes of every user in ``stats`` (``()`` for a user in none), by the rules of
    the module docstring, in the order of ``USER_CLASSES``. O(n log n)."""
    n = len(stats)
    top = math.ceil(round(settings.power_top_share * n, 9)) if n else 0
    window = _number(settings.window_days)
    window = "day" if window == "1" else f"{window} days"
    figures = [(noun, values, _Rank(values, top)) for noun, values in (
        ("task", [s.tasks_in_window for s in stats]),
        ("session", [s.sessions_in_window for s in stats]),
        ("active day", [s.active_days_in_window for s in stats]))
        if top]
    power_min_tasks = settings.power_min_tasks
    min_evaluated = settings.struggling_min_tasks
    share = settings.struggling_failure_share
    min_rephrases = max(settings.struggling_min_rephrases, 1)
    abusive_events = settings.abusive_events
    abusive_min = max(settings.abusive_min_events, 1)
    dormant_ns = settings.dormant_days * _DAY_NS
    new_ns = settings.new_days * _DAY_NS
    dates: dict[int, str] = {}
    result: dict[str, tuple[UserClass, ...]] = {}
    for i, s in enumerate(stats):
        classes: list[UserClass] = []
        if s.tasks_in_window >= power_min_tasks:
            reasons = []
            for noun, values, rank in figures:
                value = values[i]
                if rank.cutoff is not None and value >= rank.cutoff:
                    place = rank.rank(value)
                    reasons.append(f"{_count(value, noun)} in the last {window}, top "
                                   f"{-(-100 * place // n)}% of users (rank {place} of {n})")
            if reasons:
                classes.append(UserClass("power", tuple(reasons)))

        reasons = []
        failures, evaluated = s.failure_count, s.evaluated_count
        if evaluated >= min_evaluated and failures > 0 and failures >= share * evaluated:
            reasons.append(f"{failures} of {_count(evaluated, 'evaluated task')} failed "
                           f"({_percent(failures, evaluated)})")
        failed = s.sessions_ended_after_failure
        if failed >= MIN_SESSIONS_ENDED_AFTER_FAILURE and s.task_count >= min_evaluated:
            ended = max(s.sessions_ended, failed)
            if failed >= share * ended:
                reasons.append(f"{failed} of {_count(ended, 'session')} ended after a failure "
                               f"({_percent(failed, ended)})")
        if s.rephrase_count >= min_rephrases:
            reasons.append(f"{_count(s.rephrase_count, 'question')} rephrased")
        if reasons:
            classes.append(UserClass("struggling", tuple(reasons)))

        counts = s.event_counts
        if counts:
            abuse = [(name, counts.get(name, 0)) for name in abusive_events]
            if sum(c for _, c in abuse) >= abusive_min:
                classes.append(UserClass("abusive", (", ".join(
                    _count(c, f"{name} event") for name, c in abuse if c),)))

        if s.task_count > 0 and s.first_seen_ns is not None and s.last_seen_ns is not None:
            last_seen = s.last_seen_ns
            silent = reference_ns - last_seen
            if silent >= dormant_ns:
                day = last_seen // _DAY_NS
                date = dates.get(day)
                if date is None:
                    date = dates[day] = _date(last_seen)
                classes.append(UserClass("dormant", (
                    f"silent for {_count(silent // _DAY_NS, 'day')} (last seen {date})",)))
            age = reference_ns - s.first_seen_ns
            if age <= new_ns:
                days = age // _DAY_NS
                when = "less than a day ago" if days < 1 else f"{_count(days, 'day')} ago"
                classes.append(UserClass("new", (f"first seen {when}",)))
        result[s.user_id] = tuple(classes)
    return result


def _count(n: int, noun: str) -> str:
    """``1 task``, ``3 tasks``."""
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _percent(part: int, whole: int) -> str:
    """``part / whole`` as a whole percentage, rounded half up."""
    return f"{(200 * part + whole) // (2 * whole)}%"


def _number(x: float) -> str:
    """``7`` for 7.0, ``0.5`` for 0.5."""
    return f"{x:g}"


def _date(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime("%Y-%m-%d")
