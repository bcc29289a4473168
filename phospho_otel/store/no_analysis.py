"""``NoAnalysis``: the ``store.api.AnalysisReader`` of a backend that does not keep the
analyzer's results (ClickHouse, for now): no pending work, no results, empty figures.
Such a store is not an ``AnalysisStore``, so the server runs no analyzer over it, and the
list filters on results (``state``, ``class``, ``event``, ``evaluation``) answer 400.
"""

from __future__ import annotations

from collections.abc import Iterable

from phospho_otel.errors import BadRequest
from phospho_otel.model.analysis import SessionAnalysis, TaskAnalysis, UserAnalysis
from phospho_otel.model.records import SessionEventRecord
from phospho_otel.store.api import (
    PendingAnalysis,
    SessionFilter,
    TaskFilter,
    UserFacts,
    UserFilter,
)

__all__ = ["NoAnalysis", "refuse_analysis_filters"]


def refuse_analysis_filters(backend: str, where: SessionFilter | UserFilter | TaskFilter) -> None:
    """Raise ``BadRequest`` when ``where`` filters on analysis results."""
    names = [name for name in ("state", "end_reason", "user_class", "event", "evaluation")
             if getattr(where, name, None) is not None]
    if names:
        raise BadRequest(f"{', '.join(names)}: the {backend} store keeps no insights yet"
                         " (docs/insights.md); use the SQLite store for these filters")


class NoAnalysis:
    """An ``AnalysisReader`` with nothing in it."""

    def pending_analysis(self, limit: int) -> PendingAnalysis:
        return PendingAnalysis([], [], (0, 0))

    def task_analyses(self, task_ids: Iterable[str]) -> dict[str, TaskAnalysis]:
        return {}

    def session_analyses(self, session_ids: Iterable[str]) -> dict[str, SessionAnalysis]:
        return {}

    def user_analyses(self, user_ids: Iterable[str]) -> dict[str, UserAnalysis]:
        return {}

    def session_events(self, session_id: str) -> list[SessionEventRecord]:
        return []

    def sessions_idle_since(self, before_ns: int, limit: int) -> list[str]:
        return []

    def judge_pending(self, limit: int) -> list[str]:
        return []

    def user_facts(self, window_from_ns: int) -> list[UserFacts]:
        return []

    def latest_activity_ns(self) -> int | None:
        return None

    def user_days(self) -> list[tuple[str, int]]:
        return []

    def traces_mentioning(self, trace_ids: Iterable[bytes],
                          keys: Iterable[str]) -> set[bytes]:
        return set(trace_ids)

    def event_days(self) -> list[tuple[str, int, int]]:
        return []

    def end_reasons(self, where: SessionFilter,
                    examples: int) -> list[tuple[str, int, list[str]]]:
        return []

    def success_by_position(self, max_position: int) -> list[tuple[int, int, int, int]]:
        return []

    def active_durations(self, where: SessionFilter) -> list[int]:
        return []

    def class_counts(self) -> dict[str, int]:
        return {}
