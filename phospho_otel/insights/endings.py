"""Sessions that end: whether a session is ``active`` or ``ended``, when and why it ended,
and how long its user was really there. Pure functions, no I/O: the analyzer gathers a
session's tasks, their analyses and the session's events from the store, and stores the
``SessionAnalysis`` that ``decide_session`` returns.

**When a session ends.** A session is ``ended`` when

- it was ended explicitly (a ``SessionEventRecord`` of kind ``end``: the SDK's
  ``end_session()`` or an OpenTelemetry ``session.end`` event) at or after the start of its
  last task; ``ended_ns`` is the time of the first such end. An end *before* the start of
  the last task does not count: **a task that starts after an explicit end reopens the
  session**, which is then active again until a later end or the inactivity timeout; or
- nothing happened in it for ``SessionSettings.inactivity_timeout_s``: ``now_ns`` minus its
  last activity (the latest task end or session event) is at least the timeout;
  ``ended_ns`` is that last activity (when its user was last seen, not when the timeout
  expired). A task arriving later moves the last activity, which reopens it the same way.

An explicit end wins over the timeout when both hold. A session with neither is
``active`` (``ended_ns``, ``end_reason`` None, no evidence). A session with no task and no
event is active.

**Why it ended** (``end_reason``), from its last turns, the first that holds in this order:

1. ``frustrated``: a frustration or abuse event (``FRUSTRATION_EVENTS``) on one of the last
   two tasks (an event found in a system prompt does not count) that was not repaired: a
   frustration is repaired when the answer to it was evaluated ``success`` (the user was
   satisfied after all, e.g. thanked for the next answer), or when a later task carries a
   thanks event (``RESOLUTION_EVENTS``) — so "you didn't answer. Which terminal?" answered
   and followed by "thanks" ends ``resolved``, not ``frustrated``;
2. ``abandoned_after_error``: the last task has an error status or no output;
3. ``abandoned_after_failure``: the latest session feedback says ``failure`` or, without
   session feedback, the last task was evaluated ``failure``;
4. ``resolved``: the latest session feedback says ``success`` or, without session
   feedback, the last task was evaluated ``success`` or carries a thanks event
   (``RESOLUTION_EVENTS``) — unless the last task is an attack (``ATTACK_EVENTS``: a
   refused prompt injection is a successful task, but resolves nothing for a user);
5. ``explicit``: it was ended explicitly and nothing above was said;
6. ``other``: timed out and nothing above was said.

Session feedback is the user's verdict on the whole session, so, as everywhere feedback
comes first, it decides between 3 and 4 over the last task's evaluation. ``end_evidence``
says why in sentences citing the tasks (their place in the session, a short quote of the
input, the evaluation's source and reason, the event names), then how the session ended.

**Usage** (``usage``): the tasks' usages summed (``usage.sum_usage``: each figure over
the tasks that report it; None when no task reports any).

**Active duration** (``active_duration_ns``): the union of the tasks' ``[start, end]``
intervals (overlapping tasks count once) plus the gaps between them, each capped at
``SessionSettings.idle_gap_s``: the time the user was plausibly there, beside the
wall-clock duration from the first start to the last end.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

from phospho_otel.insights.config import SessionSettings
from phospho_otel.insights.evaluation import ATTACK_EVENTS
from phospho_otel.insights.usage import sum_usage
from phospho_otel.model.analysis import DetectedEvent, SessionAnalysis, TaskAnalysis
from phospho_otel.model.records import SessionEventRecord, TaskRecord

__all__ = [
    "ATTACK_EVENTS",
    "FRUSTRATION_EVENTS",
    "RESOLUTION_EVENTS",
    "active_duration_ns",
    "decide_session",
]

FRUSTRATION_EVENTS = ("frustration", "abuse")
"""Event names that make a session end ``frustrated`` when on its last two tasks."""
RESOLUTION_EVENTS = ("thanks",)
"""Event names that make a session end ``resolved`` when on its last task."""

_FRUSTRATION_WINDOW = 2
"""How many of the last tasks a frustration event is looked for in."""
_QUOTE_CHARS = 60
"""The longest quote of an input in the evidence (longer ones are cut, with an ellipsis)."""


def active_duration_ns(tasks: Sequence[TaskRecord], idle_gap_ns: int) -> int:
    """The union of the tasks' ``[start_ns, end_ns]`` intervals plus the gaps between them,
    each gap capped at ``idle_gap_ns``; 0 without tasks. A task ending before it starts
    counts as an instant at its start."""
    if not tasks:
        return 0
    intervals = sorted((t.start_ns, max(t.start_ns, t.end_ns)) for t in tasks)
    cap = max(idle_gap_ns, 0)
    total = 0
    lo, hi = intervals[0]
    for start, end in intervals[1:]:
        if start <= hi:
            hi = max(hi, end)
            continue
        total += hi - lo + min(start - hi, cap)
        lo, hi = start, end
    return total + hi - lo


def decide_session(session_id: str, user_id: str | None,
                   tasks: Sequence[tuple[TaskRecord, TaskAnalysis | None]],
                   session_events: Sequence[SessionEventRecord], now_ns: int,
                   settings: SessionSettings, *,
                   session_scope_events: Sequence[DetectedEvent] = (),
                   frustration_events: Iterable[str] = FRUSTRATION_EVENTS,
                   resolution_events: Iterable[str] = RESOLUTION_EVENTS) -> SessionAnalysis:
    """The state, end and active duration of one session, as of ``now_ns`` (rules in the
    module docstring). ``tasks`` are the session's tasks with their analyses (None for a
    task not analysed yet: no evaluation, no events), in any order; ``session_events`` its
    ends and feedback, in any order; ``session_scope_events`` the events detected over the
    session as a whole (counted in ``event_counts`` only). ``evaluation`` is left None for
    the caller to fill when the session is ended; ``analyzed_ns`` is ``now_ns``; ``usage``
    sums the tasks' analyses' usages."""
    ordered = sorted(tasks, key=lambda pair: (pair[0].start_ns, pair[0].task_id))
    records = [record for record, _ in ordered]
    counts: Counter[str] = Counter(e.name for e in session_scope_events)
    for _, analysis in ordered:
        if analysis is not None:
            counts.update(e.name for e in analysis.events)
    event_counts = {name: counts[name] for name in sorted(counts)}
    active_ns = active_duration_ns(records, round(settings.idle_gap_s * 1e9))
    usage = sum_usage(analysis.usage for _, analysis in ordered if analysis is not None)

    last_start = records[-1].start_ns if records else None
    ends = sorted(e.time_ns for e in session_events if e.kind == "end"
                  and (last_start is None or e.time_ns >= last_start))
    activity = [r.end_ns for r in records] + [e.time_ns for e in session_events]
    last_activity = max(activity) if activity else None
    explicit_end = ends[0] if ends else None
    timeout_ns = round(settings.inactivity_timeout_s * 1e9)
    if explicit_end is not None:
        ended_ns = explicit_end
        how = f"ended explicitly at {_iso(explicit_end)}"
    elif last_activity is not None and now_ns - last_activity >= timeout_ns:
        ended_ns = last_activity
        how = (f"no activity for {_duration(timeout_ns)} after {_iso(last_activity)}"
               " (inactivity timeout)")
    else:
        return SessionAnalysis(session_id=session_id, user_id=user_id, state="active",
                               ended_ns=None, end_reason=None, end_evidence=(),
                               active_duration_ns=active_ns, evaluation=None,
                               event_counts=event_counts, analyzed_ns=now_ns, usage=usage)
    feedback = max((e for e in session_events if e.kind == "feedback" and e.flag),
                   key=lambda e: e.time_ns, default=None)
    reason, evidence = _end_reason(ordered, feedback, explicit_end is not None,
                                   frozenset(frustration_events), frozenset(resolution_events))
    return SessionAnalysis(session_id=session_id, user_id=user_id, state="ended",
                           ended_ns=ended_ns, end_reason=reason,
                           end_evidence=(*evidence, how), active_duration_ns=active_ns,
                           evaluation=None, event_counts=event_counts, analyzed_ns=now_ns,
                           usage=usage)


def _end_reason(ordered: Sequence[tuple[TaskRecord, TaskAnalysis | None]],
                feedback: SessionEventRecord | None, explicit: bool,
                frustration: frozenset[str],
                resolution: frozenset[str]) -> tuple[str, list[str]]:
    """``(end_reason, evidence)`` of an ended session, by the precedence of the module
    docstring."""
    n = len(ordered)
    frustrated: list[str] = []
    repaired: list[str] = []
    for i in range(max(n - _FRUSTRATION_WINDOW, 0), n):
        record, analysis = ordered[i]
        names = _event_names(analysis, frustration)
        if not names:
            continue
        cited = f"{_task(record, i + 1, n)}: {_events(names)}"
        repair = _repair(ordered, i, resolution)
        if repair is None:
            frustrated.append(cited)
        else:
            repaired.append(f"{cited}, repaired: {repair}")
    if frustrated:
        return "frustrated", frustrated
    reason, evidence = _end_reason_after(ordered, feedback, explicit, resolution)
    return reason, [*repaired, *evidence]


def _repair(ordered: Sequence[tuple[TaskRecord, TaskAnalysis | None]], i: int,
            resolution: frozenset[str]) -> str | None:
    """How the frustration on task ``i`` was repaired, in words, or None."""
    analysis = ordered[i][1]
    if analysis is not None and analysis.evaluation.label == "success":
        return f"its answer was evaluated success by {analysis.evaluation.source}"
    for j in range(i + 1, len(ordered)):
        thanks = _event_names(ordered[j][1], resolution)
        if thanks:
            return f"task {j + 1} of {len(ordered)} carries a {_events(thanks)}"
    return None


def _end_reason_after(ordered: Sequence[tuple[TaskRecord, TaskAnalysis | None]],
                      feedback: SessionEventRecord | None, explicit: bool,
                      resolution: frozenset[str]) -> tuple[str, list[str]]:
    """Rules 2-6 of the module docstring."""
    n = len(ordered)
    if not ordered:
        return _feedback_reason(feedback) or ("explicit" if explicit else "other", [
            "no task in the session"])
    last, analysis = ordered[-1]
    cited = _task(last, n, n)
    if last.status == "error":
        return "abandoned_after_error", [f"last {cited} ended with an error status"]
    if not (last.output or "").strip():
        return "abandoned_after_error", [f"last {cited} has no output"]
    decided = _feedback_reason(feedback)
    if decided is not None:
        return decided
    evaluation = analysis.evaluation if analysis is not None else None
    if evaluation is not None and evaluation.label == "failure":
        return "abandoned_after_failure", [f"last {cited} {_evaluated(analysis)}"]
    attack = _event_names(analysis, frozenset(ATTACK_EVENTS))
    if attack:
        said = f"{_evaluated(analysis)}; an attack ({_events(attack)}) resolves nothing"
        return ("explicit" if explicit else "other"), [f"last {cited} {said}"]
    if evaluation is not None and evaluation.label == "success":
        return "resolved", [f"last {cited} {_evaluated(analysis)}"]
    thanks = _event_names(analysis, resolution)
    if thanks:
        return "resolved", [f"last {cited}: {_events(thanks)}"]
    said = f"{_evaluated(analysis)}; no error, failure, frustration or thanks"
    return ("explicit" if explicit else "other"), [f"last {cited} {said}"]


def _feedback_reason(feedback: SessionEventRecord | None) -> tuple[str, list[str]] | None:
    if feedback is None or feedback.flag not in ("success", "failure"):
        return None
    notes = f": {_quote(feedback.notes)}" if feedback.notes else ""
    sentence = (f"session feedback {feedback.flag} from {feedback.source} at "
                f"{_iso(feedback.time_ns)}{notes}")
    return ("resolved" if feedback.flag == "success" else "abandoned_after_failure"), [sentence]


def _event_names(analysis: TaskAnalysis | None, wanted: frozenset[str]) -> list[str]:
    """Names of the analysis' events in ``wanted`` (not from the system prompt), each once,
    in the order found."""
    if analysis is None:
        return []
    return list(dict.fromkeys(e.name for e in analysis.events
                              if e.name in wanted and e.scope != "system_prompt"))


def _events(names: Sequence[str]) -> str:
    return ", ".join(names) + (" event" if len(names) == 1 else " events")


def _evaluated(analysis: TaskAnalysis | None) -> str:
    if analysis is None:
        return "not evaluated yet"
    e = analysis.evaluation
    reason = f": {e.reason}" if e.reason else ""
    return f"evaluated {e.label} by {e.source}{reason}"


def _task(record: TaskRecord, position: int, count: int) -> str:
    """``task 3 of 4 ("What is...")``."""
    quote = f" ({_quote(record.input)})" if record.input and record.input.strip() else ""
    return f"task {position} of {count}{quote}"


def _quote(text: str | None) -> str:
    words = " ".join((text or "").split())
    if len(words) > _QUOTE_CHARS:
        words = words[:_QUOTE_CHARS - 1].rstrip() + "…"
    return f'"{words}"'


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, tz=timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _duration(ns: int) -> str:
    """``30 minutes``, ``2 hours``, ``45 seconds``, ``1.5 hours``."""
    seconds = ns / 1e9
    unit, size = next(((u, s) for u, s in (("day", 86400), ("hour", 3600), ("minute", 60))
                       if seconds >= s), ("second", 1))
    value = seconds / size
    shown = f"{value:.0f}" if abs(value - round(value)) < 0.05 else f"{value:.1f}"
    return f"{shown} {unit}" + ("" if shown == "1" else "s")
