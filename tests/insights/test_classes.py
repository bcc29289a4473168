"""User classes with their reasons (``insights.classes``): each rule at its thresholds, ties
at the power cut-off, a user in several classes, and 10,000 users of a real-looking app
(their speed: ``benchmarks/bench_insights_quality.py``)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Mapping

from phospho_otel.insights.classes import UserStats, classify_users
from phospho_otel.insights.config import ClassSettings
from phospho_otel.model.analysis import USER_CLASSES, UserClass

DAY = 86_400 * 1_000_000_000
REF = 20_760 * DAY
"""2026-11-03T00:00:00Z, the reference time (latest activity)."""
SETTINGS = ClassSettings()


def user(user_id: str, *, first_days_ago: float = 30, last_days_ago: float = 1,
         tasks: int = 3, sessions: int = 1, tasks_in_window: int = 0,
         sessions_in_window: int = 0, active_days: int = 0, evaluated: int = 0,
         failures: int = 0, ended: int = 0, ended_after_failure: int = 0,
         rephrases: int = 0, events: Mapping[str, int] | None = None) -> UserStats:
    return UserStats(
        user_id=user_id, first_seen_ns=REF - round(first_days_ago * DAY),
        last_seen_ns=REF - round(last_days_ago * DAY), task_count=tasks,
        session_count=sessions, tasks_in_window=tasks_in_window,
        sessions_in_window=sessions_in_window, active_days_in_window=active_days,
        evaluated_count=evaluated, failure_count=failures, sessions_ended=ended,
        sessions_ended_after_failure=ended_after_failure, rephrase_count=rephrases,
        event_counts=events or {})


def classes_of(stats: list[UserStats], settings: ClassSettings = SETTINGS,
               ) -> dict[str, dict[str, tuple[str, ...]]]:
    """``{user: {label: reasons}}``, checking the result's shape on the way."""
    result = classify_users(stats, REF, settings)
    assert list(result) == [s.user_id for s in stats]
    out = {}
    for user_id, classes in result.items():
        labels = [c.label for c in classes]
        assert labels == [c for c in USER_CLASSES if c in labels], "in USER_CLASSES order"
        assert all(isinstance(c, UserClass) and c.reasons for c in classes)
        out[user_id] = {c.label: c.reasons for c in classes}
    return out


def crowd(n: int) -> list[UserStats]:
    """``n`` quiet users: a task in the window, first seen long ago, in no class."""
    return [user(f"quiet{i}", tasks_in_window=1, sessions_in_window=1, active_days=1)
            for i in range(n)]


class TestPower:
    def test_top_share_by_tasks_with_ties_at_the_cut_off(self) -> None:
        """40 users, top 5% = 2 users: the cut-off is the 2nd value (30), so the three users
        with 30 tasks are all in."""
        stats = [user("a", tasks_in_window=50), user("b", tasks_in_window=30),
                 user("c", tasks_in_window=30), user("d", tasks_in_window=30),
                 user("e", tasks_in_window=29), *crowd(35)]
        result = classes_of(stats)
        assert result["a"] == {"power": (
            "50 tasks in the last 7 days, top 3% of users (rank 1 of 40)",)}
        for tied in "bcd":
            assert result[tied] == {"power": (
                "30 tasks in the last 7 days, top 5% of users (rank 2 of 40)",)}
        assert result["e"] == {}
        assert all(result[f"quiet{i}"] == {} for i in range(35))

    def test_by_sessions_or_active_days_with_enough_tasks(self) -> None:
        stats = [user("sessions", tasks_in_window=12, sessions_in_window=9),
                 user("days", tasks_in_window=10, active_days=7),
                 user("few", tasks_in_window=9, sessions_in_window=9, active_days=7),
                 *crowd(17)]
        result = classes_of(stats)
        # top 5% of 20 users = 1 user per figure, and "few" ties at both cut-offs
        assert result["sessions"] == {"power": (
            "12 tasks in the last 7 days, top 5% of users (rank 1 of 20)",
            "9 sessions in the last 7 days, top 5% of users (rank 1 of 20)")}
        assert result["days"] == {"power": (
            "7 active days in the last 7 days, top 5% of users (rank 1 of 20)",)}
        assert result["few"] == {}, "fewer than power_min_tasks tasks in the window"

    def test_share_rounds_up_to_at_least_one_user(self) -> None:
        result = classes_of([user("only", tasks_in_window=10)])
        assert result["only"] == {"power": (
            "10 tasks in the last 7 days, top 100% of users (rank 1 of 1)",)}

    def test_share_times_users_is_not_rounded_up_by_float_error(self) -> None:
        """0.05 x 60 is 3.0000000000000004 in floats: the cut-off is still the 3rd user."""
        stats = [user(f"p{i}", tasks_in_window=100 - i) for i in range(4)] + crowd(56)
        result = classes_of(stats)
        assert [u for u in ("p0", "p1", "p2", "p3") if "power" in result[u]] == [
            "p0", "p1", "p2"]

    def test_other_window_and_share(self) -> None:
        settings = ClassSettings(window_days=1, power_top_share=0.5, power_min_tasks=1)
        result = classes_of([user("a", tasks_in_window=2), user("b", tasks_in_window=1)],
                            settings)
        assert result["a"] == {"power": (
            "2 tasks in the last day, top 50% of users (rank 1 of 2)",)}
        assert result["b"] == {}

    def test_nobody_active_in_the_window(self) -> None:
        settings = ClassSettings(power_min_tasks=0)
        assert classes_of([user("a"), user("b")], settings) == {"a": {}, "b": {}}


