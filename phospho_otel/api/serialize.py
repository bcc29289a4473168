"""Store rows and insight results -> the documented JSON of ``/api`` (and of the CLI's
``--json``): ISO-8601 UTC times, durations in seconds, hex trace and span ids, opaque
keyset cursors.

Each shape has its field table (``TASK_FIELDS``, ``SESSION_FIELDS``...: name -> JSON
schema), from which the OpenAPI document is generated; ``tests/api`` checks that every
function here answers exactly its table's fields.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

from phospho_otel.errors import BadRequest
from phospho_otel.insights import SessionInsights, UserInsights
from phospho_otel.insights.retention import Retention
from phospho_otel.insights.sessions import SessionOutcomes
from phospho_otel.model.analysis import (
    END_REASONS,
    EVALUATION_LABELS,
    EVENT_SCOPES,
    SENTIMENT_LABELS,
    SESSION_STATES,
    USER_CLASSES,
    Evaluation,
    SessionAnalysis,
    TaskAnalysis,
    Usage,
    UserAnalysis,
)
from phospho_otel.model.records import SessionEventRecord
from phospho_otel.model.rollup import SessionRollup
from phospho_otel.store.api import TaskRow, UserRow

__all__ = [
    "EVENTS_FIELDS",
    "NS_PER_DAY",
    "NS_PER_S",
    "RETENTION_FIELDS",
    "SESSION_FIELDS",
    "SESSION_INSIGHTS_FIELDS",
    "TASK_FIELDS",
    "USER_FIELDS",
    "USER_INSIGHTS_FIELDS",
    "Links",
    "day_iso",
    "decode_cursor",
    "encode_cursor",
    "evaluation_json",
    "field_value",
    "iso_to_ns",
    "ns_to_iso",
    "retention_json",
    "session_feedback_json",
    "session_insights_json",
    "session_json",
    "session_outcomes_json",
    "sort_value_json",
    "task_json",
    "usage_json",
    "user_insights_json",
    "user_json",
]

T = TypeVar("T")
NS_PER_S = 1_000_000_000
NS_PER_DAY = 86_400 * NS_PER_S
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

Links = Callable[..., "dict[str, str] | None"]
"""``links(session_id=..., user_id=..., start_ns=..., end_ns=...)``: Jaeger UI links of a
session's or user's traces, or None (``api.jaeger.trace_links`` bound to a UI URL)."""


def _no_links(**_: Any) -> None:
    return None


# ----------------------------------------------------------------------------- values


def ns_to_iso(ns: int | None) -> str | None:
    """``1764082980123456789`` -> ``'2025-11-25T15:03:00.123456Z'`` (microseconds, UTC)."""
    if ns is None:
        return None
    dt = _EPOCH + timedelta(microseconds=ns // 1000)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso_to_ns(text: str) -> int:
    """Parse an ISO-8601 time (``Z`` or offset; naive means UTC; a bare date is midnight);
    ``BadRequest`` if it is not one."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"not an ISO-8601 time: {text!r}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        delta = dt - _EPOCH
    except OverflowError:
        raise BadRequest(f"out of range: {text!r} {_TIME_RANGE}") from None
    ns = (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1000
    if not INT64_MIN <= ns <= INT64_MAX:
        raise BadRequest(f"out of range: {text!r} {_TIME_RANGE}")
    return ns


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
"""What a store's integers (times in ns, cursor values) hold."""
_TIME_RANGE = ("(times are nanoseconds in 64 bits: from 1677-09-21T00:12:44Z "
               "to 2262-04-11T23:47:16Z)")


def _seconds(ns: float | int | None) -> float | None:
    return None if ns is None else round(ns / NS_PER_S, 6)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


_NON_FINITE = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}


def _finite_or_text(number: str) -> float | str:
    value = float(number)
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _json_value(text: str | None) -> Any:
    """Stored JSON text as a strict-JSON value: ``NaN``, ``Infinity`` and numbers too
    large for a double (which rows stored by older versions may hold) become the strings
    ``"NaN"``, ``"Infinity"``, ``"-Infinity"``, as extraction writes them now; text that is
    not JSON is answered as the string it is."""
    if text is None:
        return None
    try:
        return json.loads(text, parse_constant=_NON_FINITE.__getitem__,
                          parse_float=_finite_or_text)
    except ValueError:
        return text


