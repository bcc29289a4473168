"""Peer feedback values -> our flags (``success`` | ``failure``), and the body of a
``feedback`` span annotation. Pure functions.

A value maps to a flag when it is

* a boolean: ``True`` success, ``False`` failure (Logfire assertions);
* a label (case-insensitive; spaces and dashes read as underscores) in
  ``SUCCESS_LABELS`` or ``FAILURE_LABELS`` (GenAI ``gen_ai.evaluation.score.label``,
  Logfire string values);
* a number in ``[0, 1]``, read as a score: ``>= 0.5`` success, below failure.

Anything else (another label, a score outside ``[0, 1]``) maps to no flag; the caller
counts and skips it (a feedback record always has a flag).
"""

from __future__ import annotations

from typing import Any

__all__ = ["FAILURE_LABELS", "SUCCESS_LABELS", "feedback_body", "flag_of"]

SUCCESS_LABELS = frozenset({"success", "successful", "pass", "passed", "correct", "good",
                            "true", "yes", "ok", "positive", "relevant", "helpful",
                            "faithful", "grounded", "accurate", "thumbs_up", "up"})
FAILURE_LABELS = frozenset({"failure", "failed", "fail", "incorrect", "bad", "false", "no",
                            "negative", "irrelevant", "unhelpful", "hallucinated",
                            "hallucination", "unfaithful", "inaccurate", "toxic", "error",
                            "thumbs_down", "down"})


def flag_of(value: object) -> str | None:
    """``success``, ``failure`` or None for a feedback value (see the module doc)."""
    if isinstance(value, bool):
        return "success" if value else "failure"
    if isinstance(value, str):
        label = value.strip().lower().replace(" ", "_").replace("-", "_")
        if label in SUCCESS_LABELS:
            return "success"
        if label in FAILURE_LABELS:
            return "failure"
        return None
    if isinstance(value, (int, float)) and 0 <= value <= 1:
        return "success" if value >= 0.5 else "failure"
    return None


def feedback_body(flag: str, notes: str | None, source: str) -> dict[str, Any]:
    """The body of a ``feedback`` annotation."""
    return {"flag": flag, "notes": notes, "source": source}
