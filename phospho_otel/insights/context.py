"""``TaskContext``: what an evaluator or an event detector sees of one task."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phospho_otel.model.records import TaskFeedback, TaskRecord

__all__ = ["TaskContext"]


@dataclass(frozen=True, slots=True)
class TaskContext:
    """A task, its latest feedback, its neighbours in its session and its system prompt."""

    task: TaskRecord
    feedback: TaskFeedback | None = None
    previous: Sequence[TaskRecord] = ()
    """Earlier tasks of its session, oldest first (the last few only)."""
    next: TaskRecord | None = None
    """The task that followed it in its session, if one has arrived."""
    system_prompt: str | None = None
    """``metadata["system_prompt"]`` when it is a string."""
    position: int | None = None
    """1-based place in its session; None without a session."""
    events: tuple[str, ...] = ()
    """Names of the events detected on this task (the detector runs before the
    evaluators)."""
    session_ended: bool = False
    """True when the task's session has ended (so ``next`` None means the user left)."""
