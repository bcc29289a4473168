"""What the insights layer concludes about tasks, sessions and users: pure data, no I/O.

The analyzer (``phospho_otel.insights.analyzer``) makes these off the ingest path and a
store keeps them beside the records they are about (``store.api.AnalysisStore``); the
views show them (``api.serialize``). Every label is explained in ``docs/insights.md``.
Times are integer nanoseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = [
    "END_REASONS",
    "EVALUATION_LABELS",
    "EVENT_SCOPES",
    "SENTIMENT_LABELS",
    "SESSION_STATES",
    "USER_CLASSES",
    "DetectedEvent",
    "Evaluation",
    "Sentiment",
    "SessionAnalysis",
    "TaskAnalysis",
    "Usage",
    "UserAnalysis",
    "UserClass",
]

EVALUATION_LABELS = ("success", "failure", "unknown")
"""``Evaluation.label`` values."""
EVENT_SCOPES = ("task", "input", "output", "session", "system_prompt")
"""Where an event definition looks: the whole task (input and output), the input only,
the output only, the session's tasks together, or the task's system prompt."""
SENTIMENT_LABELS = ("positive", "neutral", "negative")
SESSION_STATES = ("active", "ended")
END_REASONS = ("resolved", "abandoned_after_failure", "abandoned_after_error", "frustrated",
               "explicit", "other")
"""``SessionAnalysis.end_reason`` values (of an ended session)."""
USER_CLASSES = ("power", "struggling", "abusive", "dormant", "new")


class Evaluation(NamedTuple):
    """Whether a task (or a session) did what its user wanted, and who decided."""

    label: str
    """One of ``EVALUATION_LABELS``."""
    score: float
    """Confidence of success, 0 (surely a failure) to 1 (surely a success); 0.5 unknown."""
    source: str
    """Who decided: ``user_feedback``, ``heuristic:<rule>``, ``llm_judge``..."""
    reason: str
    """Why, in words, for a person reading the task."""


class DetectedEvent(NamedTuple):
    """An event definition that matched a task or a session."""

    name: str
    source: str
    """How it was detected: ``keywords``, ``regex``, ``llm``, ``python``."""
    score: float
    """0 to 1 (1 for a keyword or regex match)."""
    scope: str
    """One of ``EVENT_SCOPES``."""


class Sentiment(NamedTuple):
    """The sentiment of a task's input: ``score`` from -1 (negative) to 1 (positive)."""

    score: float
    label: str
    """One of ``SENTIMENT_LABELS``."""


class Usage(NamedTuple):
    """What the LLM calls of a task (or of a session's or a user's tasks, summed) used, as
    their spans report it (``insights.usage``); each figure None when no span reports it."""

    input_tokens: int | None
    output_tokens: int | None
    cost: float | None
    """USD: as reported by the instrumentation, else priced from the tokens and the model
    (``insights.prices``); None when neither is known."""
    model: str | None = None
    """The model of the LLM calls (the most used when several: of a session, the most
    used by its tasks); None when no span names one."""

    @property
    def figures(self) -> bool:
        """True when tokens or a cost are reported."""
        return self.input_tokens is not None or self.output_tokens is not None \
            or self.cost is not None

    @property
    def known(self) -> bool:
        """True when anything is reported: a figure or the model."""
        return self.figures or self.model is not None


class TaskAnalysis(NamedTuple):
    """What the analyzer concluded about one task."""

    task_id: str
    session_id: str | None
    user_id: str | None
    start_ns: int
    position: int | None
    """1-based place in its session when analysed (None without a session)."""
    evaluation: Evaluation
    events: tuple[DetectedEvent, ...]
    sentiment: Sentiment | None
    """None when the input has no words to judge."""
    language: str | None
    """ISO 639-1 code of the input's language; None when too short to tell."""
    analyzed_ns: int
    judge_pending: bool = False
    """True while an LLM judge (configured) has yet to give its verdict."""
    usage: Usage | None = None
    """Tokens and cost of its LLM calls, from the spans of its trace; None when none
    reported any."""


class SessionAnalysis(NamedTuple):
    """A session's state, how it ended, and its evaluation."""

    session_id: str
    user_id: str | None
    state: str
    """One of ``SESSION_STATES``."""
    ended_ns: int | None
    end_reason: str | None
    """One of ``END_REASONS`` when ended."""
    end_evidence: tuple[str, ...]
    """Why that reason, in words ("last task failed: refusal in the output"...)."""
    active_duration_ns: int
    """Tasks' durations plus the gaps between them, each gap capped at the idle threshold."""
    evaluation: Evaluation | None
    """The session-level evaluation, made when it ends (None while active)."""
    event_counts: Mapping[str, int]
    """Detected events over its tasks and the session scope, by name."""
    analyzed_ns: int
    usage: Usage | None = None
    """Its tasks' usages summed (None when no task reported any)."""


class UserClass(NamedTuple):
    """One class a user is in, and why, in words ("31 tasks in 7 days, top 5% of users")."""

    label: str
    """One of ``USER_CLASSES``."""
    reasons: tuple[str, ...]


class UserAnalysis(NamedTuple):
    """A user's classes, event counts and evaluated tasks."""

    user_id: str
    classes: tuple[UserClass, ...]
    event_counts: Mapping[str, int]
    success_count: int
    """Tasks evaluated ``success`` (feedback first, then the evaluators)."""
    failure_count: int
    analyzed_ns: int
    usage: Usage | None = None
    """The usages of all the user's tasks summed (None when no task reported any)."""