class TestStruggling:
    def test_failure_share(self) -> None:
        result = classes_of([user("u", evaluated=14, failures=9)])
        assert result["u"] == {"struggling": ("9 of 14 evaluated tasks failed (64%)",)}

    def test_failure_share_at_the_threshold(self) -> None:
        result = classes_of([user("at", evaluated=5, failures=2),
                             user("below", evaluated=6, failures=2),
                             user("few", evaluated=4, failures=4)])
        assert result["at"] == {"struggling": ("2 of 5 evaluated tasks failed (40%)",)}
        assert result["below"] == {}
        assert result["few"] == {}, "fewer than struggling_min_tasks evaluated tasks"

    def test_sessions_ended_after_failure(self) -> None:
        result = classes_of([
            user("u", tasks=20, ended=5, ended_after_failure=3),
            user("once", tasks=20, ended=1, ended_after_failure=1),
            user("rare", tasks=20, ended=10, ended_after_failure=3),
            user("few", tasks=4, ended=2, ended_after_failure=2)])
        assert result["u"] == {"struggling": ("3 of 5 sessions ended after a failure (60%)",)}
        assert result["once"] == {}, "a single session is not a pattern"
        assert result["rare"] == {}, "30% of its sessions, under the failure share"
        assert result["few"] == {}, "fewer than struggling_min_tasks tasks"

    def test_rephrasing(self) -> None:
        result = classes_of([user("u", rephrases=3), user("v", rephrases=2)])
        assert result["u"] == {"struggling": ("3 questions rephrased",)}
        assert result["v"] == {}

    def test_all_reasons_together(self) -> None:
        result = classes_of([user("u", tasks=40, evaluated=20, failures=10, ended=4,
                                  ended_after_failure=2, rephrases=5)])
        assert result["u"] == {"struggling": (
            "10 of 20 evaluated tasks failed (50%)",
            "2 of 4 sessions ended after a failure (50%)",
            "5 questions rephrased")}


class TestAbusive:
    def test_counts_of_each_abusive_event(self) -> None:
        result = classes_of([
            user("u", events={"abuse": 2, "prompt_injection": 1, "thanks": 5}),
            user("v", events={"prompt_injection": 1, "frustration": 9}),
            user("w", events={"thanks": 3, "abuse": 0})])
        assert result["u"] == {"abusive": ("2 abuse events, 1 prompt_injection event",)}
        assert result["v"] == {"abusive": ("1 prompt_injection event",)}
        assert result["w"] == {}

    def test_minimum_and_names_are_settings(self) -> None:
        settings = ClassSettings(abusive_min_events=4, abusive_events=("abuse", "spam"))
        result = classes_of([user("u", events={"abuse": 2, "spam": 2}),
                             user("v", events={"abuse": 2, "prompt_injection": 5})], settings)
        assert result["u"] == {"abusive": ("2 abuse events, 2 spam events",)}
        assert result["v"] == {}


