"""Retention (``insights.retention``): cohorts by day and by week (Monday to Sunday), the
choice of period, new vs returning users, against hand-computed figures and a brute-force
oracle; and the speed at 10,000 users over 60 days."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import date

import pytest

from phospho_otel.insights.retention import Cohort, Retention, retention, week_start

EPOCH = date(1970, 1, 1)


def day(iso: str) -> int:
    """Days since the epoch of an ISO date."""
    return (date.fromisoformat(iso) - EPOCH).days


MONDAY = day("2026-01-05")
assert date.fromisoformat("2026-01-05").weekday() == 0


def oracle(pairs: Sequence[tuple[str, int]], period: str) -> Retention:
    """The same figures, the slow obvious way."""
    step = 1 if period == "day" else 7

    def start(d: int) -> int:
        if step == 1:
            return d
        return d - date.fromordinal(EPOCH.toordinal() + d).weekday()

    first = {u: min(d for v, d in pairs if v == u) for u, _ in pairs}
    last = max(start(d) for _, d in pairs)
    cohorts = []
    for c in sorted({start(d) for d in first.values()}):
        members = {u for u, d in first.items() if start(d) == c}
        active = tuple(len({u for u, d in pairs if u in members and start(d) == p})
                       for p in range(c, last + 1, step))
        cohorts.append(Cohort(c, len(members), active))
    days = sorted({d for _, d in pairs})
    nvr = tuple((d, sum(1 for f in first.values() if f == d),
                 len({u for u, e in pairs if e == d and first[u] < d})) for d in days)
    return Retention(period, tuple(cohorts), nvr)


class TestByDay:
    def test_hand_computed(self) -> None:
        d = day("2026-01-01")
        pairs = [("a", d), ("b", d + 1), ("a", d + 1), ("b", d + 1), ("b", d + 2),
                 ("a", d + 3), ("c", d + 3), ("a", d)]
        assert retention(pairs) == Retention(
            period="day",
            cohorts=(Cohort(d, 1, (1, 1, 0, 1)), Cohort(d + 1, 1, (1, 1, 0)),
                     Cohort(d + 3, 1, (1,))),
            new_vs_returning=((d, 1, 0), (d + 1, 1, 1), (d + 2, 0, 1), (d + 3, 1, 1)))

    def test_a_day_without_activity_is_zero_and_has_no_cohort(self) -> None:
        d = day("2026-03-10")
        result = retention([("a", d), ("b", d), ("a", d + 2)])
        assert result.cohorts == (Cohort(d, 2, (2, 0, 1)),)
        assert result.new_vs_returning == ((d, 2, 0), (d + 2, 0, 1))

    def test_a_user_active_only_once(self) -> None:
        d = day("2026-03-10")
        result = retention([("once", d)])
        assert result == Retention("day", (Cohort(d, 1, (1,)),), ((d, 1, 0),))

    def test_any_order_gives_the_same(self) -> None:
        rng = random.Random(3)
        pairs = [(f"u{rng.randrange(30)}", 20_000 + rng.randrange(10)) for _ in range(300)]
        expected = oracle(pairs, "day")
        assert retention(pairs) == expected
        for _ in range(3):
            rng.shuffle(pairs)
            assert retention(iter(pairs)) == expected


class TestPeriod:
    def test_under_fourteen_days_is_daily(self) -> None:
        assert retention([("a", 100), ("b", 112)]).period == "day", "13 days, both counted"

    def test_fourteen_days_or_more_is_weekly(self) -> None:
        assert retention([("a", 100), ("b", 113)]).period == "week"
        assert retention([("b", 112), ("a", 100)], "week").period == "week"

    def test_forced_daily_on_long_data(self) -> None:
        result = retention([("a", 100), ("a", 130)], "day")
        assert result.cohorts == (Cohort(100, 1, (1, *[0] * 29, 1)),)

    def test_unknown_period(self) -> None:
        with pytest.raises(ValueError, match="period"):
            retention([("a", 1)], "month")

    def test_empty(self) -> None:
        assert retention([]) == Retention("day", (), ())
        assert retention([], "week") == Retention("week", (), ())


class TestByWeek:
    def test_weeks_start_on_monday(self) -> None:
        assert week_start(MONDAY) == MONDAY
        assert week_start(MONDAY + 6) == MONDAY
        assert week_start(MONDAY + 7) == MONDAY + 7
        assert week_start(MONDAY - 1) == MONDAY - 7
        assert week_start(0) == -3, "1970-01-01 was a Thursday"
        assert date.fromordinal(EPOCH.toordinal() + week_start(day("2026-02-19"))) == date(
            2026, 2, 16)

    def test_hand_computed_across_week_boundaries(self) -> None:
        sunday, monday = MONDAY + 6, MONDAY + 7
        pairs = [
            ("a", MONDAY + 2),  # Wednesday of week 0: cohort of week 0
            ("b", sunday),      # Sunday: still week 0
            ("c", monday),      # the next Monday: week 1
            ("a", monday), ("a", monday + 3),  # twice in week 1 counts once
            ("b", MONDAY + 21),                # week 3: b skips weeks 1 and 2
            ("d", MONDAY + 20),                # Sunday of week 2
        ]
        assert retention(pairs) == Retention(
            period="week",
            cohorts=(Cohort(MONDAY, 2, (2, 1, 0, 1)), Cohort(MONDAY + 7, 1, (1, 0, 0)),
                     Cohort(MONDAY + 14, 1, (1, 0))),
            new_vs_returning=((MONDAY + 2, 1, 0), (sunday, 1, 0), (monday, 1, 1),
                              (monday + 3, 0, 1), (MONDAY + 20, 1, 0), (MONDAY + 21, 0, 1)))

    def test_cohort_start_is_the_monday_before_the_first_day(self) -> None:
        thursday = MONDAY + 3
        result = retention([("a", thursday), ("a", thursday + 20)])
        assert result.period == "week"
        assert result.cohorts == (Cohort(MONDAY, 1, (1, 0, 0, 1)),)

    def test_against_the_oracle(self) -> None:
        rng = random.Random(7)
        pairs = [(f"u{rng.randrange(80)}", MONDAY + rng.randrange(-10, 60))
                 for _ in range(1500)]
        result = retention(pairs)
        assert result == oracle(pairs, "week")
        assert sum(c.users for c in result.cohorts) == len({u for u, _ in pairs}), (
            "every user in exactly one cohort")
        assert all(c.active[0] == c.users for c in result.cohorts)



def test_ten_thousand_users_over_sixty_days() -> None:
    """10,000 users over 60 days, each active on up to 15 days from their first, in no
    particular order."""
    rng = random.Random(60)
    pairs = []
    for u in range(10_000):
        first = MONDAY + rng.randrange(60)
        days = range(first, MONDAY + 60)
        pairs += [(f"user-{u}@example.com", d)
                  for d in rng.sample(days, min(len(days), rng.randint(1, 15)))]
    rng.shuffle(pairs)
    result = retention(pairs)
    assert result.period == "week"
    assert sum(c.users for c in result.cohorts) == 10_000
