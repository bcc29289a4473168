"""Retention: users by cohort (the period they were first seen in) and by the later
periods they came back in, and new vs returning users per day. A pure function, no I/O:
the analyzer (or a view) reads from the store the UTC days each user had a task on and
hands them to ``retention``.

- Days are UTC days since the Unix epoch (``start_ns // 86_400_000_000_000``).
- The period is ``"day"`` when the data spans under 14 days (from its first active day to
  its last, both counted), else ``"week"``; weeks start on **Monday** (ISO 8601), and a
  week is named by its Monday (so a cohort's ``start`` may precede its users' first day).
- Every user is in exactly one cohort: the period of their first active day. Only periods
  in which some user was first seen make a cohort (no empty cohorts).
- ``Cohort.active[k]`` counts the cohort's users active in period ``start + k`` (k days or
  k weeks later), from its own period (``active[0] == users``) to the last period of the
  data, a period without any activity counting 0.
- ``new_vs_returning`` holds, for every day with activity, ``(day, users first seen that
  day, other users active that day)``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

__all__ = ["PERIODS", "Cohort", "Retention", "retention", "week_start"]

PERIODS = ("day", "week")
"""``Retention.period`` values."""

_WEEKLY_FROM_DAYS = 14
"""Data spanning this many days or more is counted by week."""

_user = itemgetter(0)
_day = itemgetter(1)


@dataclass(frozen=True, slots=True)
class Cohort:
    """The users first seen in one period, and how many of them were active in each period
    from then on."""

    start: int
    """First day of the period (UTC days since the epoch; a Monday for weeks)."""
    users: int
    active: tuple[int, ...]
    """``active[k]``: the cohort's users active in the k-th period from ``start``
    (``active[0] == users``), up to the last period of the data."""


@dataclass(frozen=True, slots=True)
class Retention:
    """Cohorts (oldest first) and new vs returning users per day."""

    period: str
    """One of ``PERIODS``."""
    cohorts: tuple[Cohort, ...]
    new_vs_returning: tuple[tuple[int, int, int], ...]
    """``(day, new users, returning users)`` for every day with activity, ascending."""


def week_start(day: int) -> int:
    """The Monday of the (ISO) week holding ``day`` (days since the epoch, a Thursday)."""
    return day - (day + 3) % 7


def retention(user_days: Iterable[tuple[str, int]], period: str | None = None) -> Retention:
    """Cohorts and new vs returning users from ``(user_id, day)`` pairs: every UTC day
    (since the epoch) a user had a task on, in any order, repeats allowed (rules in the
    module docstring). ``period`` ``"day"`` or ``"week"`` forces the period; None chooses
    by the span of the data. Fastest when the pairs come ordered by day."""
    if period is not None and period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS} or None, not {period!r}")
    by_day: dict[int, set[str]] = {}
    # Timsort is linear on input already ordered by day; groupby then makes one set per day
    # in C. Any order is correct.
    for day, pairs in groupby(sorted(user_days, key=_day), _day):
        users = by_day.get(day)
        if users is None:
            by_day[day] = set(map(_user, pairs))
        else:
            users.update(map(_user, pairs))
    if not by_day:
        return Retention(period=period or "day", cohorts=(), new_vs_returning=())
    days = sorted(by_day)
    if period is None:
        period = "day" if days[-1] - days[0] + 1 < _WEEKLY_FROM_DAYS else "week"
    step = 1 if period == "day" else 7
    start_of = (lambda d: d) if step == 1 else week_start

    cohorts: dict[int, set[str]] = {}
    seen: set[str] = set()
    new_vs_returning = []
    for day in days:
        users = by_day[day]
        new = users - seen
        seen |= new
        new_vs_returning.append((day, len(new), len(users) - len(new)))
        if new:
            start = start_of(day)
            if start in cohorts:
                cohorts[start] |= new
            else:
                cohorts[start] = new
    active: dict[int, set[str]] = by_day
    """Users active in each period with activity, by the period's first day."""
    if step == 7:
        active = {}
        for start, in_week in groupby(days, week_start):
            sets = [by_day[d] for d in in_week]
            active[start] = sets[0] if len(sets) == 1 else set().union(*sets)
    last = start_of(days[-1])
    empty: set[str] = set()
    return Retention(
        period=period,
        cohorts=tuple(
            Cohort(start=start, users=len(members), active=(len(members), *(
                len(members & active.get(p, empty)) for p in range(start + step, last + 1,
                                                                  step))))
            for start, members in sorted(cohorts.items())),
        new_vs_returning=tuple(new_vs_returning),
    )