class TestDormantAndNew:
    def test_dormant(self) -> None:
        result = classes_of([user("gone", last_days_ago=21.5),
                             user("at", last_days_ago=14),
                             user("recent", last_days_ago=13.9)])
        assert result["gone"] == {"dormant": ("silent for 21 days (last seen 2026-10-12)",)}
        assert result["at"] == {"dormant": ("silent for 14 days (last seen 2026-10-20)",)}
        assert result["recent"] == {}

    def test_new(self) -> None:
        result = classes_of([user("u", first_days_ago=2.5, last_days_ago=0),
                             user("at", first_days_ago=7, last_days_ago=0),
                             user("now", first_days_ago=0.2, last_days_ago=0),
                             user("old", first_days_ago=7.01, last_days_ago=0)])
        assert result["u"] == {"new": ("first seen 2 days ago",)}
        assert result["at"] == {"new": ("first seen 7 days ago",)}
        assert result["now"] == {"new": ("first seen less than a day ago",)}
        assert result["old"] == {}

    def test_active_only_once_long_ago_is_dormant_not_new(self) -> None:
        result = classes_of([user("once", tasks=1, first_days_ago=30, last_days_ago=30)])
        assert result["once"] == {"dormant": ("silent for 30 days (last seen 2026-10-04)",)}

    def test_active_only_once_just_now_is_new_not_dormant(self) -> None:
        result = classes_of([user("once", tasks=1, first_days_ago=1, last_days_ago=1)])
        assert result["once"] == {"new": ("first seen 1 day ago",)}

    def test_a_user_without_tasks_is_in_no_class(self) -> None:
        result = classes_of([user("ghost", tasks=0, sessions=0, first_days_ago=0,
                                  last_days_ago=100)])
        assert result == {"ghost": {}}


class TestSeveralClasses:
    def test_a_new_power_user_who_struggles_and_abuses(self) -> None:
        stats = [user("x", first_days_ago=3, last_days_ago=0, tasks=31, tasks_in_window=31,
                      sessions_in_window=4, active_days=3, evaluated=14, failures=9,
                      events={"abuse": 1}), *crowd(19)]
        result = classify_users(stats, REF, SETTINGS)
        assert result["x"] == (
            UserClass("power", (
                "31 tasks in the last 7 days, top 5% of users (rank 1 of 20)",
                "4 sessions in the last 7 days, top 5% of users (rank 1 of 20)",
                "3 active days in the last 7 days, top 5% of users (rank 1 of 20)")),
            UserClass("struggling", ("9 of 14 evaluated tasks failed (64%)",)),
            UserClass("abusive", ("1 abuse event",)),
            UserClass("new", ("first seen 3 days ago",)))

    def test_no_users(self) -> None:
        assert classify_users([], REF, SETTINGS) == {}



def test_ten_thousand_users() -> None:
    """An app's 10,000 users: heavy-tailed activity, 15% failures, a few abusive ones."""
    rng = random.Random(11)
    stats = []
    for i in range(10_000):
        tasks = min(int(rng.paretovariate(1.2) * 5), 5000)
        evaluated = int(tasks * rng.uniform(0.3, 0.9))
        failures = sum(rng.random() < 0.15 for _ in range(min(evaluated, 200)))
        last = rng.expovariate(1 / 6)
        recent = last < 7
        stats.append(user(
            f"user{i}", first_days_ago=last + rng.expovariate(1 / 20), last_days_ago=last,
            tasks=tasks, sessions=max(1, tasks // 5),
            tasks_in_window=tasks // 3 if recent else 0,
            sessions_in_window=tasks // 15 if recent else 0,
            active_days=min(7, tasks // 10) if recent else 0, evaluated=evaluated,
            failures=failures, ended=max(1, tasks // 5), ended_after_failure=rng.randint(0, 2),
            rephrases=3 * (rng.random() < 0.02),
            events={"abuse": 1} if rng.random() < 0.01 else {}))
    result = classify_users(stats, REF, SETTINGS)
    assert len(result) == 10_000
    labels = Counter(c.label for classes in result.values() for c in classes)
    assert set(labels) == set(USER_CLASSES)
    assert labels["power"] >= 500, "at least the top 5% by tasks"
