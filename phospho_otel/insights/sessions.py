"""Session figures: how many, how long, how many tasks, per day, and what ends them
(``session_insights`` from the rollups; ``session_outcomes`` from the analyzer's end
reasons, evaluations and active durations)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

from phospho_otel.store.api import AnalysisReader, InsightReader, SessionFilter

__all__ = [
    "EndReasonGroup",
    "EndingGroup",
    "SessionInsights",
    "SessionOutcomes",
    "quantile_ranks",
    "session_insights",
    "session_outcomes",
    "sorted_quantile",
]


@dataclass(frozen=True, slots=True)
class EndingGroup:
    """Sessions whose last task had this feedback flag and status, with their most
    frequent last inputs (``(input, sessions)``, most frequent first, ties by input with
    None first)."""

    flag: str | None
    status: str | None
    sessions: int
    top_inputs: list[tuple[str | None, int]]


@dataclass(frozen=True, slots=True)
class SessionInsights:
    """Figures over the sessions of a filter (durations in ns; None when no session)."""

    session_count: int
    task_count: int
    avg_duration_ns: float | None
    median_duration_ns: float | None
    p90_duration_ns: float | None
    avg_tasks_per_session: float | None
    success_count: int
    failure_count: int
    error_count: int
    length_histogram: list[tuple[int, int]]
    """``(task_count, sessions)``, ascending."""
    duration_histogram: list[tuple[int, int, int]]
    """``(min ns, max ns, sessions)`` per power-of-two-seconds bucket with sessions
    (``DURATION_EDGES_NS``), ascending."""
    sessions_per_day: list[tuple[int, int]]
    """``(day since the epoch, sessions)`` for each UTC day with sessions, ascending."""
    endings: list[EndingGroup]
    """Most sessions first."""


def quantile_ranks(n: int, q: float) -> tuple[int, float]:
    """The 0-based rank below the ``q`` quantile of ``n`` sorted values and the weight of
    the next one (linear interpolation between ranks)."""
    pos = q * (n - 1)
    lo = math.floor(pos)
    return lo, pos - lo


def _quantile(reader: InsightReader, where: SessionFilter, n: int, q: float) -> float | None:
    if n == 0:
        return None
    lo, weight = quantile_ranks(n, q)
    values = reader.session_durations_at(where, [lo, lo + 1] if weight else [lo])
    if not values:
        return None
    if len(values) == 1:
        return float(values[0])
    return values[0] + (values[1] - values[0]) * weight


def _endings(reader: InsightReader, where: SessionFilter, top_inputs: int) -> list[EndingGroup]:
    totals: dict[tuple[str | None, str | None], int] = {}
    candidates: dict[tuple[str | None, str | None], list[tuple[int, bool, str, str | None]]] = {}
    for flag, status, last_input, count in reader.session_endings(where):
        key = (flag, status)
        totals[key] = totals.get(key, 0) + count
        # most frequent first, then by input with None first
        candidates.setdefault(key, []).append(
            (-count, last_input is not None, last_input or "", last_input))
    groups = [
        EndingGroup(flag, status, totals[(flag, status)], [
            (last_input, -neg) for neg, _, _, last_input in heapq.nsmallest(top_inputs, entries)
        ])
        for (flag, status), entries in candidates.items()
    ]
    groups.sort(key=lambda g: (-g.sessions, str(g.flag), str(g.status)))
    return groups


DURATION_EDGES_NS = (0, *((1 << k) * 1_000_000_000 for k in range(1, 23)))
"""Session duration buckets: under 2 s, then [2^k, 2^(k+1)) seconds up to 2^22 s (48
days), then longer; the same as the active-duration histogram's."""


def _duration_histogram(reader: InsightReader,
                        where: SessionFilter) -> list[tuple[int, int, int]]:
    counts = reader.session_duration_counts(where, DURATION_EDGES_NS)
    highs = [*DURATION_EDGES_NS[1:], 2 * DURATION_EDGES_NS[-1]]
    return [(lo, hi - 1, n)
            for lo, hi, n in zip(DURATION_EDGES_NS, highs, counts, strict=True) if n]


def session_insights(reader: InsightReader, *, where: SessionFilter | None = None,
                     top_inputs: int = 5) -> SessionInsights:
    """Figures over the sessions started in the filter's range (of its user): count,
    average / median / p90 duration, average tasks per session, the histogram of session
    lengths, sessions per UTC day, and what ends sessions (``endings``)."""
    where = where or SessionFilter()
    totals = reader.session_totals(where)
    n = totals.session_count
    return SessionInsights(
        session_count=n,
        task_count=totals.task_count,
        avg_duration_ns=totals.avg_duration_ns,
        median_duration_ns=_quantile(reader, where, n, 0.5),
        p90_duration_ns=_quantile(reader, where, n, 0.9),
        avg_tasks_per_session=totals.avg_tasks,
        success_count=totals.success_count,
        failure_count=totals.failure_count,
        error_count=totals.error_count,
        length_histogram=reader.session_lengths(where),
        duration_histogram=_duration_histogram(reader, where),
        sessions_per_day=reader.sessions_per_day(where),
        endings=_endings(reader, where, top_inputs),
    )


@dataclass(frozen=True, slots=True)
class EndReasonGroup:
    """Ended sessions with one end reason, and a few of them (latest first)."""

    end_reason: str
    sessions: int
    example_session_ids: list[str]


@dataclass(frozen=True, slots=True)
class SessionOutcomes:
    """How sessions end and how tasks fare along them (from the analyzer's results)."""

    end_reasons: list[EndReasonGroup]
    """Most sessions first."""
    success_by_position: list[tuple[int, int, int, int]]
    """``(position, success, failure, unknown)``; the last position counts every later one."""
    active_duration_quantiles: dict[str, float | None]
    """``p50``, ``p90``, ``p99`` and ``max`` active duration (ns) of the ended sessions."""
    active_duration_histogram: list[tuple[int, int, int]]
    """``(min ns, max ns, sessions)`` per power-of-two-seconds bucket, ascending."""


MAX_POSITION = 20
"""``success_by_position`` counts positions from this one on together."""
NS_PER_S = 1_000_000_000


def sorted_quantile(values: Sequence[int], q: float) -> float | None:
    """The ``q`` quantile of ascending ``values`` (linear interpolation); None if empty."""
    if not values:
        return None
    lo, weight = quantile_ranks(len(values), q)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * weight


def session_outcomes(reader: AnalysisReader, *, where: SessionFilter | None = None,
                     examples: int = 5) -> SessionOutcomes:
    """End reasons with example sessions, success rate by task position, and the
    distribution of the ended sessions' active durations."""
    where = where or SessionFilter()
    durations = reader.active_durations(where)
    buckets: dict[int, int] = {}
    for d in durations:
        seconds = max(d // NS_PER_S, 1)
        lo = 1 << (seconds.bit_length() - 1)
        buckets[lo] = buckets.get(lo, 0) + 1
    histogram = [((0 if lo == 1 else lo) * NS_PER_S, (2 * lo) * NS_PER_S - 1, buckets[lo])
                 for lo in sorted(buckets)]
    return SessionOutcomes(
        end_reasons=[EndReasonGroup(r, n, ids) for r, n, ids in
                     reader.end_reasons(where, examples)],
        success_by_position=reader.success_by_position(MAX_POSITION),
        active_duration_quantiles={
            "p50": sorted_quantile(durations, 0.5), "p90": sorted_quantile(durations, 0.9),
            "p99": sorted_quantile(durations, 0.99),
            "max": float(durations[-1]) if durations else None},
        active_duration_histogram=histogram,
    )
