"""User figures: how many, tasks and sessions per user, success rate, top users; the
class counts and retention cohorts from the analyzer's results."""

from __future__ import annotations

from dataclasses import dataclass

from phospho_otel.insights.retention import Retention, retention
from phospho_otel.insights.sessions import sorted_quantile
from phospho_otel.model.analysis import USER_CLASSES
from phospho_otel.store.api import AnalysisReader, InsightReader, UserFilter, UserRow

__all__ = ["UserInsights", "user_class_counts", "user_insights", "user_retention"]


@dataclass(frozen=True, slots=True)
class UserInsights:
    """Figures over the users of a filter (None when there is no user)."""

    user_count: int
    avg_tasks_per_user: float | None
    median_tasks_per_user: float | None
    p90_tasks_per_user: float | None
    avg_sessions_per_user: float | None
    success_rate: float | None
    """successes / (successes + failures) over the users' tasks; None without feedback."""
    tasks_per_user: list[tuple[int, int, int]]
    """``(min tasks, max tasks, users)`` per power-of-two bucket, ascending."""
    top_users: list[UserRow]


def user_insights(reader: InsightReader, *, where: UserFilter | None = None,
                  top: int = 10) -> UserInsights:
    """Figures over the users active in the filter's range: how many, tasks per user
    (average, median, p90 and a power-of-two histogram), sessions per user, success rate
    and the ``top`` users by tasks."""
    where = where or UserFilter()
    totals = reader.user_totals(where)
    counts = reader.user_task_counts(where)
    buckets: dict[int, int] = {}
    for c in counts:
        lo = 1 << (max(c, 1).bit_length() - 1)
        buckets[lo] = buckets.get(lo, 0) + 1
    judged = totals.success_count + totals.failure_count
    return UserInsights(
        user_count=totals.user_count,
        avg_tasks_per_user=totals.avg_tasks,
        median_tasks_per_user=sorted_quantile(counts, 0.5),
        p90_tasks_per_user=sorted_quantile(counts, 0.9),
        avg_sessions_per_user=totals.avg_sessions,
        success_rate=totals.success_count / judged if judged else None,
        tasks_per_user=[(lo, lo * 2 - 1, buckets[lo]) for lo in sorted(buckets)],
        top_users=reader.top_users(where, top),
    )


def user_class_counts(reader: AnalysisReader) -> dict[str, int]:
    """Users in each class (every class listed, 0 when empty)."""
    counts = reader.class_counts()
    return {label: counts.get(label, 0) for label in USER_CLASSES}


def user_retention(reader: AnalysisReader, *, period: str | None = None) -> Retention:
    """Retention cohorts and new vs returning users per day (``retention.retention``)."""
    return retention(reader.user_days(), period)