def encode_cursor(cursor: tuple[Any, str] | None) -> str | None:
    """An opaque keyset cursor (the last row's sort value and id), or None."""
    if cursor is None:
        return None
    raw = json.dumps(list(cursor), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[Any, str]:
    """Inverse of ``encode_cursor``; ``BadRequest`` if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        value, row_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("cursor: not a cursor returned by this API") from None
    if not isinstance(row_id, str) or not isinstance(value, (int, str, type(None))) \
            or isinstance(value, bool):
        raise BadRequest("cursor: not a cursor returned by this API")
    if isinstance(value, int) and not INT64_MIN <= value <= INT64_MAX:
        raise BadRequest("cursor: out of range: not a cursor returned by this API")
    return value, row_id


# ----------------------------------------------------------------------------- schemas

_TIME = {"type": ["string", "null"], "format": "date-time"}
_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_INT = {"type": "integer"}
_LINKS = {"type": ["object", "null"], "additionalProperties": {"type": "string"},
          "description": "Jaeger UI links to the traces, when PHOSPHO_JAEGER_UI_URL is set"}
_EVALUATION = {"type": ["object", "null"], "description": "docs/insights.md", "properties": {
    "label": {"enum": list(EVALUATION_LABELS)},
    "score": {"type": "number", "description": "0 (failure) to 1 (success)"},
    "source": {"type": "string", "description": "user_feedback, heuristic:<rule>, llm_judge"},
    "reason": {"type": "string"}}}
_COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
_TOKENS = {"type": ["integer", "null"]}
_USAGE = {"type": ["object", "null"],
          "description": "tokens and cost its LLM calls' spans report, summed (docs/insights.md);"
                         " null when none reports any, a figure null when none reports it",
          "properties": {"input_tokens": _TOKENS, "output_tokens": _TOKENS,
                         "cost": {"type": ["number", "null"],
                                  "description": "USD: as the spans report it, else their"
                                                 " tokens priced by model (docs/insights.md)"},
                         "model": {"type": ["string", "null"],
                                   "description": "the model most of the LLM calls name"
                                                  " (null for users)"}}}

TASK_FIELDS: dict[str, dict[str, Any]] = {
    "task_id": {"type": "string"}, "session_id": _STR, "user_id": _STR,
    "input": _STR, "output": _STR, "raw_input": {}, "raw_output": {},
    "metadata": {"type": "object"}, "start_time": _TIME, "end_time": _TIME,
    "duration_s": _NUM, "status": {"enum": ["unset", "ok", "error"]},
    "flag": {"enum": ["success", "failure", None]}, "notes": _STR, "flag_source": _STR,
    "position": {"type": ["integer", "null"], "description": "1-based, by (start, task_id)"},
    "is_last": {"type": ["boolean", "null"]}, "name": {"type": "string"},
    "service_name": {"type": "string"}, "convention": {"type": "string"},
    "trace_id": {"type": "string"}, "span_id": {"type": "string"},
    "evaluation": _EVALUATION,
    "events": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "source": {"type": "string"}, "score": {"type": "number"},
        "scope": {"enum": list(EVENT_SCOPES)}}}},
    "sentiment": {"type": ["object", "null"], "properties": {
        "score": {"type": "number", "description": "-1 (negative) to 1 (positive)"},
        "label": {"enum": list(SENTIMENT_LABELS)}}},
    "language": {"type": ["string", "null"], "description": "ISO 639-1 code of the input's"},
    "usage": _USAGE,
}
SESSION_FIELDS: dict[str, dict[str, Any]] = {
    "session_id": {"type": "string"}, "user_id": _STR, "task_count": _INT,
    "start_time": _TIME, "end_time": _TIME, "duration_s": _NUM, "first_task_id": _STR,
    "first_input": _STR, "last_task_id": _STR, "last_input": _STR, "last_output": _STR,
    "last_status": _STR, "success_count": _INT, "failure_count": _INT, "error_count": _INT,
    "links": _LINKS,
    "state": {"enum": list(SESSION_STATES)}, "ended_at": _TIME,
    "end_reason": {"enum": [*END_REASONS, None]},
    "end_evidence": {"type": "array", "items": {"type": "string"}},
    "active_duration_s": _NUM, "evaluation": _EVALUATION, "event_counts": _COUNTS,
    "usage": {**_USAGE, "description": "its tasks' usages summed (docs/insights.md); null"
                                       " when none reports any"},
}
USER_FIELDS: dict[str, dict[str, Any]] = {
    "user_id": {"type": "string"}, "task_count": _INT, "session_count": _INT,
    "first_seen": _TIME, "last_seen": _TIME, "avg_session_duration_s": _NUM,
    "avg_tasks_per_session": _NUM,
    "success_rate": {"type": ["number", "null"],
                     "description": "successes / (successes + failures) of the user's"
                                    " evaluated tasks (feedback first, docs/insights.md);"
                                    " null if none"},
    "success_count": {"type": "integer", "description": "tasks with success feedback"},
    "failure_count": {"type": "integer", "description": "tasks with failure feedback"},
    "error_count": _INT, "links": _LINKS,
    "classes": {"type": "array", "items": {"type": "object", "properties": {
        "label": {"enum": list(USER_CLASSES)},
        "reasons": {"type": "array", "items": {"type": "string"}}}}},
    "event_counts": _COUNTS,
    "usage": {**_USAGE, "description": "the usages of all the user's tasks summed, as of the"
                                       " last user classification (docs/insights.md); null"
                                       " when none reports any"},
}
_FRESHNESS = {
    "computed_at": {"type": "string", "format": "date-time",
                    "description": "the instant of the snapshot the figures were read from"},
    "max_age_s": {"type": "number", "description": "the staleness bound it was served under"},
}
SESSION_INSIGHTS_FIELDS: dict[str, dict[str, Any]] = {
    "session_count": _INT, "task_count": _INT, "avg_duration_s": _NUM,
    "median_duration_s": _NUM, "p90_duration_s": _NUM, "avg_tasks_per_session": _NUM,
    "success_count": _INT, "failure_count": _INT, "error_count": _INT,
    "length_histogram": {"type": "array", "items": {"type": "object", "properties": {
        "task_count": _INT, "sessions": _INT}}},
    "duration_histogram": {
        "type": "array", "description": "sessions by duration, power-of-two-seconds buckets",
        "items": {"type": "object", "properties": {
            "min_s": {"type": "number"}, "max_s": {"type": "number"}, "sessions": _INT}}},
    "sessions_per_day": {"type": "array", "items": {"type": "object", "properties": {
        "date": {"type": "string", "format": "date"}, "sessions": _INT}}},
    "endings": {"type": "array", "description": "last tasks grouped by flag and status",
                "items": {"type": "object", "properties": {
                    "flag": _STR, "status": _STR, "sessions": _INT,
                    "top_inputs": {"type": "array", "items": {"type": "object", "properties": {
                        "input": _STR, "sessions": _INT}}}}}},
    **_FRESHNESS,
}
_OUTCOME_FIELDS: dict[str, dict[str, Any]] = {
    "end_reasons": {"type": "array", "description": "ended sessions by end reason",
                    "items": {"type": "object", "properties": {
                        "end_reason": {"enum": list(END_REASONS)}, "sessions": _INT,
                        "examples": {"type": "array", "items": {"type": "string"},
                                     "description": "session ids, latest ended first"}}}},
    "success_by_position": {
        "type": "array", "description": "evaluations by the task's place in its session"
                                        " (the last position counts every later one)",
        "items": {"type": "object", "properties": {
            "position": _INT, "success": _INT, "failure": _INT, "unknown": _INT,
            "success_rate": _NUM}}},
    "active_duration": {"type": "object", "description": "of the ended sessions", "properties": {
        "p50_s": _NUM, "p90_s": _NUM, "p99_s": _NUM, "max_s": _NUM,
        "histogram": {"type": "array", "items": {"type": "object", "properties": {
            "min_s": {"type": "number"}, "max_s": {"type": "number"}, "sessions": _INT}}}}},
}
SESSION_INSIGHTS_FIELDS = {
    **{k: v for k, v in SESSION_INSIGHTS_FIELDS.items() if k not in _FRESHNESS},
    **_OUTCOME_FIELDS, **_FRESHNESS}
USER_INSIGHTS_FIELDS: dict[str, dict[str, Any]] = {
    "user_count": _INT, "avg_tasks_per_user": _NUM, "median_tasks_per_user": _NUM,
    "p90_tasks_per_user": _NUM, "avg_sessions_per_user": _NUM, "success_rate": _NUM,
    "tasks_per_user": {"type": "array", "items": {"type": "object", "properties": {
        "min_tasks": _INT, "max_tasks": _INT, "users": _INT}}},
    "top_users": {"type": "array", "items": {"$ref": "#/components/schemas/User"}},
    "class_counts": {"type": "object", "description": "users in each class",
                     "properties": {c: _INT for c in USER_CLASSES}},
    **_FRESHNESS,
}
RETENTION_FIELDS: dict[str, dict[str, Any]] = {
    "period": {"enum": ["day", "week"]},
    "cohorts": {"type": "array", "description": "users by the period they were first seen",
                "items": {"type": "object", "properties": {
                    "start": {"type": "string", "format": "date"}, "users": _INT,
                    "active": {"type": "array", "items": _INT,
                               "description": "users active in the cohort's period and"
                                              " each later one"}}}},
    "new_vs_returning": {"type": "array", "items": {"type": "object", "properties": {
        "date": {"type": "string", "format": "date"}, "new": _INT, "returning": _INT}}},
    **_FRESHNESS,
}
EVENTS_FIELDS: dict[str, dict[str, Any]] = {
    "events": {"type": "array", "items": {"type": "object", "properties": {
        "name": {"type": "string"}, "scope": {"enum": list(EVENT_SCOPES)},
        "detector": {"enum": ["keywords", "regex", "llm", "python"]},
        "description": {"type": "string"}, "webhook": {"type": "boolean"},
        "tasks": {"type": "integer", "description": "tasks with the event"},
        "per_day": {"type": "array", "description": "tasks with the event by UTC day they "
                    "started, days with none left out", "items": {"type": "object",
                    "properties": {"date": {"type": "string", "format": "date"},
                                   "tasks": _INT}}}}}},
    **_FRESHNESS,
}


# ----------------------------------------------------------------------------- shapes


def evaluation_json(e: Evaluation | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"label": e.label, "score": round(e.score, 6), "source": e.source, "reason": e.reason}


def usage_json(u: Usage | None) -> dict[str, Any] | None:
    """``{"input_tokens", "output_tokens", "cost", "model"}`` (cost to 6 decimals), or
    None."""
    if u is None:
        return None
    return {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens,
            "cost": _round(u.cost), "model": u.model}


def task_json(row: TaskRow, analysis: TaskAnalysis | None = None) -> dict[str, Any]:
    """A task; ``analysis`` adds its evaluation, events, sentiment and language (null /
    empty until the analyzer has seen it)."""
    t, feedback = row.task, row.feedback
    a = analysis
    metadata = _json_value(t.metadata)
    return {
        "task_id": t.task_id,
        "session_id": t.session_id,
        "user_id": t.user_id,
        "input": t.input,
        "output": t.output,
        "raw_input": _json_value(t.raw_input),
        "raw_output": _json_value(t.raw_output),
        "metadata": metadata if metadata is not None else {},
        "start_time": ns_to_iso(t.start_ns),
        "end_time": ns_to_iso(t.end_ns),
        "duration_s": _seconds(t.end_ns - t.start_ns),
        "status": t.status,
        "flag": feedback.flag if feedback else None,
        "notes": feedback.notes if feedback else None,
        "flag_source": feedback.source if feedback else None,
        "position": row.position,
        "is_last": row.is_last,
        "name": t.name,
        "service_name": t.service_name,
        "convention": t.convention,
        "trace_id": t.trace_id.hex(),
        "span_id": t.span_id.hex(),
        "evaluation": evaluation_json(a.evaluation) if a else None,
        "events": [{"name": e.name, "source": e.source, "score": round(e.score, 6),
                    "scope": e.scope} for e in a.events] if a else [],
        "sentiment": ({"score": round(a.sentiment.score, 4), "label": a.sentiment.label}
                      if a and a.sentiment else None),
        "language": a.language if a else None,
        "usage": usage_json(a.usage) if a else None,
    }


def session_json(s: SessionRollup, links: Links = _no_links,
                 analysis: SessionAnalysis | None = None) -> dict[str, Any]:
    """A session; ``analysis`` adds its state, ending, active duration and evaluation
    (a session not analysed yet is ``active``)."""
    start, end = s.start_ns, s.end_ns
    a = analysis
    return {
        "session_id": s.session_id,
        "user_id": s.user_id,
        "task_count": s.task_count,
        "start_time": ns_to_iso(start),
        "end_time": ns_to_iso(end),
        "duration_s": _seconds(end - start) if start is not None and end is not None else None,
        "first_task_id": s.first_task_id,
        "first_input": s.first_input,
        "last_task_id": s.last_task_id,
        "last_input": s.last_input,
        "last_output": s.last_output,
        "last_status": s.last_status,
        "success_count": s.success_count,
        "failure_count": s.failure_count,
        "error_count": s.error_count,
        "links": links(session_id=s.session_id, start_ns=start, end_ns=end),
        "state": a.state if a else "active",
        "ended_at": ns_to_iso(a.ended_ns) if a else None,
        "end_reason": a.end_reason if a else None,
        "end_evidence": list(a.end_evidence) if a else [],
        "active_duration_s": _seconds(a.active_duration_ns) if a else None,
        "evaluation": evaluation_json(a.evaluation) if a else None,
        "event_counts": dict(a.event_counts) if a else {},
        "usage": usage_json(a.usage) if a else None,
    }


def session_feedback_json(events: list[SessionEventRecord]) -> dict[str, Any] | None:
    """The latest feedback on a whole session, or None."""
    feedback = [e for e in events if e.kind == "feedback"]
    if not feedback:
        return None
    e = max(feedback, key=lambda f: (f.time_ns, f.trace_id, f.span_id))
    return {"flag": e.flag, "notes": e.notes, "source": e.source, "time": ns_to_iso(e.time_ns)}


def user_json(u: UserRow, links: Links = _no_links,
              analysis: UserAnalysis | None = None) -> dict[str, Any]:
    """A user; ``analysis`` adds classes and event counts, and the success counts and
    rate come from the evaluations (feedback first) instead of feedback alone."""
    r = u.rollup
    a = analysis
    success, failure = ((a.success_count, a.failure_count) if a else
                        (r.success_count, r.failure_count))
    judged = success + failure  # the rate from the evaluations; the counts stay feedback's
    return {
        "user_id": r.user_id,
        "task_count": r.task_count,
        "session_count": r.session_count,
        "first_seen": ns_to_iso(r.first_seen_ns),
        "last_seen": ns_to_iso(r.last_seen_ns),
        "avg_session_duration_s": _seconds(u.avg_session_duration_ns),
        "avg_tasks_per_session": _round(u.avg_tasks_per_session),
        "success_rate": round(success / judged, 6) if judged else None,
        "success_count": r.success_count,
        "failure_count": r.failure_count,
        "error_count": r.error_count,
        "links": links(user_id=r.user_id, start_ns=r.first_seen_ns, end_ns=r.last_seen_ns),
        "classes": [{"label": c.label, "reasons": list(c.reasons)} for c in a.classes]
        if a else [],
        "event_counts": dict(a.event_counts) if a else {},
        "usage": usage_json(a.usage) if a else None,
    }


def field_value(item: Mapping[str, Any], dotted: str) -> Any:
    """A field of an item's JSON by its dotted name: ``item["a"]["b"]`` for ``"a.b"``
    (None when a part is missing); the CSV exports' columns and the dashboard's cells."""
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


TIME_SORTS = frozenset({"start_time", "end_time", "first_seen", "last_seen"})
"""Sort keys whose values are times (nanoseconds in the store, ISO-8601 in JSON)."""


def sort_value_json(sort: str, value: Any) -> Any:
    """A sort key's value as JSON: an ISO time for ``TIME_SORTS``, seconds for
    ``duration_s``, else as it is."""
    if value is None:
        return None
    if sort in TIME_SORTS:
        return ns_to_iso(value)
    if sort == "duration_s":
        return _seconds(value)
    return value


def _freshness(computed_at_ns: int, max_age_s: float) -> dict[str, Any]:
    return {"computed_at": ns_to_iso(computed_at_ns), "max_age_s": max_age_s}


def session_insights_json(x: SessionInsights, computed_at_ns: int, max_age_s: float,
                          outcomes: SessionOutcomes) -> dict[str, Any]:
    return {
        "session_count": x.session_count,
        "task_count": x.task_count,
        "avg_duration_s": _seconds(x.avg_duration_ns),
        "median_duration_s": _seconds(x.median_duration_ns),
        "p90_duration_s": _seconds(x.p90_duration_ns),
        "avg_tasks_per_session": _round(x.avg_tasks_per_session),
        "success_count": x.success_count,
        "failure_count": x.failure_count,
        "error_count": x.error_count,
        "length_histogram": [{"task_count": length, "sessions": n}
                             for length, n in x.length_histogram],
        "duration_histogram": [{"min_s": lo / NS_PER_S, "max_s": (hi + 1) / NS_PER_S,
                                "sessions": n} for lo, hi, n in x.duration_histogram],
        "sessions_per_day": [{"date": (ns_to_iso(day * NS_PER_DAY) or "")[:10], "sessions": n}
                             for day, n in x.sessions_per_day],
        "endings": [
            {"flag": g.flag, "status": g.status, "sessions": g.sessions,
             "top_inputs": [{"input": text, "sessions": n} for text, n in g.top_inputs]}
            for g in x.endings
        ],
        **session_outcomes_json(outcomes),
        **_freshness(computed_at_ns, max_age_s),
    }


def day_iso(day: int) -> str:
    """A UTC day since the epoch as ``YYYY-MM-DD``."""
    return (ns_to_iso(day * NS_PER_DAY) or "")[:10]


def session_outcomes_json(x: SessionOutcomes) -> dict[str, Any]:
    """The ``_OUTCOME_FIELDS`` part of the session insights."""
    q = x.active_duration_quantiles
    return {
        "end_reasons": [{"end_reason": g.end_reason, "sessions": g.sessions,
                         "examples": g.example_session_ids} for g in x.end_reasons],
        "success_by_position": [
            {"position": p, "success": s, "failure": f, "unknown": u,
             "success_rate": round(s / (s + f), 6) if s + f else None}
            for p, s, f, u in x.success_by_position],
        "active_duration": {
            "p50_s": _seconds(q["p50"]), "p90_s": _seconds(q["p90"]),
            "p99_s": _seconds(q["p99"]), "max_s": _seconds(q["max"]),
            "histogram": [{"min_s": lo / NS_PER_S, "max_s": (hi + 1) / NS_PER_S, "sessions": n}
                          for lo, hi, n in x.active_duration_histogram]},
    }


def retention_json(x: Retention, computed_at_ns: int, max_age_s: float) -> dict[str, Any]:
    return {
        "period": x.period,
        "cohorts": [{"start": day_iso(c.start), "users": c.users, "active": list(c.active)}
                    for c in x.cohorts],
        "new_vs_returning": [{"date": day_iso(day), "new": new, "returning": returning}
                             for day, new, returning in x.new_vs_returning],
        **_freshness(computed_at_ns, max_age_s),
    }


def user_insights_json(x: UserInsights, computed_at_ns: int, max_age_s: float,
                       links: Links = _no_links, class_counts: dict[str, int] | None = None,
                       analyses: dict[str, UserAnalysis] | None = None) -> dict[str, Any]:
    return {
        "user_count": x.user_count,
        "avg_tasks_per_user": _round(x.avg_tasks_per_user),
        "median_tasks_per_user": x.median_tasks_per_user,
        "p90_tasks_per_user": x.p90_tasks_per_user,
        "avg_sessions_per_user": _round(x.avg_sessions_per_user),
        "success_rate": _round(x.success_rate),
        "tasks_per_user": [{"min_tasks": lo, "max_tasks": hi, "users": n}
                           for lo, hi, n in x.tasks_per_user],
        "top_users": [user_json(u, links, (analyses or {}).get(u.rollup.user_id))
                      for u in x.top_users],
        "class_counts": dict(class_counts or {}),
        **_freshness(computed_at_ns, max_age_s),
    }
